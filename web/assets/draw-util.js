// Shared helpers of the draw pages (window.gongkaiDraw): JSON API calls that return the
// status and Retry-After instead of throwing, hex, SHA-256 (WebCrypto), RFC 8785
// canonical JSON for the draw's leaves, and browser-side file downloads (Blob; nothing is
// sent anywhere). All text goes into the page with textContent.
"use strict";

window.gongkaiDraw = (() => {
  const enc = new TextEncoder();

  async function call(method, path, body, extraHeaders) {
    const headers = Object.assign({ "Accept": "application/json" }, extraHeaders || {});
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && window.gongkai) {
      const csrf = window.gongkai.csrfToken();
      if (csrf) headers["X-CSRF-Token"] = csrf;
    }
    let res;
    try {
      res = await fetch(path, { method, headers, credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      return { ok: false, status: 0, data: null, message: String(e.message || e) };
    }
    const data = res.headers.get("content-type")?.includes("json") ? await res.json().catch(() => null) : null;
    return {
      ok: res.ok, status: res.status, data,
      retryAfter: Number(res.headers.get("Retry-After")) || 0,
      message: (data && data.error && data.error.message) || res.statusText,
    };
  }

  const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  function fromHex(text) {
    const t = String(text).trim().toLowerCase();
    if (t.length % 2 || /[^0-9a-f]/.test(t)) return null;
    const out = new Uint8Array(t.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(t.substr(i * 2, 2), 16);
    return out;
  }
  function concat(...parts) {
    const list = parts.map((p) => (typeof p === "string" ? enc.encode(p) : p));
    const out = new Uint8Array(list.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of list) { out.set(p, at); at += p.length; }
    return out;
  }
  async function sha256(...parts) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", concat(...parts)));
  }

  // RFC 8785 for what the draw publishes: objects with ASCII keys, strings and integers.
  function jcs(value) {
    if (Array.isArray(value)) return "[" + value.map(jcs).join(",") + "]";
    if (value !== null && typeof value === "object") {
      const keys = Object.keys(value).sort();
      return "{" + keys.map((k) => JSON.stringify(k) + ":" + jcs(value[k])).join(",") + "}";
    }
    return JSON.stringify(value);
  }

  function download(name, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type: type || "application/json" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function say(el, text) {
    if (!el) return;
    el.textContent = text || "";
    el.hidden = !text;
  }

  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };

  // GB 11643-1999: 17 digits and an ISO 7064 MOD 11-2 check character.
  function validChildId(text) {
    const id = String(text).trim().toUpperCase();
    if (!/^[0-9]{17}[0-9X]$/.test(id)) return false;
    const weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const sum = weights.reduce((n, w, i) => n + w * Number(id[i]), 0);
    return "10X98765432"[sum % 11] === id[17];
  }

  // A failed form request in the page's language, where the field tells what was wrong.
  function formError(res, i18n) {
    const field = (res.data && res.data.error && res.data.error.field) || "";
    if (field.endsWith("child_id")) return i18n.errChildId;
    if (field.endsWith("child_name")) return i18n.errChildName;
    if (field.startsWith("choices") || field === "children") return `${i18n.errChoices} (${res.message})`;
    if (res.status === 404) return i18n.errReceipt;
    return res.message;
  }

  return { call, validChildId, formError, hex, fromHex, concat, sha256, jcs, download, say, el };
})();

// gongkai page helpers. Served by the binary (CSP: script-src 'self'); no inline scripts.
"use strict";

// fetch() wrapper that sends the session's CSRF token on state-changing requests.
window.gongkai = {
  csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  },
  async api(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = this.csrfToken();
    const res = await fetch(path, { method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body) });
    const data = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
    if (!res.ok) throw Object.assign(new Error(data?.error?.message || res.statusText), { status: res.status, data });
    return data;
  },
};

// Render <time data-ms="..."> in the reader's locale.
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("time[data-ms]")) {
    const d = new Date(Number(el.dataset.ms));
    if (!Number.isNaN(d.getTime())) el.textContent = d.toLocaleString(document.documentElement.lang);
  }
});

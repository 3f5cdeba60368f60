// The live draw view beside the video: the play-out steps so far from
// GET /api/v1/draws/{id}/progress, then draw.seed / draw.number / draw.admitted /
// draw.published from the event's WebSocket (/ws/events/{event}, reconnecting with
// ?since=). Steps are keyed (seed, number N, kindergarten code) so the two sources may
// overlap. Text is set with textContent only.
// On the draw page this script owns the event's socket and tells the video player what
// it hears ("gongkai:status" / "gongkai:media" on document, as event.js does). On the
// event page of a draw event (data-shared-socket) event.js owns the socket and hands
// every message over as "gongkai:message".
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const root = $("draw-live");
  if (!root) return;
  const drawId = root.dataset.drawId;
  const eventId = root.dataset.eventId;
  const i18n = $("live-i18n").dataset;
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };
  const numbers = new Map();
  const admitted = new Map();
  const state = { seq: 0, ws: null, backoff: 500, total: 0, ready: false, queue: [], published: false };

  function setConn(which) { const c = $("live-connection"); c.textContent = c.dataset[which] || ""; }

  function seed(s) {
    $("live-waiting").hidden = true;
    $("live-seed").hidden = false;
    $("live-seed-value").textContent = s.seed;
    $("live-reveals").replaceChildren(...(s.reveals || []).map((r) => el("li", "hex", r)));
    if (s.beacon_text) { $("live-beacon").hidden = false; $("live-beacon-text").textContent = s.beacon_text; }
    state.total = s.units || 0;
    $("live-total").textContent = state.total;
    $("live-numbers-box").hidden = false;
    setState("drawn");
  }

  function number(n, animate) {
    if (numbers.has(n.number)) return;
    $("live-waiting").hidden = true;
    $("live-numbers-box").hidden = false;
    const li = el("li", animate ? "draw-number fresh" : "draw-number");
    li.dataset.number = n.number;
    li.dataset.unit = n.unit;
    li.append(el("span", "num", i18n.number.replace("{n}", n.number)), " → ", el("code", "unit", n.unit));
    if (n.size > 1) li.append(" ", el("span", "badge", i18n.children.replace("{n}", n.size)));
    numbers.set(n.number, li);
    // Keep the list in number order whatever order the steps arrived in.
    const list = $("live-numbers");
    const after = Array.from(list.children).find((x) => Number(x.dataset.number) > n.number);
    if (after) after.before(li); else list.append(li);
    $("live-count").textContent = numbers.size;
    if (animate) li.scrollIntoView({ block: "nearest" });
  }

  function admit(a) {
    if (admitted.has(a.kg)) return;
    $("live-admitted-box").hidden = false;
    const li = el("li", "admitted-kg");
    li.dataset.kg = a.kg;
    li.append(el("strong", null, `${a.name} (${a.kg})`), " ",
      el("span", "meta", `${a.children} / ${a.seats} ${i18n.seats}`));
    const units = el("p", "units");
    for (const u of a.units || []) units.append(el("code", "unit", u), " ");
    li.append(units);
    admitted.set(a.kg, li);
    $("live-admitted").append(li);
  }

  function published(p) {
    if (state.published) return;
    state.published = true;
    $("live-published").hidden = false;
    $("live-transcript-hash").textContent = p.transcript_hash || "";
    setState("published");
  }

  function setState(s) {
    const article = $("draw");
    if (!article || article.dataset.state === "published" || article.dataset.state === "countersigned") return;
    article.dataset.state = s;
    const badge = $("draw-state");
    badge.className = `badge draw-state-${s}`;
    badge.textContent = i18n["state" + s[0].toUpperCase() + s.slice(1)] || s;
  }

  function apply(msg, animate) {
    if (msg.draw_id && msg.draw_id !== drawId) return;
    switch (msg.type) {
      case "draw.seed": return seed(msg);
      case "draw.number": return number(msg, animate);
      case "draw.admitted": return admit(msg);
      case "draw.published": return published(msg);
      default: return;
    }
  }

  const gk = (window.gongkai = window.gongkai || {});
  const live = (gk.live = gk.live || { status: null, publishing: null });
  const emit = (name, detail) => document.dispatchEvent(new CustomEvent(name, { detail }));
  function tellPlayer(msg) {
    let status = null, publishing = null;
    if (msg.type === "snapshot") {
      status = msg.event && msg.event.status;
      publishing = msg.media ? msg.media.publishing : null;
    } else if (msg.type === "event.status") status = msg.status;
    else if (msg.type === "media.state") publishing = msg.publishing;
    if (status) { live.status = status; emit("gongkai:status", { status }); }
    if (typeof publishing === "boolean") { live.publishing = publishing; emit("gongkai:media", { publishing }); }
    else if (msg.type === "snapshot" && status === "live" && live.publishing === null) {
      // A server without `media` in its snapshot: ask once (no polling).
      fetch(`/api/v1/events/${encodeURIComponent(eventId)}/media`).then((r) => (r.ok ? r.json() : null)).then((m) => {
        if (m && typeof m.publishing === "boolean" && live.publishing === null) tellPlayer({ type: "media.state", publishing: m.publishing });
      }).catch(() => {});
    }
  }

  function handle(msg) {
    if (msg.type === "batch") { for (const m of msg.messages || []) handle(m); return; }
    if (typeof msg.seq === "number" && msg.type !== "snapshot" && msg.type !== "viewers" && msg.type !== "resumed") {
      if (msg.seq <= state.seq) return;
      state.seq = msg.seq;
    } else if ((msg.type === "snapshot" || msg.type === "resumed") && typeof msg.seq === "number") {
      state.seq = Math.max(state.seq, msg.seq);
    }
    if (!shared) tellPlayer(msg);
    if (!String(msg.type || "").startsWith("draw.")) return;
    if (!state.ready) state.queue.push(msg); else apply(msg, true);
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const since = state.seq > 0 ? `?since=${state.seq}` : "";
    setConn("connecting");
    const ws = new WebSocket(`${proto}//${location.host}/ws/events/${encodeURIComponent(eventId)}${since}`);
    state.ws = ws;
    ws.onopen = () => { state.backoff = 500; setConn("online"); };
    ws.onmessage = (m) => { let msg; try { msg = JSON.parse(m.data); } catch (_) { return; } handle(msg); };
    ws.onclose = () => {
      if (state.ws !== ws) return;
      setConn("offline");
      const wait = Math.min(state.backoff, 15000);
      state.backoff *= 2;
      setTimeout(connect, wait + Math.random() * 250);
    };
  }

  // The socket first (its messages are held), then the state so far, then the held ones.
  const shared = root.dataset.sharedSocket !== undefined;
  async function start() {
    if (shared) document.addEventListener("gongkai:message", (e) => handle(e.detail));
    else connect();
    try {
      const res = await fetch(`/api/v1/draws/${encodeURIComponent(drawId)}/progress`, { headers: { Accept: "application/json" } });
      if (res.ok) {
        const p = await res.json();
        for (const s of p.steps || []) {
          if (s.step === "seed") seed(s);
          else if (s.step === "number") number(s, false);
          else if (s.step === "admitted") admit(s);
        }
        if (p.state === "published" || p.state === "countersigned") published({ transcript_hash: p.transcript_hash });
      }
    } catch (_) { /* the socket still delivers what comes next */ }
    state.ready = true;
    for (const m of state.queue.splice(0)) apply(m, true);
  }
  start();
})();

// The event page's live side: one WebSocket to /ws/events/{id} (see docs/protocol.md).
// All user text is inserted with textContent, never as HTML.
// It owns the page's only socket and tells the rest of the page what it hears, as DOM
// events on `document` (the latest values also in window.gongkai.live):
//   "gongkai:status" {status}      from the snapshot and `event.status`
//   "gongkai:media"  {publishing}  from the snapshot's `media` and `media.state`
//   "gongkai:message" <message>    every message (the draw play-out on a draw event)
"use strict";

(() => {
  const root = document.getElementById("event");
  if (!root) return;
  const eventId = root.dataset.eventId;
  const i18n = document.getElementById("i18n").dataset;
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  const state = { seq: 0, you: null, role: null, status: root.dataset.status, chat: { open: true, slow_mode_secs: 0 },
    questions: new Map(), answered: [], ws: null, backoff: 500, refs: 0, heard: 0 };
  // Liveness: a quiet room sends nothing for minutes, and a connection a NAT or a
  // mobile network dropped silently looks open. Pinging keeps the mappings alive; a
  // socket silent for 2.5 pings is dead, and a new one resumes with `since`.
  const pingMs = Math.max(1, Number(root.dataset.pingSecs) || 25) * 1000;

  // ---- what the player and the play-out hear ------------------------------
  const gk = (window.gongkai = window.gongkai || {});
  const live = (gk.live = gk.live || { status: root.dataset.status, publishing: null });
  const emit = (name, detail) => document.dispatchEvent(new CustomEvent(name, { detail }));
  function setPublishing(publishing) {
    if (typeof publishing !== "boolean") return;
    live.publishing = publishing;
    emit("gongkai:media", { publishing });
  }
  // A server without `media` in its snapshot: ask once (no polling).
  async function fetchMedia() {
    try {
      const response = await fetch(`/api/v1/events/${encodeURIComponent(eventId)}/media`);
      if (response.ok) setPublishing((await response.json()).publishing);
    } catch (_) { /* the next snapshot or media.state tells */ }
  }

  // ---- nickname -----------------------------------------------------------
  async function loadViewer() {
    try {
      const { viewer } = await window.gongkai.api("GET", "/api/v1/viewer");
      setViewer(viewer);
    } catch (_) { setViewer(null); }
  }
  function setViewer(viewer) {
    state.viewer = viewer;
    $("nickname-form").hidden = !!viewer;
    $("chat-form").hidden = !viewer;
    $("question-form").hidden = !viewer;
    if (viewer) $("my-nickname").textContent = viewer.nickname;
  }
  $("nickname-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const { viewer } = await window.gongkai.api("POST", "/api/v1/viewer", { nickname: $("nickname").value });
      setViewer(viewer);
      reconnect(); // the server learns the identity at connect time
    } catch (e) { showError(e.message); }
  });

  // ---- socket -------------------------------------------------------------
  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const since = state.seq > 0 ? `?since=${state.seq}` : "";
    setConn("connecting");
    const ws = new WebSocket(`${proto}//${location.host}/ws/events/${encodeURIComponent(eventId)}${since}`);
    state.ws = ws;
    ws.onopen = () => { state.backoff = 500; state.heard = Date.now(); setConn("online"); };
    ws.onmessage = (m) => {
      state.heard = Date.now();
      let msg;
      try { msg = JSON.parse(m.data); } catch (_) { return; }
      handle(msg);
    };
    ws.onclose = (ev) => {
      if (state.ws !== ws) return;
      setConn("offline");
      if (ev.code === 1000 && state.status === "ended") return;
      const wait = Math.min(state.backoff, 15000);
      state.backoff *= 2;
      setTimeout(connect, wait + Math.random() * 250);
    };
  }
  setInterval(() => {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - state.heard > pingMs * 2.5) {
      setConn("connecting");
      reconnect();
      return;
    }
    ws.send(JSON.stringify({ type: "ping", t: Date.now() }));
  }, pingMs);
  function reconnect() {
    const old = state.ws;
    state.ws = null;
    if (old) old.close(1000);
    connect();
  }
  function send(msg) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      msg.ref = `r${++state.refs}`;
      state.ws.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }
  function setConn(which) { $("connection").textContent = $("connection").dataset[which] || ""; }

  // ---- messages -----------------------------------------------------------
  function handle(msg) {
    if (msg.type === "batch") { for (const m of msg.messages) handle(m); return; }
    if (typeof msg.seq === "number" && msg.type !== "viewers" && msg.type !== "snapshot" && msg.type !== "resumed") {
      if (msg.seq <= state.seq) return; // already seen
      state.seq = msg.seq;
    }
    emit("gongkai:message", msg);
    switch (msg.type) {
      case "snapshot": return applySnapshot(msg);
      case "resumed": state.seq = Math.max(state.seq, msg.seq); return;
      case "chat.message": return addChat(msg);
      case "chat.deleted": { const li = document.querySelector(`#chat-messages li[data-id="${msg.id}"]`); if (li) li.remove(); return; }
      case "chat.settings": state.chat = { open: msg.open, slow_mode_secs: msg.slow_mode_secs }; return renderChatState();
      case "likes": $("likes-total").textContent = msg.total; return;
      case "question.asked": state.questions.set(msg.question.id, msg.question); return renderQuestions();
      case "question.upvoted": { const q = state.questions.get(msg.id); if (q) { q.votes = msg.votes; renderQuestions(); } return; }
      case "question.answered": {
        const q = state.questions.get(msg.id);
        if (q) { state.questions.delete(msg.id); q.answered = true; q.answer = msg.answer; q.answered_at = msg.answered_at; state.answered.unshift(q); }
        return renderQuestions();
      }
      case "event.status": return setStatus(msg.status);
      case "media.state": return setPublishing(msg.publishing);
      case "event.updated": if (msg.event && msg.event.title) $("event-title").textContent = msg.event.title; if (msg.event && msg.event.status) setStatus(msg.event.status); return;
      case "viewers": $("viewers-current").textContent = msg.current; return;
      case "error": return showError(msg.message || msg.code);
      case "ack": case "pong": return;
      default: return;
    }
  }

  function applySnapshot(s) {
    state.seq = s.seq;
    state.you = s.you || null;
    state.role = s.you && s.you.role ? s.you.role : null;
    state.chat = s.chat || state.chat;
    $("chat-messages").replaceChildren();
    for (const m of s.messages || []) addChat(m);
    state.questions = new Map((s.questions || []).map((q) => [q.id, q]));
    state.answered = s.answered || [];
    if (typeof s.likes === "number") $("likes-total").textContent = s.likes;
    if (s.viewers) $("viewers-current").textContent = s.viewers.current;
    if (s.event && s.event.status) setStatus(s.event.status);
    if (s.media && typeof s.media.publishing === "boolean") setPublishing(s.media.publishing);
    else if (live.publishing === null && state.status === "live") fetchMedia();
    $("moderation").hidden = !(state.role === "moderator" || state.role === "admin");
    renderQuestions();
    renderChatState();
  }

  const isModerator = () => state.role === "moderator" || state.role === "admin";
  const canAnswer = () => isModerator() || state.role === "broadcaster";

  function addChat(m) {
    const li = el("li", "msg");
    li.dataset.id = m.id;
    const nick = el("span", "nick" + (m.author && m.author.role ? " staff" : ""), m.author ? m.author.nickname : "?");
    li.append(nick, document.createTextNode(": "), el("span", "text", m.text));
    if (isModerator()) {
      const del = el("button", "mini danger", i18n.delete);
      del.type = "button";
      del.addEventListener("click", () => send({ type: "chat.delete", message_id: m.id }));
      const ban = el("button", "mini danger", i18n.ban);
      ban.type = "button";
      ban.addEventListener("click", () => {
        if (confirm(i18n.banConfirm)) send({ type: "viewer.ban", message_id: m.id, duration_secs: 86400 });
      });
      li.append(" ", del, " ", ban);
    }
    const list = $("chat-messages");
    list.append(li);
    while (list.children.length > 200) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
  }

  function renderQuestions() {
    const open = [...state.questions.values()].sort((a, b) => b.votes - a.votes || a.time - b.time);
    $("questions").replaceChildren(...open.map((q) => {
      const li = el("li", "question");
      li.dataset.id = q.id;
      li.append(el("span", "votes", String(q.votes)), " ", el("span", "nick", q.author ? q.author.nickname : "?"), ": ", el("span", "text", q.text), " ");
      const up = el("button", "mini", i18n.upvote);
      up.type = "button";
      up.addEventListener("click", () => send({ type: "question.upvote", question_id: q.id }));
      li.append(up);
      if (canAnswer()) {
        const ans = el("button", "mini", i18n.answer);
        ans.type = "button";
        ans.addEventListener("click", () => {
          const text = prompt(i18n.answerPrompt, "");
          if (text === null) return;
          const msg = { type: "question.answer", question_id: q.id };
          if (text.trim()) msg.answer = text.trim();
          send(msg);
        });
        li.append(" ", ans);
      }
      return li;
    }));
    $("answered").replaceChildren(...state.answered.map((q) => {
      const li = el("li", "question answered");
      li.dataset.id = q.id;
      li.append(el("p", "q", `${q.author ? q.author.nickname : "?"}: ${q.text}`), el("p", "a", q.answer || i18n.answerLive));
      return li;
    }));
  }

  function renderChatState() {
    let text = "";
    if (state.status === "ended" || state.status === "cancelled") text = i18n.ended;
    else if (!state.chat.open) text = i18n.closed;
    else if (state.chat.slow_mode_secs > 0) text = i18n.slow.replace("{n}", state.chat.slow_mode_secs);
    $("chat-state").textContent = text;
  }

  function setStatus(status) {
    const before = state.status;
    state.status = status;
    root.dataset.status = status;
    const badge = $("event-status");
    badge.className = `badge status-${status}`;
    badge.textContent = i18n["status" + status[0].toUpperCase() + status.slice(1)] || status;
    renderChatState();
    live.status = status;
    emit("gongkai:status", { status });
    // Reopened after an end: the page showing the record becomes the live page again
    // (spread over a few seconds, not every viewer at once).
    if (before === "ended" && status === "live") setTimeout(() => location.reload(), Math.random() * 3000);
  }

  function showError(text) {
    const p = $("chat-error");
    p.textContent = text;
    p.hidden = false;
    clearTimeout(showError.timer);
    showError.timer = setTimeout(() => { p.hidden = true; }, 5000);
  }

  // ---- forms --------------------------------------------------------------
  $("chat-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("chat-input");
    if (input.value.trim() && send({ type: "chat.send", text: input.value })) input.value = "";
  });
  $("question-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("question-input");
    if (input.value.trim() && send({ type: "question.ask", text: input.value })) input.value = "";
  });
  // Taps are summed for 300 ms and sent as one `like` (the server aggregates further).
  let pendingLikes = 0;
  let likeTimer = null;
  $("like-button").addEventListener("click", () => {
    pendingLikes += 1;
    $("likes-total").textContent = Number($("likes-total").textContent) + 1;
    if (likeTimer) return;
    likeTimer = setTimeout(() => {
      likeTimer = null;
      if (pendingLikes > 0 && send({ type: "like", count: Math.min(pendingLikes, 50) })) pendingLikes = 0;
    }, 300);
  });
  $("slow-mode-set").addEventListener("click", () => send({ type: "chat.slow_mode", seconds: Number($("slow-mode").value) || 0 }));
  $("chat-close").addEventListener("click", () => send({ type: "chat.close" }));
  $("chat-open").addEventListener("click", () => send({ type: "chat.open" }));

  loadViewer().then(connect);
})();

// Times in the record (recording segments, chat) in Beijing time, whatever the reader's
// time zone: the district's own clock, as every other time on the page.
(() => {
  const lang = document.documentElement.lang || "zh-CN";
  const format = (options) => new Intl.DateTimeFormat(lang, Object.assign({ timeZone: "Asia/Shanghai", hourCycle: "h23" }, options));
  const full = format({ year: "numeric", month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const clock = format({ hour: "2-digit", minute: "2-digit", second: "2-digit" });
  for (const el of document.querySelectorAll("time[data-bj-ms]")) {
    const d = new Date(Number(el.dataset.bjMs));
    if (Number.isNaN(d.getTime())) continue;
    el.dateTime = d.toISOString();
    el.textContent = (el.dataset.clock !== undefined ? clock : full).format(d);
  }
})();

// The past event's recording: one <video> and its segments (publisher sessions); a
// segment plays on click, and the next one follows when it ends.
(() => {
  const video = document.getElementById("replay");
  const list = document.getElementById("replay-segments");
  if (!video || !list) return;
  const links = Array.from(list.querySelectorAll("a.replay-segment"));
  // An unlisted event's recordings need its viewer token (from the link's #t=...): the
  // server turns it into a cookie for the recordings only, so it never sits in a URL.
  const viewToken = new URLSearchParams(location.hash.slice(1)).get("t");
  if (viewToken) {
    fetch(`/api/v1/events/${encodeURIComponent(document.getElementById("event").dataset.eventId)}/replay-access`, {
      method: "POST", headers: { Authorization: `Bearer ${viewToken}` },
    }).then((response) => { if (response.ok) video.load(); }).catch(() => {});
  }
  const select = (link, play) => {
    links.forEach((l) => l.classList.toggle("current", l === link));
    video.src = link.getAttribute("href");
    if (play) video.play().catch(() => {});
  };
  links.forEach((link) => link.addEventListener("click", (ev) => {
    ev.preventDefault();
    select(link, true);
  }));
  video.addEventListener("ended", () => {
    const at = links.findIndex((l) => l.classList.contains("current"));
    if (at >= 0 && at + 1 < links.length) select(links[at + 1], true);
  });
})();

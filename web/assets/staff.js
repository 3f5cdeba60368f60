// Staff event pages: create/edit through the JSON API (CSRF header from the page meta).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const toLocalInput = (iso) => {
    if (!iso) return "";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return "";
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  };
  // One reload however many reasons arrive (an action's answer and the socket's news).
  let reloading = false;
  const reload = (delay) => setTimeout(() => {
    if (reloading) return;
    reloading = true;
    location.reload();
  }, delay || 0);
  const list = (s) => s.split(/[,，\s]+/).map((x) => x.trim()).filter(Boolean);

  const form = $("event-form");
  if (form) {
    for (const id of ["ev-start", "ev-end"]) $(id).value = toLocalInput($(id).dataset.iso);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const err = $("form-error");
      err.hidden = true;
      const guests = $("ev-guests").value.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
        const [name, title, organisation] = l.split("|").map((x) => (x || "").trim());
        return { name, title: title || "", organisation: organisation || "" };
      });
      const body = {
        kind: $("ev-kind").value, title: $("ev-title").value, topic: $("ev-topic").value,
        summary: $("ev-summary").value,
        scheduled_start: new Date($("ev-start").value).toISOString(),
        scheduled_end: new Date($("ev-end").value).toISOString(),
        form: $("ev-form").value, visibility: $("ev-visibility").value, guests,
        broadcasters: list($("ev-broadcasters").value), moderators: list($("ev-moderators").value),
      };
      const id = form.dataset.eventId;
      try {
        const event = id ? await window.gongkai.api("PATCH", `/api/v1/events/${id}`, body)
                         : await window.gongkai.api("POST", "/api/v1/events", body);
        location.href = `/staff/events/${event.id}`;
      } catch (e) {
        err.textContent = e.message;
        err.hidden = false;
      }
    });
  }

  const actions = $("event-actions");
  if (actions) {
    const id = actions.dataset.eventId;
    const endDialog = $("end-dialog");
    async function run(action) {
      const err = $("action-error");
      err.hidden = true;
      try {
        if (action === "token") {
          const { token } = await window.gongkai.api("POST", `/api/v1/events/${id}/publish-token`);
          $("publish-token").textContent = token;
          $("token-box").hidden = false;
          return;
        }
        if (action === "cancel") await window.gongkai.api("DELETE", `/api/v1/events/${id}`);
        else await window.gongkai.api("POST", `/api/v1/events/${id}/${action}`);
        reload();
      } catch (e) {
        err.textContent = e.message;
        err.hidden = false;
      }
    }
    actions.addEventListener("click", (ev) => {
      const action = ev.target.dataset && ev.target.dataset.action;
      if (!action) return;
      // Ending cuts the public stream and the broadcaster: ask first, naming the event.
      if (action === "end" && endDialog && typeof endDialog.showModal === "function") { endDialog.showModal(); return; }
      run(action);
    });
    if (endDialog) {
      $("end-cancel").addEventListener("click", () => endDialog.close());
      $("end-confirm").addEventListener("click", () => {
        $("end-confirm").disabled = true;
        endDialog.close();
        run("end").finally(() => { $("end-confirm").disabled = false; });
      });
    }
    watch(id, actions.dataset.status);
  }

  // ---- the staff event page's live side ------------------------------------------
  // One socket to the event (the session cookie makes it a staff connection): a status
  // changed elsewhere (another manager, the publisher on a follow-publisher event)
  // reloads the page, and the preview plays whenever somebody publishes, rehearsal
  // included. The preview is a WHEP viewer with a short-lived preview credential.
  function watch(eventId, pageStatus) {
    const box = $("staff-preview");
    const video = $("preview-player");
    const text = box ? $("preview-i18n").dataset : {};
    const live = { status: pageStatus, publishing: null };
    let credential = null;
    const say = (key) => {
      if (!box) return;
      $("preview-area").dataset.state = key;
      $("preview-state").textContent = text[key] || "";
      $("preview-state").parentElement.hidden = key === "playing";
      const badge = $("preview-badge");
      badge.hidden = key !== "playing";
      const onAir = live.status === "live";
      badge.textContent = onAir ? text.live : text.rehearsal;
      badge.className = `badge ${onAir ? "status-live" : "status-scheduled"}`;
    };
    const preview = box && window.gongkai.Player ? new window.gongkai.Player({
      video, eventId,
      async bearer() {
        if (credential && credential.expires_at * 1000 > Date.now() + 30000) return credential.token;
        credential = await window.gongkai.api("POST", `/api/v1/events/${encodeURIComponent(eventId)}/preview-credential`);
        return credential.token;
      },
      refreshBearer() { credential = null; },
      onState(key, info) {
        if (key === "not_live") { say("error"); preview.schedule(info.retryAfter || 3); return; }
        if (key === "waiting" && !live.publishing) { say("waiting"); return; }
        if (key === "denied") { say("error"); return; }
        say(key);
      },
    }) : null;
    function render() {
      if (!preview) return;
      const watchable = live.status === "scheduled" || live.status === "live";
      preview.setPublishing(!!live.publishing);
      if (!watchable) { preview.want(false); say("ended"); return; }
      if (live.publishing) { preview.want(true); return; }
      // The publisher went away: drop the preview until the next one.
      preview.want(false);
      say("waiting");
    }
    function setStatus(next) {
      if (!next) return;
      if (next !== pageStatus) reload(300);
      live.status = next;
      render();
    }
    const ws = { socket: null, seq: 0, backoff: 500 };
    function handle(msg) {
      if (msg.type === "batch") { for (const m of msg.messages || []) handle(m); return; }
      if (typeof msg.seq === "number" && msg.type !== "snapshot" && msg.type !== "viewers" && msg.type !== "resumed") {
        if (msg.seq <= ws.seq) return;
        ws.seq = msg.seq;
      } else if ((msg.type === "snapshot" || msg.type === "resumed") && typeof msg.seq === "number") {
        ws.seq = Math.max(ws.seq, msg.seq);
      }
      if (msg.type === "snapshot") {
        if (msg.media && typeof msg.media.publishing === "boolean") live.publishing = msg.media.publishing;
        else if (live.publishing === null) {
          // A server without `media` in its snapshot: ask once.
          window.gongkai.api("GET", `/api/v1/events/${encodeURIComponent(eventId)}/media`)
            .then((m) => { if (live.publishing === null) { live.publishing = !!m.publishing; render(); } }).catch(() => {});
        }
        setStatus(msg.event && msg.event.status);
      } else if (msg.type === "event.status") setStatus(msg.status);
      else if (msg.type === "media.state") { live.publishing = !!msg.publishing; render(); }
    }
    function connect() {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const since = ws.seq > 0 ? `?since=${ws.seq}` : "";
      const socket = new WebSocket(`${proto}//${location.host}/ws/events/${encodeURIComponent(eventId)}${since}`);
      ws.socket = socket;
      socket.onopen = () => { ws.backoff = 500; };
      socket.onmessage = (m) => { let msg; try { msg = JSON.parse(m.data); } catch (_) { return; } handle(msg); };
      socket.onclose = () => {
        if (ws.socket !== socket) return;
        const wait = Math.min(ws.backoff, 15000);
        ws.backoff *= 2;
        setTimeout(connect, wait + Math.random() * 250);
      };
    }
    if (pageStatus === "scheduled" || pageStatus === "live") connect();
    say("waiting");
  }
})();

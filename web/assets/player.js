// WHEP players. `window.gongkai.Player` is one WebRTC viewer (WHEP, muted autoplay) that
// heals itself: a connection that is up but has decoded no frame within 3 s (or whose
// frames stop for 5 s while the publisher is on) is closed and made again. Pages decide
// WHEN to play; the player never polls the server to find out.
//
// The public player below (event page, draw page) plays exactly while the event's
// WebSocket says `live` and `publishing`. It learns both from DOM events dispatched by
// the page's socket owner (event.js, or draw-live.js on the draw page):
//   document: "gongkai:status" {detail: {status}}, "gongkai:media" {detail: {publishing}}
// (the latest values also sit in window.gongkai.live). Before the start the player area
// shows the start time (Beijing time, rendered by the server) and a countdown.
//
// Tests read video.dataset: state (what the player shows), framesDecoded (frames decoded
// by every connection of this page so far) and whep (WHEP offers sent).
"use strict";
(() => {
  const gk = (window.gongkai = window.gongkai || {});
  const STALL_MS = 3000;     // connected, no frame at all: reconnect
  const FROZEN_MS = 5000;    // frames stopped while the publisher is on: reconnect

  function gathered(peer) {
    if (peer.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      peer.addEventListener("icegatheringstatechange", () => {
        if (peer.iceGatheringState === "complete") resolve();
      });
      setTimeout(resolve, 2000); // host candidates suffice on most networks
    });
  }

  // options: video, eventId, onState(key, info), bearer(): Promise<string|null>,
  // refreshBearer(): called once after a 401/403 when a bearer was sent.
  class Player {
    constructor(options) {
      this.o = options;
      this.video = options.video;
      this.pc = null;
      this.retry = null;
      this.wanted = false;
      this.publishing = true;
      this.base = 0;          // frames decoded by connections already closed
      this.frames = 0;        // frames decoded by the current connection
      this.connectedAt = 0;
      this.progressAt = 0;
      this.failures = 0;
      this.offers = 0;
      this.video.dataset.framesDecoded = this.video.dataset.framesDecoded || "0";
      this.timer = setInterval(() => this.watch(), 1000);
    }

    state(key, info) {
      this.video.dataset.state = key;
      if (this.o.onState) this.o.onState(key, info || {});
    }

    // Play (true) or stop (false). Playing while already connected does nothing.
    want(on) {
      this.wanted = on;
      if (!on) { this.stop(); return; }
      if (!this.pc && !this.retry) this.connect();
    }

    // The publisher came or went (the connection is kept: the SFU switches the next
    // publisher's packets onto it).
    setPublishing(on) {
      if (on && !this.publishing) this.progressAt = performance.now();
      this.publishing = on;
    }

    stop() {
      clearTimeout(this.retry);
      this.retry = null;
      this.closePeer();
    }

    closePeer() {
      const old = this.pc;
      this.pc = null;
      if (old) old.close();
      this.base += this.frames;
      this.frames = 0;
      this.connectedAt = 0;
      this.video.dataset.framesDecoded = String(this.base);
    }

    schedule(seconds) {
      clearTimeout(this.retry);
      this.retry = null;
      if (!this.wanted) return;
      this.retry = setTimeout(() => { this.retry = null; this.connect(); }, seconds * 1000);
    }

    async connect() {
      if (!this.wanted) return;
      clearTimeout(this.retry);
      this.retry = null;
      this.closePeer();
      const peer = (this.pc = new RTCPeerConnection());
      peer.addTransceiver("video", { direction: "recvonly" });
      peer.addTransceiver("audio", { direction: "recvonly" });
      const stream = new MediaStream();
      peer.addEventListener("track", (e) => {
        if (peer !== this.pc) return;
        stream.addTrack(e.track);
        this.video.srcObject = stream;
        this.video.play().catch(() => {});
      });
      peer.addEventListener("connectionstatechange", () => {
        if (peer !== this.pc) return;
        if (peer.connectionState === "connected") {
          this.connectedAt = this.progressAt = performance.now();
          this.state(this.frames > 0 ? "playing" : "connecting");
        } else if (peer.connectionState === "failed") {
          this.closePeer();
          this.state("reconnecting");
          this.schedule(this.backoff());
        }
      });
      this.state("connecting");
      try {
        await peer.setLocalDescription(await peer.createOffer());
        await gathered(peer);
        if (peer !== this.pc) return;
        const bearer = this.o.bearer ? await this.o.bearer() : null;
        if (peer !== this.pc) return;
        this.offers += 1;
        this.video.dataset.whep = String(this.offers);
        const headers = { "Content-Type": "application/sdp" };
        if (bearer) headers.Authorization = `Bearer ${bearer}`;
        const response = await fetch(`/whep/${encodeURIComponent(this.o.eventId)}`, {
          method: "POST", body: peer.localDescription.sdp, headers,
        });
        if (peer !== this.pc) return;
        if (response.status === 201) {
          await peer.setRemoteDescription({ type: "answer", sdp: await response.text() });
          this.refreshed = false;
          return;
        }
        const retryAfter = Number(response.headers.get("Retry-After")) || 0;
        const body = await response.json().catch(() => ({}));
        const code = body && body.error ? body.error.code : "";
        this.closePeer();
        if (response.status === 409 && code === "ended") { this.wanted = false; this.state("ended"); return; }
        if (response.status === 409) { this.state("not_live", { retryAfter }); return; }
        if (response.status === 404) { this.wanted = false; this.state("ended"); return; }
        if ((response.status === 401 || response.status === 403) && bearer && this.o.refreshBearer && !this.refreshed) {
          this.refreshed = true;
          this.o.refreshBearer();
          this.schedule(0.2);
          return;
        }
        if (response.status === 401 || response.status === 403) { this.wanted = false; this.state("denied"); return; }
        // 503: nobody publishes yet (the socket will say when); try again when told.
        this.state("waiting");
        this.schedule(retryAfter || this.backoff());
      } catch (_) {
        if (peer !== this.pc) return;
        this.closePeer();
        this.state("reconnecting");
        this.schedule(this.backoff());
      }
    }

    backoff() {
      this.failures += 1;
      return Math.min(1.5 * this.failures, 10);
    }

    async watch() {
      const peer = this.pc;
      if (!peer) return;
      let frames = 0;
      try {
        const stats = await peer.getStats();
        stats.forEach((s) => {
          if (s.type === "inbound-rtp" && s.kind === "video") frames = Math.max(frames, s.framesDecoded || 0);
        });
      } catch (_) { return; }
      if (peer !== this.pc) return;
      const now = performance.now();
      if (frames > this.frames) {
        if (this.frames === 0 || this.video.dataset.state !== "playing") this.state("playing");
        this.frames = frames;
        this.progressAt = now;
        this.failures = 0;
      }
      this.video.dataset.framesDecoded = String(this.base + this.frames);
      if (!this.connectedAt || !this.publishing) return;
      const stalled = this.frames === 0 && now - this.connectedAt > STALL_MS;
      const frozen = this.frames > 0 && now - this.progressAt > FROZEN_MS;
      if (stalled || frozen) {
        // Up but black (or frozen): say so and start over, without a reload.
        this.state("stalled");
        this.video.dataset.stalls = String(Number(this.video.dataset.stalls || 0) + 1);
        this.closePeer();
        this.schedule(Math.min(0.5 * (1 + this.failures++), 5));
      }
    }
  }
  gk.Player = Player;

  // ---- the public player --------------------------------------------------------
  const video = document.getElementById("player");
  const article = document.getElementById("event");
  if (!video || !article) return;
  const eventId = article.dataset.eventId;
  const area = document.getElementById("player-area");
  const stateBox = document.getElementById("player-state");
  const countdownBox = document.getElementById("player-countdown");
  const startBox = document.getElementById("player-start");
  const replayLink = document.getElementById("player-replay");
  const unmute = document.getElementById("player-unmute");
  const text = (document.getElementById("player-i18n") || { dataset: {} }).dataset;
  const startMs = Number(article.dataset.startMs) || 0;
  // Unlisted events: the viewer token travels in the link's fragment (#t=...), which the
  // browser never sends to a server (no logs, no Referer); it goes to WHEP as a bearer.
  const viewToken = new URLSearchParams(location.hash.slice(1)).get("t");

  const live = (gk.live = gk.live || { status: null, publishing: null });
  if (!live.status) live.status = article.dataset.status;
  let everPlayed = false;

  const show = (key, words) => {
    video.dataset.state = key;
    if (area) area.dataset.state = key;
    if (!stateBox) return;
    stateBox.textContent = words !== undefined ? words : (text[key] || "");
    const overlay = key !== "playing";
    stateBox.parentElement.hidden = !overlay;
    if (startBox) startBox.hidden = key !== "scheduled";
    if (countdownBox) countdownBox.hidden = key !== "scheduled";
    if (replayLink) replayLink.hidden = key !== "ended";
  };

  const player = new Player({
    video, eventId,
    bearer: async () => viewToken,
    onState(key, info) {
      if (key === "playing") everPlayed = true;
      if (key === "ended") { live.status = "ended"; render(); return; }
      if (key === "not_live") {
        // Not live yet for the server: the socket says when. Only if the socket already
        // said live (a status change still on its way between nodes) ask again later.
        if (live.status === "live") { show("waiting"); player.schedule(info.retryAfter || 3); } else render();
        return;
      }
      if (key === "connecting" && everPlayed) { show("reconnecting"); return; }
      // 503: live, but nobody publishes (the socket's media.state may still be on its
      // way): after a picture that is a pause; the player asks again when told to.
      if (key === "waiting" && everPlayed) { show("paused"); return; }
      if (key === "playing" && live.publishing === false) { show("paused"); return; }
      show(key);
    },
  });

  function render() {
    const s = live.status;
    if (s === "ended" || s === "cancelled") {
      player.want(false);
      show(s === "ended" ? "ended" : "cancelled");
      return;
    }
    if (s === "scheduled") {
      player.want(false);
      show("scheduled");
      tick();
      return;
    }
    // live
    if (live.publishing === null) { show("waiting"); return; } // not heard yet
    player.setPublishing(live.publishing);
    if (!live.publishing) {
      if (!player.pc) player.want(false);
      show(everPlayed ? "paused" : "waiting");
      return;
    }
    player.want(true);
  }

  // The countdown to the scheduled start (the start time itself is server-rendered).
  function pad(n) { return String(n).padStart(2, "0"); }
  function tick() {
    if (!countdownBox || live.status !== "scheduled") return;
    const left = Math.floor((startMs - Date.now()) / 1000);
    if (!startMs || left <= 0) { countdownBox.textContent = text.starting || ""; return; }
    const d = Math.floor(left / 86400), h = Math.floor((left % 86400) / 3600);
    const m = Math.floor((left % 3600) / 60), s = left % 60;
    const hms = `${pad(h)}:${pad(m)}:${pad(s)}`;
    const t = d > 0 ? (text.days || "{d} {t}").replace("{d}", d).replace("{t}", hms) : hms;
    countdownBox.textContent = (text.countdown || "{t}").replace("{t}", t);
  }
  setInterval(tick, 1000);

  document.addEventListener("gongkai:status", (e) => {
    if (!e.detail || !e.detail.status) return;
    live.status = e.detail.status;
    render();
  });
  document.addEventListener("gongkai:media", (e) => {
    if (!e.detail || typeof e.detail.publishing !== "boolean") return;
    const was = live.publishing;
    live.publishing = e.detail.publishing;
    render();
    // A publisher just came: a retry still waiting out a 503's Retry-After goes now.
    if (was !== true && live.publishing && live.status === "live" && !player.pc && player.retry) player.connect();
  });

  if (unmute) {
    unmute.addEventListener("click", () => {
      video.muted = false;
      video.play().catch(() => {});
      unmute.hidden = true;
    });
  }

  video.dataset.whep = "0";
  render();
})();

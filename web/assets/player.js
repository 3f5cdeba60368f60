// The event page's WHEP player: muted autoplay, unmute button, reconnect, and the
// paused/ended states from /api/v1/events/{id}/media. event.js (chat) is separate.
"use strict";
(() => {
  const video = document.getElementById("player");
  const article = document.getElementById("event");
  if (!video || !article) return;
  const eventId = article.dataset.eventId;
  const stateBox = document.getElementById("player-state");
  const unmute = document.getElementById("player-unmute");
  const i18n = document.getElementById("player-i18n");
  let pc = null, retry = null, ended = article.dataset.status === "ended";
  // Unlisted events: the viewer token travels in the link's fragment (#t=...), which the
  // browser never sends to a server (no logs, no Referer); it goes to WHEP as a bearer.
  const viewToken = new URLSearchParams(location.hash.slice(1)).get("t");

  const say = (key) => {
    const text = i18n && i18n.dataset[key];
    if (stateBox && text) stateBox.textContent = text;
    if (stateBox) stateBox.hidden = key === "playing";
    video.dataset.state = key;
  };

  function schedule(seconds) {
    clearTimeout(retry);
    if (!ended) retry = setTimeout(connect, seconds * 1000);
  }

  function gathered(peer) {
    if (peer.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      peer.addEventListener("icegatheringstatechange", () => {
        if (peer.iceGatheringState === "complete") resolve();
      });
      setTimeout(resolve, 2000);
    });
  }

  async function connect() {
    if (ended) return;
    if (pc) pc.close();
    const peer = (pc = new RTCPeerConnection());
    peer.addTransceiver("video", { direction: "recvonly" });
    peer.addTransceiver("audio", { direction: "recvonly" });
    const stream = new MediaStream();
    peer.addEventListener("track", (e) => {
      stream.addTrack(e.track);
      video.srcObject = stream;
      video.play().catch(() => {});
    });
    peer.addEventListener("connectionstatechange", () => {
      if (peer !== pc) return;
      if (peer.connectionState === "connected") say("playing");
      if (peer.connectionState === "failed" || peer.connectionState === "closed") { say("reconnecting"); schedule(2); }
    });
    try {
      await peer.setLocalDescription(await peer.createOffer());
      await gathered(peer);
      const response = await fetch(`/whep/${eventId}`, {
        method: "POST", body: peer.localDescription.sdp,
        headers: Object.assign({ "Content-Type": "application/sdp" },
          viewToken ? { Authorization: `Bearer ${viewToken}` } : {}),
      });
      if (response.status === 201) {
        await peer.setRemoteDescription({ type: "answer", sdp: await response.text() });
        return;
      }
      peer.close();
      if (response.status === 404) { say("ended"); return; }
      if (response.status === 401 || response.status === 403) { say("denied"); return; }
      say("waiting");
      schedule(Number(response.headers.get("Retry-After")) || 3);
    } catch (_) {
      say("reconnecting");
      schedule(3);
    }
  }

  unmute.addEventListener("click", () => {
    video.muted = false;
    video.play().catch(() => {});
    unmute.hidden = true;
  });

  // Status: paused while the publisher is away; ended stops the player.
  setInterval(async () => {
    const response = await fetch(`/api/v1/events/${eventId}/media`).catch(() => null);
    if (!response || !response.ok) return;
    const status = await response.json();
    if (status.event_status === "ended") {
      ended = true;
      if (pc) pc.close();
      pc = null;
      say("ended");
    } else if (pc && status.paused) {
      say("paused");
    } else if (pc && status.publishing && pc.connectionState === "connected") {
      say("playing");
    }
    if (pc) {
      const stats = await pc.getStats();
      stats.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") video.dataset.framesDecoded = s.framesDecoded || 0;
      });
    }
  }, 1000);

  if (ended) say("ended"); else connect();
})();

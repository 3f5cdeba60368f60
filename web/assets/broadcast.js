// Broadcaster page: camera/microphone to the event's WHIP endpoint, with reconnect.
// The page publishes with a short-lived credential from the API (staff session), never
// the event's publish token: fetching that would rotate it and lock OBS out. The server
// checks a credential only when a session starts; a refused one (expired) is refetched.
// The event's WebSocket (read-only here) tells the page the event's status: publishing
// on a scheduled event is a rehearsal only staff see (试播中), live is public (直播中),
// and at the end the page stops publishing and releases the camera and microphone.
"use strict";
(() => {
  const root = document.getElementById("broadcast");
  if (!root) return;
  const eventId = root.dataset.eventId;
  const $ = (id) => document.getElementById(id);
  const preview = $("preview"), cameraSelect = $("camera"), micSelect = $("microphone");
  const stateText = $("broadcast-state"), errorBox = $("broadcast-error");
  const banner = $("broadcast-banner"), hint = $("broadcast-hint"), dialog = $("stop-dialog");
  let stream = null, pc = null, resource = null, token = null;
  let wanted = false, facing = "user", muted = false, lastBytes = 0, lastTime = 0;
  let status = root.dataset.status, ended = status === "ended" || status === "cancelled";

  const setState = (key) => {
    stateText.textContent = root.dataset[key] || key;
    stateText.dataset.state = key;
    banner.dataset.state = key;
  };
  const showError = (text) => { errorBox.textContent = text; errorBox.hidden = !text; };
  // What a connected publisher is: public once the event is live, a rehearsal before.
  const onAir = () => (status === "live" ? "live" : "rehearsal");
  const connected = () => pc && pc.connectionState === "connected";
  function showHint() {
    const key = ended ? "hintEnded" : status === "scheduled" ? "hintScheduled" : "";
    hint.textContent = key ? root.dataset[key] || "" : "";
    hint.hidden = !key;
  }

  async function fetchToken() {
    const response = await fetch(`/api/v1/events/${eventId}/publish-credential`, {
      method: "POST", headers: { "X-CSRF-Token": root.dataset.csrf },
    });
    if (!response.ok) throw new Error(`publish credential: HTTP ${response.status}`);
    return (await response.json()).token;
  }

  async function listDevices() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    for (const [select, kind] of [[cameraSelect, "videoinput"], [micSelect, "audioinput"]]) {
      const current = select.value;
      select.replaceChildren();
      for (const device of devices.filter((d) => d.kind === kind)) {
        const option = document.createElement("option");
        option.value = device.deviceId;
        option.textContent = device.label || kind;
        select.append(option);
      }
      if (current) select.value = current;
    }
  }

  async function openMedia() {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    const video = cameraSelect.value ? { deviceId: { exact: cameraSelect.value } } : { facingMode: facing };
    stream = await navigator.mediaDevices.getUserMedia({
      video: Object.assign({ width: { ideal: 1280 }, height: { ideal: 720 } }, video),
      audio: micSelect.value ? { deviceId: { exact: micSelect.value } } : true,
    });
    stream.getAudioTracks().forEach((t) => { t.enabled = !muted; });
    preview.srcObject = stream;
    await listDevices();
  }

  function gathered(peer) {
    if (peer.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (peer.iceGatheringState === "complete") resolve(); };
      peer.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 2000); // host candidates suffice on most networks
    });
  }

  async function publish() {
    setState("connecting");
    if (!stream || stream.getTracks().some((t) => t.readyState === "ended")) await openMedia();
    if (!token) token = await fetchToken();
    pc = new RTCPeerConnection();
    for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    pc.addEventListener("connectionstatechange", () => {
      if (!pc) return;
      if (pc.connectionState === "connected") setState(onAir());
      if (["failed", "disconnected", "closed"].includes(pc.connectionState) && wanted) reconnect();
    });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const response = await fetch(`/whip/${eventId}`, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
      body: pc.localDescription.sdp,
    });
    if (response.status === 403) token = null; // expired: fetch a fresh one
    if (response.status !== 201) {
      const body = await response.json().catch(() => ({}));
      if (response.status === 409 && body.error && body.error.code === "ended") { endedNow(); return; }
      throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
    }
    resource = response.headers.get("Location");
    await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  }

  async function unpublish() {
    const old = pc, where = resource;
    pc = null; resource = null;
    if (old) old.close();
    if (where && token) {
      await fetch(where, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
    }
  }

  let reconnecting = false;
  async function reconnect() {
    if (reconnecting) return;
    reconnecting = true;
    setState("reconnecting");
    await unpublish();
    while (wanted) {
      try { await publish(); showError(""); break; } catch (error) {
        showError(String(error.message || error));
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
    reconnecting = false;
  }

  $("start").addEventListener("click", async () => {
    if (ended) return;
    wanted = true;
    $("start").disabled = true; $("stop").disabled = false;
    try { await publish(); showError(""); } catch (error) {
      showError(String(error.message || error));
      reconnect();
    }
  });
  async function stopNow() {
    wanted = false;
    $("start").disabled = ended; $("stop").disabled = true;
    await unpublish();
    setState(ended ? "ended" : "idle");
  }
  // Stopping a live event's only picture interrupts the public stream: ask first.
  $("stop").addEventListener("click", () => {
    if (status === "live" && typeof dialog.showModal === "function") dialog.showModal();
    else stopNow();
  });
  $("stop-cancel").addEventListener("click", () => dialog.close());
  $("stop-confirm").addEventListener("click", () => { dialog.close(); stopNow(); });

  // The end: stop publishing, release the camera and the microphone, allow nothing more.
  function endedNow() {
    ended = true;
    wanted = false;
    unpublish();
    if (stream) stream.getTracks().forEach((t) => t.stop());
    for (const id of ["start", "stop", "flip", "mute", "camera", "microphone"]) $(id).disabled = true;
    if (dialog.open) dialog.close();
    setState("ended");
    // Every viewer was disconnected with the publisher.
    $("viewer-count").textContent = "0";
    showError("");
    showHint();
  }

  function setStatus(next) {
    // The same status again is news only when the page ended by itself (a WHIP 409) and
    // the event is live again (reopened).
    if (!next || (next === status && !(ended && next === "live"))) return;
    status = next;
    root.dataset.status = next;
    if (next === "ended" || next === "cancelled") { endedNow(); return; }
    if (ended) {
      // Reopened after an accidental end: the page may publish again.
      ended = false;
      for (const id of ["start", "flip", "mute", "camera", "microphone"]) $(id).disabled = false;
      setState("idle");
    } else if (connected()) setState(onAir());
    showHint();
  }

  // ---- the event's socket (read-only: only the status is needed) ----------------
  const ws = { socket: null, seq: 0, backoff: 500, heard: 0 };
  function handle(msg) {
    if (msg.type === "batch") { for (const m of msg.messages || []) handle(m); return; }
    if (typeof msg.seq === "number" && msg.type !== "snapshot" && msg.type !== "viewers" && msg.type !== "resumed") {
      if (msg.seq <= ws.seq) return;
      ws.seq = msg.seq;
    } else if ((msg.type === "snapshot" || msg.type === "resumed") && typeof msg.seq === "number") {
      ws.seq = Math.max(ws.seq, msg.seq);
    }
    if (msg.type === "snapshot" && msg.event) setStatus(msg.event.status);
    else if (msg.type === "event.status") setStatus(msg.status);
    else if (msg.type === "event.updated" && msg.event) setStatus(msg.event.status);
  }
  function connectSocket() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const since = ws.seq > 0 ? `?since=${ws.seq}` : "";
    const socket = new WebSocket(`${proto}//${location.host}/ws/events/${encodeURIComponent(eventId)}${since}`);
    ws.socket = socket;
    socket.onopen = () => { ws.backoff = 500; ws.heard = Date.now(); };
    socket.onmessage = (m) => {
      ws.heard = Date.now();
      let msg;
      try { msg = JSON.parse(m.data); } catch (_) { return; }
      handle(msg);
    };
    socket.onclose = () => {
      if (ws.socket !== socket) return;
      const wait = Math.min(ws.backoff, 15000);
      ws.backoff *= 2;
      setTimeout(connectSocket, wait + Math.random() * 250);
    };
  }
  // A socket a mobile network dropped silently looks open: ping it, and reopen one that
  // stays silent (the end must reach the broadcaster).
  setInterval(() => {
    const socket = ws.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    if (Date.now() - ws.heard > 60000) { ws.socket = null; socket.close(); connectSocket(); return; }
    socket.send(JSON.stringify({ type: "ping", t: Date.now() }));
  }, 20000);
  $("mute").addEventListener("click", () => {
    muted = !muted;
    if (stream) stream.getAudioTracks().forEach((t) => { t.enabled = !muted; });
    $("mute").textContent = muted ? $("mute").dataset.unmute : $("mute").dataset.mute;
  });
  $("flip").addEventListener("click", async () => {
    facing = facing === "user" ? "environment" : "user";
    cameraSelect.value = "";
    await switchDevices();
  });
  async function switchDevices() {
    await openMedia();
    if (!pc) return;
    for (const sender of pc.getSenders()) {
      const track = stream.getTracks().find((t) => sender.track && t.kind === sender.track.kind);
      if (track) await sender.replaceTrack(track);
    }
  }
  cameraSelect.addEventListener("change", switchDevices);
  micSelect.addEventListener("change", switchDevices);

  let ticks = 0;
  setInterval(async () => {
    const peer = pc;
    if (!peer) { $("bitrate").textContent = "0"; lastTime = 0; return; }
    const stats = await peer.getStats();
    let bytes = 0;
    stats.forEach((s) => { if (s.type === "outbound-rtp") bytes += s.bytesSent || 0; });
    const now = performance.now();
    if (lastTime && bytes >= lastBytes) $("bitrate").textContent = Math.round(((bytes - lastBytes) * 8) / (now - lastTime));
    lastBytes = bytes; lastTime = now;
    // The viewer count, while publishing, every few seconds.
    if (ticks++ % 3 !== 0) return;
    const response = await fetch(`/api/v1/events/${eventId}/media`).catch(() => null);
    if (response && response.ok) $("viewer-count").textContent = (await response.json()).viewers;
  }, 1000);

  showHint();
  connectSocket();
  if (ended) endedNow();
  else openMedia().catch((error) => showError(String(error.message || error)));
})();

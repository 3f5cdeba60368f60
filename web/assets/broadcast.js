// Broadcaster page: camera/microphone to the event's WHIP endpoint, with reconnect.
// The page publishes with a short-lived credential from the API (staff session), never
// the event's publish token: fetching that would rotate it and lock OBS out. The server
// checks a credential only when a session starts; a refused one (expired) is refetched.
"use strict";
(() => {
  const root = document.getElementById("broadcast");
  if (!root) return;
  const eventId = root.dataset.eventId;
  const $ = (id) => document.getElementById(id);
  const preview = $("preview"), cameraSelect = $("camera"), micSelect = $("microphone");
  const stateText = $("broadcast-state"), errorBox = $("broadcast-error");
  let stream = null, pc = null, resource = null, token = null;
  let wanted = false, facing = "user", muted = false, lastBytes = 0, lastTime = 0;

  const setState = (key) => { stateText.textContent = root.dataset[key] || key; stateText.dataset.state = key; };
  const showError = (text) => { errorBox.textContent = text; errorBox.hidden = !text; };

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
    if (!stream) await openMedia();
    if (!token) token = await fetchToken();
    pc = new RTCPeerConnection();
    for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    pc.addEventListener("connectionstatechange", () => {
      if (!pc) return;
      if (pc.connectionState === "connected") setState("live");
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
    wanted = true;
    $("start").disabled = true; $("stop").disabled = false;
    try { await publish(); showError(""); } catch (error) {
      showError(String(error.message || error));
      reconnect();
    }
  });
  $("stop").addEventListener("click", async () => {
    wanted = false;
    $("start").disabled = false; $("stop").disabled = true;
    await unpublish();
    setState("idle");
  });
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

  setInterval(async () => {
    if (pc) {
      const stats = await pc.getStats();
      let bytes = 0;
      stats.forEach((s) => { if (s.type === "outbound-rtp") bytes += s.bytesSent || 0; });
      const now = performance.now();
      if (lastTime && bytes >= lastBytes) $("bitrate").textContent = Math.round(((bytes - lastBytes) * 8) / (now - lastTime));
      lastBytes = bytes; lastTime = now;
    }
    const response = await fetch(`/api/v1/events/${eventId}/media`).catch(() => null);
    if (response && response.ok) $("viewer-count").textContent = (await response.json()).viewers;
  }, 1000);

  openMedia().catch((error) => showError(String(error.message || error)));
})();

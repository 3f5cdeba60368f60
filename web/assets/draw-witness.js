// A witness's page. Before the announcement: a 32-byte secret made here
// (crypto.getRandomValues), its commitment
//   hex(SHA-256("gongkai-draw/1/commit" || 0x00 || draw_id || 0x00 || secret)),
// the secret saved as a file on this device, and only the commitment sent. At the draw:
// the secret file (or pasted hex) is checked against the announced commitment here,
// then revealed. The link's token is in the URL fragment and goes in X-Witness-Token.
"use strict";

(() => {
  const D = window.gongkaiDraw;
  const $ = (id) => document.getElementById(id);
  const root = $("draw-witness");
  if (!root) return;
  const drawId = root.dataset.drawId;
  const index = Number(root.dataset.index);
  const i18n = $("witness-i18n").dataset;
  const error = $("witness-error");
  const token = decodeURIComponent(location.hash.replace(/^#/, ""));
  const headers = token ? { "X-Witness-Token": token } : {};
  const signedIn = !!(window.gongkai && window.gongkai.csrfToken());
  if (!token && !signedIn) $("witness-no-token").hidden = false;
  const api = (step, body) => D.call("POST", `/api/v1/draws/${encodeURIComponent(drawId)}/witnesses/${index}/${step}`, body, headers);

  async function commitmentOf(secret) {
    return D.hex(await D.sha256("gongkai-draw/1/commit\0", drawId, new Uint8Array([0]), secret));
  }

  // ---- commit ----------------------------------------------------------------------
  const generate = $("secret-generate");
  if (generate) {
    let secret = null;
    let commitment = "";
    generate.addEventListener("click", async () => {
      if (secret && !confirm(i18n.confirmReplace)) return;
      secret = crypto.getRandomValues(new Uint8Array(32));
      commitment = await commitmentOf(secret);
      $("witness-commitment").textContent = commitment;
      $("witness-secret").textContent = D.hex(secret);
      $("secret-download").disabled = false;
      $("commitment-send").disabled = true;
      $("commit-done").hidden = true;
    });
    $("secret-download").addEventListener("click", () => {
      if (!secret) return;
      const file = { spec: "gongkai-draw/1", draw_id: drawId, index, secret: D.hex(secret), commitment };
      D.download(`${drawId}-witness-${index}.secret`, JSON.stringify(file, null, 2) + "\n");
      // Sending is possible only once the secret is saved: without it there is no reveal.
      $("commitment-send").disabled = false;
    });
    $("commitment-send").addEventListener("click", async () => {
      D.say(error, "");
      const res = await api("commitment", { commitment });
      if (!res.ok) { D.say(error, res.message); return; }
      $("commit-done").hidden = false;
      $("commitment-send").disabled = true;
    });
  }

  // ---- reveal ----------------------------------------------------------------------
  const send = $("reveal-send");
  if (send) {
    const announced = root.dataset.commitment;
    const check = $("reveal-check");
    let secretHex = "";
    async function consider(text) {
      secretHex = "";
      send.disabled = true;
      const bytes = D.fromHex(text);
      if (!bytes || bytes.length !== 32) { check.textContent = text ? i18n.badFile : ""; check.className = "error"; return; }
      const ok = (await commitmentOf(bytes)) === announced;
      check.textContent = ok ? i18n.match : i18n.mismatch;
      check.className = ok ? "notice" : "error";
      if (ok) { secretHex = D.hex(bytes); send.disabled = false; }
    }
    $("reveal-file").addEventListener("change", async (ev) => {
      const file = ev.target.files[0];
      if (!file) return;
      let text = "";
      try {
        const raw = (await file.text()).trim();
        text = raw.startsWith("{") ? String(JSON.parse(raw).secret || "") : raw;
      } catch (_) { text = "-"; }
      $("reveal-secret").value = text;
      consider(text);
    });
    $("reveal-secret").addEventListener("input", (ev) => consider(ev.target.value.trim()));
    send.addEventListener("click", async () => {
      D.say(error, "");
      if (!secretHex) return;
      const res = await api("reveal", { secret: secretHex });
      if (!res.ok) { D.say(error, res.message); return; }
      $("reveal-done").hidden = false;
      send.disabled = true;
    });
  }
})();

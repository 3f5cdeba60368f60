// The parent's result lookup and inclusion-proof check. The proof is verified here
// (RFC 9162 section 2.1.3.2, WebCrypto SHA-256) against the root in the response AND the
// root inside the signed announcement fetched separately; the leaf is re-hashed from its
// canonical JSON (H(0x00 || JCS(leaf))).
"use strict";

(() => {
  const D = window.gongkaiDraw;
  const $ = (id) => document.getElementById(id);

  function failure(res, i18n) {
    if (res.status === 404) return i18n.noMatch;
    if (res.status === 409) return i18n.notYet;
    if (res.status === 429) return i18n.retry.replace("{n}", res.retryAfter || 60);
    return res.message;
  }

  // ---- lookup ----------------------------------------------------------------------
  const lookup = $("lookup-form");
  if (lookup) {
    const drawId = $("draw-lookup").dataset.drawId;
    const i18n = $("lookup-i18n").dataset;
    lookup.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const error = $("lookup-error");
      D.say(error, "");
      $("lookup-result").hidden = true;
      const res = await D.call("POST", `/api/v1/draws/${encodeURIComponent(drawId)}/lookup`, {
        child_id: $("lookup-child-id").value.trim(), child_name: $("lookup-child-name").value.trim(),
      });
      if (!res.ok) { D.say(error, failure(res, i18n)); return; }
      const r = res.data;
      $("lookup-name").textContent = r.masked_name;
      $("lookup-app").textContent = r.app;
      $("lookup-number").textContent = r.unit_size > 1 ? `${r.lottery_number} (${i18n.unit.replace("{n}", r.unit_size)})` : String(r.lottery_number);
      const kgName = (k) => `${k.name} (${k.code})`;
      const outcome = $("lookup-outcome");
      outcome.dataset.status = r.result.status;
      if (r.result.status === "admitted") outcome.textContent = i18n.admitted.replace("{kg}", kgName(r.result.kindergarten));
      else if (r.result.status === "waitlisted") outcome.textContent = i18n.waitlisted;
      else outcome.textContent = i18n.notAdmitted;
      $("lookup-waitlists").replaceChildren(...(r.waitlists || []).map((w) => D.el("li", null,
        `${kgName(w.kindergarten)} · ${i18n.choice.replace("{n}", w.choice)} · ${i18n.position.replace("{n}", w.position)}`)));
      $("lookup-result").hidden = false;
    });
  }

  // ---- inclusion proof -------------------------------------------------------------
  const proofForm = $("proof-form");
  if (proofForm) {
    const drawId = $("draw-proof").dataset.drawId;
    const i18n = $("proof-i18n").dataset;
    proofForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const error = $("proof-error");
      D.say(error, "");
      $("proof-result").hidden = true;
      const res = await D.call("POST", `/api/v1/draws/${encodeURIComponent(drawId)}/proof`, {
        app: $("proof-app").value.trim().toUpperCase(),
        child_id: $("proof-child-id").value.trim(), child_name: $("proof-child-name").value.trim(),
      });
      if (!res.ok) { D.say(error, failure(res, i18n)); return; }
      const p = res.data;
      // The announcement is fetched on its own: the root must be the one that was signed.
      const ann = await D.call("GET", `/api/v1/draws/${encodeURIComponent(drawId)}/announcement`);
      const announcedRoot = ann.ok && ann.data && ann.data.announcement ? ann.data.announcement.applications.root : "";
      const announcedSize = ann.ok && ann.data && ann.data.announcement ? ann.data.announcement.applications.tree_size : -1;
      const leafHash = await D.sha256(new Uint8Array([0]), D.jcs(p.leaf));
      let verdict = i18n.included;
      let ok = true;
      const computed = await rootFromPath(leafHash, p.leaf_index, p.tree_size, p.audit_path || []);
      if (p.leaf.app !== $("proof-app").value.trim().toUpperCase()) { ok = false; verdict = i18n.badLeaf; }
      else if (computed === null || computed !== p.root) { ok = false; verdict = i18n.badPath; }
      else if (announcedRoot !== p.root || announcedSize !== p.tree_size) { ok = false; verdict = i18n.badRoot; }
      const box = $("proof-verdict");
      box.textContent = verdict;
      box.className = ok ? "verdict ok" : "verdict bad";
      box.dataset.ok = ok ? "true" : "false";
      $("proof-index").textContent = `${p.leaf_index} / ${p.tree_size}`;
      $("proof-root").textContent = computed || "—";
      $("proof-announced-root").textContent = announcedRoot || "—";
      $("proof-result").hidden = false;
    });
  }

  // RFC 9162 2.1.3.2: the root hash an inclusion proof leads to, or null if malformed.
  async function rootFromPath(leafHash, index, size, path) {
    if (!(Number.isInteger(index) && Number.isInteger(size)) || index >= size || index < 0) return null;
    let fn = index;
    let sn = size - 1;
    let r = leafHash;
    const node = (a, b) => D.sha256(new Uint8Array([1]), a, b);
    for (const hexNode of path) {
      const p = D.fromHex(hexNode);
      if (!p || p.length !== 32 || sn === 0) return null;
      if (fn % 2 === 1 || fn === sn) {
        r = await node(p, r);
        if (fn % 2 === 0) {
          while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
        }
      } else {
        r = await node(r, p);
      }
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
    return sn === 0 ? D.hex(r) : null;
  }
})();

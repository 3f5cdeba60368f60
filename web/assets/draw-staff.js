// Staff draw pages: the new-draw form, one draw's lifecycle (with a confirmation before
// each irreversible step), CSV import with upload progress and line-numbered errors,
// witness links and commitments/reveals entered on a witness's behalf, and the notary's
// countersignature form. Everything goes through /api/v1/draws with the CSRF header.
"use strict";

(() => {
  const D = window.gongkaiDraw;
  const $ = (id) => document.getElementById(id);
  const iso = (id) => { const v = $(id) && $(id).value; return v ? new Date(v).toISOString().replace(/\.\d{3}Z$/, "Z") : null; };

  // ---- new draw --------------------------------------------------------------------
  const form = $("draw-form");
  if (form) {
    const addRow = (list, template) => { list.append($(template).content.firstElementChild.cloneNode(true)); };
    const kgs = $("dr-kgs");
    const witnesses = $("dr-witnesses");
    $("dr-kg-add").addEventListener("click", () => addRow(kgs, "kg-row"));
    $("dr-witness-add").addEventListener("click", () => addRow(witnesses, "witness-row"));
    for (const list of [kgs, witnesses]) {
      list.addEventListener("click", (ev) => {
        if (ev.target.classList.contains("row-remove") && list.children.length > 1) ev.target.closest("li").remove();
      });
    }
    addRow(kgs, "kg-row");
    addRow(witnesses, "witness-row");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const error = $("draw-form-error");
      D.say(error, "");
      const body = {
        draw_id: $("dr-id").value.trim(),
        title: $("dr-title").value.trim(),
        event_id: $("dr-event").value || null,
        kindergartens: Array.from(kgs.children).map((row) => ({
          code: row.querySelector(".kg-code").value.trim(),
          name: row.querySelector(".kg-name").value.trim(),
          seats: Number(row.querySelector(".kg-seats").value),
        })),
        mechanism: $("dr-mechanism").value,
        multiples: $("dr-multiples").value,
        witnesses: Array.from(witnesses.children).map((row) => ({
          name: row.querySelector(".w-name").value.trim(),
          role: row.querySelector(".w-role").value.trim(),
        })),
        beacon_source: $("dr-beacon").value.trim() || null,
        review: $("dr-review") ? $("dr-review").checked : true,
      };
      const times = { draw_time: iso("dr-time"), applications_open: iso("dr-open"), applications_close: iso("dr-close") };
      for (const [k, v] of Object.entries(times)) if (v) body[k] = v;
      const res = await D.call("POST", "/api/v1/draws", body);
      if (!res.ok) { D.say(error, res.message); return; }
      location.href = `/staff/draws/${encodeURIComponent(res.data.draw_id)}`;
    });
  }

  // ---- one draw --------------------------------------------------------------------
  const page = $("staff-draw");
  if (page) {
    const drawId = page.dataset.drawId;
    const base = `/api/v1/draws/${encodeURIComponent(drawId)}`;
    $("lifecycle").addEventListener("click", async (ev) => {
      const step = ev.target.dataset && ev.target.dataset.step;
      if (!step) return;
      const error = $("step-error");
      D.say(error, "");
      if (!confirm(ev.target.dataset.confirm)) return;
      let body;
      if (step === "draw" && $("beacon-text")) body = { beacon_text: $("beacon-text").value };
      if (step === "void") body = {};
      ev.target.disabled = true;
      const res = await D.call("POST", `${base}/${step}`, body);
      ev.target.disabled = false;
      if (!res.ok) { D.say(error, res.message); return; }
      location.reload();
    });

    // While the result is played out, watch for publication.
    if (page.dataset.state === "drawn") {
      const timer = setInterval(async () => {
        const res = await D.call("GET", base);
        if (res.ok && res.data.state !== "drawn") { clearInterval(timer); location.reload(); }
      }, 2000);
    }

    const send = $("import-send");
    if (send) {
      const i18n = $("import-i18n").dataset;
      const progress = $("import-progress");
      const status = $("import-status");
      const table = $("import-errors");
      send.addEventListener("click", () => {
        const file = $("import-file").files[0];
        if (!file) return;
        table.hidden = true;
        table.tBodies[0].replaceChildren();
        progress.hidden = false;
        progress.value = 0;
        status.textContent = i18n.uploading;
        send.disabled = true;
        const xhr = new XMLHttpRequest();
        xhr.open("POST", `${base}/applications/import`);
        xhr.setRequestHeader("Content-Type", "text/csv");
        xhr.setRequestHeader("Accept", "application/json");
        xhr.setRequestHeader("X-CSRF-Token", window.gongkai.csrfToken());
        xhr.upload.onprogress = (e) => {
          if (e.lengthComputable) progress.value = Math.round((e.loaded / e.total) * 100);
        };
        xhr.upload.onload = () => { progress.value = 100; status.textContent = i18n.checking; };
        xhr.onloadend = () => {
          send.disabled = false;
          let data = null;
          try { data = JSON.parse(xhr.responseText); } catch (_) { data = null; }
          if (xhr.status === 200 && data) {
            status.textContent = i18n.done.replace("{n}", data.imported);
            $("staff-applications").textContent = Number($("staff-applications").textContent) + data.imported;
            return;
          }
          const message = (data && data.error && data.error.message) || xhr.statusText || String(xhr.status);
          status.textContent = `${i18n.failed} ${message}`;
          const rows = (data && data.error && data.error.rows) || [];
          // Each problem in the page's language by its stable code; the server's own words
          // follow where they carry a detail (a line number, a kindergarten code).
          const codes = $("import-codes").dataset;
          const columns = $("import-columns").dataset;
          const camel = (s) => String(s || "").replace(/_([a-z])/g, (_, c) => c.toUpperCase());
          const detailed = new Set(["child_id_repeated", "choices", "group_choices"]);
          for (const r of rows) {
            const known = codes[camel(r.code)];
            const text = !known ? r.message : detailed.has(r.code) ? `${known} — ${r.message}` : known;
            const tr = D.el("tr");
            tr.dataset.code = r.code || "";
            tr.append(D.el("td", null, r.line), D.el("td", null, columns[camel(r.field)] || r.field), D.el("td", null, text));
            table.tBodies[0].append(tr);
          }
          table.hidden = rows.length === 0;
        };
        xhr.send(file);
      });
    }

    // ---- review (资格审核) -------------------------------------------------------
    const review = $("review");
    if (review) {
      const i18n = $("review-i18n").dataset;
      const table = $("review-table");
      const error = $("review-error");
      const done = $("review-done");
      let filter = "";
      const load = async () => {
        const query = filter ? `?status=${encodeURIComponent(filter)}` : "";
        const res = await D.call("GET", `${base}/applications${query}`);
        if (!res.ok) { D.say(error, res.message); return; }
        for (const c of review.querySelectorAll(".review-count")) c.textContent = res.data.counts[c.dataset.status] || 0;
        const rows = res.data.applications.map((a) => {
          const tr = D.el("tr");
          tr.dataset.app = a.app;
          tr.dataset.status = a.status;
          const pick = D.el("input");
          pick.type = "checkbox";
          pick.className = "review-pick";
          pick.value = a.app;
          pick.setAttribute("aria-label", a.app);
          const cell = D.el("td");
          cell.append(pick);
          const choices = (a.choices || []).map((c) => `${c.kg}:${c.class}`).join("; ");
          const status = D.el("td", `review-status review-${a.status}`, i18n[a.status] || a.status);
          tr.append(cell, D.el("td", null, a.app), D.el("td", null, a.masked_name), D.el("td", null, a.group ? "✔" : ""),
            D.el("td", null, choices), status, D.el("td", "wrap", a.reason || ""), D.el("td", null, (a.conflicts_with || []).join(" ")));
          return tr;
        });
        table.tBodies[0].replaceChildren(...rows);
        $("review-empty").hidden = rows.length > 0;
        const more = $("review-more");
        more.hidden = res.data.total <= rows.length;
        more.textContent = i18n.more.replace("{n}", rows.length);
      };
      $("review-filter").addEventListener("click", (ev) => {
        const b = ev.target.closest(".review-filter");
        if (!b) return;
        filter = b.dataset.status;
        for (const other of review.querySelectorAll(".review-filter")) other.setAttribute("aria-pressed", String(other === b));
        load();
      });
      const picked = () => Array.from(table.querySelectorAll(".review-pick:checked"), (c) => c.value);
      const send = async (body) => {
        D.say(error, ""); D.say(done, "");
        const res = await D.call("POST", `${base}/review`, body);
        if (!res.ok) { D.say(error, res.message); return; }
        D.say(done, i18n.done.replace("{v}", res.data.verified).replace("{r}", res.data.rejected));
        load();
      };
      $("review-verify").addEventListener("click", () => {
        const apps = picked();
        if (apps.length) send({ verified: apps });
      });
      $("review-reject").addEventListener("click", () => {
        const apps = picked();
        if (!apps.length) return;
        const reason = $("review-reason").value.trim();
        if (!reason) { D.say(error, i18n.needReason); return; }
        send({ rejected: apps.map((app) => ({ app, reason })) });
      });
      $("review-verify-all").addEventListener("click", (ev) => {
        if (confirm(ev.target.dataset.confirm)) send({ verify_all: true });
      });
      load();
    }

    $("staff-witnesses").addEventListener("click", async (ev) => {
      const t = ev.target;
      const row = t.closest("tr");
      const error = $("witness-error");
      if (!row) return;
      const index = row.dataset.index;
      if (t.classList.contains("witness-link")) {
        D.say(error, "");
        const res = await D.call("POST", `${base}/witnesses/${index}/link`);
        if (!res.ok) { D.say(error, res.message); return; }
        const box = row.querySelector(".witness-link-box");
        box.querySelector(".witness-link-url").value = location.origin + res.data.url;
        box.hidden = false;
      } else if (t.classList.contains("witness-link-copy")) {
        const input = row.querySelector(".witness-link-url");
        input.select();
        if (navigator.clipboard) navigator.clipboard.writeText(input.value).catch(() => {});
      } else if (t.classList.contains("witness-commit") || t.classList.contains("witness-reveal")) {
        D.say(error, "");
        const commit = t.classList.contains("witness-commit");
        const value = row.querySelector(commit ? ".witness-commitment-input" : ".witness-secret-input").value.trim();
        const res = await D.call("POST", `${base}/witnesses/${index}/${commit ? "commitment" : "reveal"}`,
          commit ? { commitment: value } : { secret: value });
        if (!res.ok) { D.say(error, res.message); return; }
        location.reload();
      }
    });
  }

  // ---- notary ----------------------------------------------------------------------
  const cs = $("countersign-form");
  if (cs) {
    const drawId = $("notary").dataset.drawId;
    // The countersigned file from `gongkai draw countersign`: take the notary's signature.
    $("cs-file").addEventListener("change", async (ev) => {
      const file = ev.target.files[0];
      if (!file) return;
      try {
        const data = JSON.parse(await file.text());
        const sig = (data.signatures || []).filter((s) => s.role === "notary").pop();
        if (!sig) throw new Error("no notary signature in this file");
        $("cs-public-key").value = sig.public_key;
        $("cs-signature").value = sig.signature;
      } catch (e) { D.say($("cs-error"), String(e.message || e)); }
    });
    cs.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      D.say($("cs-error"), "");
      const res = await D.call("POST", `/api/v1/draws/${encodeURIComponent(drawId)}/countersignature`, {
        public_key: $("cs-public-key").value.trim(), signature: $("cs-signature").value.trim(),
      });
      if (!res.ok) { D.say($("cs-error"), res.message); return; }
      $("cs-done").hidden = false;
      $("notary-state").textContent = res.data.state;
    });
  }
})();

// The parent's pages: apply (one child, or twins/multiples with shared choices), the
// receipt shown once (QR code, print, download as a file made in the browser), and the
// correction/withdrawal form. Children's data travels only in POST/PATCH bodies.
"use strict";

(() => {
  const D = window.gongkaiDraw;
  const $ = (id) => document.getElementById(id);
  const MAX_CHOICES = 8;
  const article = $("draw-apply") || $("draw-correct");
  if (!article) return;
  const drawId = article.dataset.drawId;
  const errors = document.getElementById("form-i18n").dataset;

  // ---- the ordered choices editor ------------------------------------------------
  const choices = $("choices");
  function addChoice(kg, cls) {
    if (!choices || choices.children.length >= MAX_CHOICES) return;
    const row = $("choice-row").content.firstElementChild.cloneNode(true);
    const select = row.querySelector(".choice-kg");
    const taken = new Set(readChoices().map((c) => c.kg));
    if (kg) select.value = kg;
    else {
      const free = Array.from(select.options).find((o) => !taken.has(o.value));
      if (free) select.value = free.value;
    }
    if (cls) row.querySelector(".choice-class").value = cls;
    choices.append(row);
    renumber();
  }
  function renumber() {
    const rows = Array.from(choices.children);
    rows.forEach((row, i) => {
      row.querySelector(".choice-up").disabled = i === 0;
      row.querySelector(".choice-down").disabled = i === rows.length - 1;
      row.querySelector(".choice-remove").disabled = rows.length === 1;
      row.dataset.rank = i + 1;
    });
    $("choice-add").disabled = rows.length >= MAX_CHOICES;
  }
  function readChoices() {
    if (!choices) return [];
    return Array.from(choices.children).map((row) => ({
      kg: row.querySelector(".choice-kg").value,
      class: Number(row.querySelector(".choice-class").value),
    }));
  }
  if (choices) {
    $("choice-add").addEventListener("click", () => addChoice());
    choices.addEventListener("click", (ev) => {
      const row = ev.target.closest("li");
      if (!row) return;
      if (ev.target.classList.contains("choice-up") && row.previousElementSibling) row.previousElementSibling.before(row);
      else if (ev.target.classList.contains("choice-down") && row.nextElementSibling) row.nextElementSibling.after(row);
      else if (ev.target.classList.contains("choice-remove") && choices.children.length > 1) row.remove();
      else return;
      renumber();
    });
    addChoice();
  }

  // ---- apply -----------------------------------------------------------------------
  const form = $("apply-form");
  if (form) {
    const children = $("children");
    const multiples = $("apply-multiples");
    const addChild = () => {
      if (children.children.length >= 8) return;
      children.append($("child-row").content.firstElementChild.cloneNode(true));
      syncChildren();
    };
    const syncChildren = () => {
      const many = multiples.checked;
      const rows = Array.from(children.children);
      rows.forEach((row) => { row.querySelector(".child-remove").hidden = !many || rows.length <= 2; });
      $("child-add").hidden = !many || rows.length >= 8;
      $("apply-multiples-help").hidden = !many;
    };
    multiples.addEventListener("change", () => {
      if (multiples.checked) { while (children.children.length < 2) addChild(); }
      else { while (children.children.length > 1) children.lastElementChild.remove(); }
      syncChildren();
    });
    $("child-add").addEventListener("click", addChild);
    children.addEventListener("click", (ev) => {
      if (ev.target.classList.contains("child-remove") && children.children.length > 2) {
        ev.target.closest("li").remove();
        syncChildren();
      }
    });
    addChild();

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const error = $("apply-error");
      D.say(error, "");
      const kids = Array.from(children.children).map((row) => ({
        child_id: row.querySelector(".child-id").value.trim(),
        child_name: row.querySelector(".child-name").value.trim(),
      }));
      const bad = kids.find((k) => !D.validChildId(k.child_id));
      if (bad) { D.say(error, errors.errChildId); return; }
      if (kids.some((k) => !k.child_name)) { D.say(error, errors.errChildName); return; }
      const body = kids.length > 1 ? { children: kids, choices: readChoices() }
                                   : { child_id: kids[0].child_id, child_name: kids[0].child_name, choices: readChoices() };
      $("apply-submit").disabled = true;
      const res = await D.call("POST", `/api/v1/draws/${encodeURIComponent(drawId)}/applications`, body);
      $("apply-submit").disabled = false;
      if (!res.ok) {
        const why = res.status === 409 ? errors.errConflict
          : res.status === 429 ? errors.errRate.replace("{n}", res.retryAfter || 60) : D.formError(res, errors);
        D.say(error, why);
        return;
      }
      const names = kids.map((k) => k.child_name);
      showReceipts(res.data.receipts || [res.data], names);
      // The form (with the children's data) is cleared and gone: the receipt is shown once.
      form.reset();
      form.remove();
    });
  }

  function showReceipts(receipts, names) {
    const i18n = $("receipt-i18n").dataset;
    const list = $("receipt-list");
    receipts.forEach((r, i) => {
      const card = D.el("section", "receipt card");
      card.dataset.app = r.app;
      card.append(D.el("h3", null, i18n.title));
      const dl = D.el("dl", "facts");
      const row = (label, value, cls) => { dl.append(D.el("dt", null, label)); const dd = D.el("dd"); dd.append(D.el("code", cls, value)); dl.append(dd); };
      if (names[i]) row(i18n.child, names[i], "receipt-child");
      row(i18n.draw, r.draw_id, "receipt-draw");
      row(i18n.app, r.app, "receipt-app");
      row(i18n.salt, r.salt, "receipt-salt");
      card.append(dl);
      const qr = qrSvg(JSON.stringify({ draw_id: r.draw_id, app: r.app, salt: r.salt }));
      if (qr) {
        qr.setAttribute("aria-label", i18n.qr);
        qr.classList.add("receipt-qr");
        card.append(qr);
      }
      list.append(card);
    });
    $("receipts").hidden = false;
    $("receipt-print").addEventListener("click", () => window.print());
    $("receipt-download").addEventListener("click", () => {
      const file = receipts.length === 1
        ? { draw_id: receipts[0].draw_id, app: receipts[0].app, salt: receipts[0].salt }
        : { draw_id: receipts[0].draw_id, receipts: receipts.map((r) => ({ draw_id: r.draw_id, app: r.app, salt: r.salt })) };
      const name = `${receipts[0].draw_id}-receipt-${receipts.map((r) => r.app).join("-")}.json`;
      D.download(name, JSON.stringify(file, null, 2) + "\n");
    });
    $("receipts").scrollIntoView();
  }

  // A QR code drawn as SVG elements (no markup strings).
  function qrSvg(text) {
    if (typeof window.qrcode !== "function") return null;
    const code = window.qrcode(0, "M");
    code.addData(text);
    code.make();
    const n = code.getModuleCount();
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", `-4 -4 ${n + 8} ${n + 8}`);
    svg.setAttribute("role", "img");
    const bg = document.createElementNS(NS, "rect");
    for (const [k, v] of [["x", -4], ["y", -4], ["width", n + 8], ["height", n + 8], ["fill", "#fff"]]) bg.setAttribute(k, v);
    svg.append(bg);
    let d = "";
    for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) if (code.isDark(r, c)) d += `M${c} ${r}h1v1h-1z`;
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", d);
    path.setAttribute("fill", "#000");
    svg.append(path);
    svg.dataset.modules = n;
    return svg;
  }

  // ---- correct / withdraw ------------------------------------------------------------
  const correct = $("correct-form");
  if (correct) {
    const i18n = $("correct-i18n").dataset;
    const error = $("correct-error");
    const done = $("correct-done");
    $("correct-receipt-file").addEventListener("change", async (ev) => {
      const file = ev.target.files[0];
      if (!file) return;
      try {
        const data = JSON.parse(await file.text());
        const r = data.receipts ? data.receipts[0] : data;
        if (r.app) $("correct-app").value = r.app;
        if (r.salt) $("correct-salt").value = r.salt;
      } catch (e) { D.say(error, String(e.message || e)); }
    });
    const who = () => ({
      salt: $("correct-salt").value.trim(),
      child_id: $("correct-child-id").value.trim(),
      child_name: $("correct-child-name").value.trim(),
    });
    const path = () => `/api/v1/draws/${encodeURIComponent(drawId)}/applications/${encodeURIComponent($("correct-app").value.trim().toUpperCase())}`;
    // The review status (资格审核): pending, verified, or rejected with the reason.
    $("status-submit").addEventListener("click", async () => {
      D.say(error, ""); D.say(done, "");
      $("status-result").hidden = true;
      const res = await D.call("POST", `${path()}/status`, who());
      if (!res.ok) {
        D.say(error, res.status === 429 ? i18n.retry.replace("{n}", res.retryAfter || 60) : D.formError(res, errors));
        return;
      }
      const text = $("status-text");
      text.dataset.status = res.data.status;
      text.textContent = res.data.status === "rejected" ? `${i18n.rejected} ${res.data.reason || ""}`
        : res.data.status === "verified" ? i18n.verified : i18n.pending;
      $("status-result").hidden = false;
    });
    if (!$("correct-submit")) { correct.addEventListener("submit", (ev) => ev.preventDefault()); return; }
    correct.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      D.say(error, ""); D.say(done, "");
      const res = await D.call("PATCH", path(), Object.assign(who(), { choices: readChoices() }));
      if (!res.ok) { D.say(error, res.status === 409 ? errors.errClosed : D.formError(res, errors)); return; }
      D.say(done, i18n.saved);
    });
    $("withdraw-submit").addEventListener("click", async (ev) => {
      D.say(error, ""); D.say(done, "");
      if (!confirm(ev.target.dataset.confirm)) return;
      const res = await D.call("POST", `${path()}/withdraw`, who());
      if (!res.ok) { D.say(error, res.status === 409 ? errors.errClosed : D.formError(res, errors)); return; }
      D.say(done, i18n.withdrawn);
      correct.querySelectorAll("input, select, button").forEach((e) => { e.disabled = true; });
    });
  }
})();

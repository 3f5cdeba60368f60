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
    actions.addEventListener("click", async (ev) => {
      const action = ev.target.dataset && ev.target.dataset.action;
      if (!action) return;
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
        location.reload();
      } catch (e) {
        err.textContent = e.message;
        err.hidden = false;
      }
    });
  }
})();

// Staff accounts page (administrators): create, change roles, reset a password, all
// through /api/v1/users with the session's CSRF token.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const checkedRoles = (form) =>
    [...form.querySelectorAll('input[name="role"]:checked')].map((box) => box.value);
  const show = (ok, text) => {
    $("users-status").hidden = !ok;
    $("users-error").hidden = ok;
    $(ok ? "users-status" : "users-error").textContent = text;
  };
  const path = (username) => `/api/v1/users/${encodeURIComponent(username)}`;
  const said = $("users-status").dataset;

  const create = $("user-form");
  create.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {
      username: $("new-username").value.trim(),
      password: $("new-password").value,
      roles: checkedRoles(create),
    };
    try {
      await window.gongkai.api("POST", "/api/v1/users", body);
      // The list is rendered by the server: reload it, remembering what was done.
      sessionStorage.setItem("gongkai-users-status", `${said.created}: ${body.username}`);
      location.reload();
    } catch (e) {
      show(false, e.message);
    }
  });

  for (const form of document.querySelectorAll("form.user-roles")) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await window.gongkai.api("PUT", `${path(form.dataset.username)}/roles`, { roles: checkedRoles(form) });
        show(true, `${said.saved}: ${form.dataset.username}`);
      } catch (e) {
        show(false, e.message);
      }
    });
  }

  for (const form of document.querySelectorAll("form.user-password")) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const input = form.querySelector('input[name="password"]');
      try {
        await window.gongkai.api("PUT", `${path(form.dataset.username)}/password`, { password: input.value });
        input.value = "";
        show(true, `${said.reset}: ${form.dataset.username}`);
      } catch (e) {
        show(false, e.message);
      }
    });
  }

  const remembered = sessionStorage.getItem("gongkai-users-status");
  if (remembered) {
    sessionStorage.removeItem("gongkai-users-status");
    show(true, remembered);
  }
})();

// The staff dashboard's "my password" form: PUT /api/v1/me/password, which ends every
// session of the account, so the page then offers to log in again.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("password-form");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const error = $("password-error");
    error.hidden = true;
    try {
      await window.gongkai.api("PUT", "/api/v1/me/password", {
        current_password: $("my-current-password").value,
        new_password: $("my-new-password").value,
      });
      form.hidden = true;
      $("password-done").hidden = false;
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    }
  });
})();

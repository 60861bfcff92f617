// jobq dashboard: keeps the parts of a page marked data-live fresh by
// fetching the same page again, and adds select-all to checkbox lists.
// Pages read without it; this only saves reloading.
(function () {
  "use strict";
  var INTERVAL_MS = 1000;
  var busy = false;

  function refresh() {
    if (busy || document.hidden || !document.querySelector("[data-live]")) {
      return;
    }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("status " + response.status); }
        if (response.redirected && new URL(response.url).pathname === "/login") {
          // The session ended: the login page, then back here.
          window.location.reload();
        }
        return response.text();
      })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (old) {
          var replacement = fresh.getElementById(old.id);
          if (replacement) { old.replaceWith(document.importNode(replacement, true)); }
        });
        document.body.removeAttribute("data-stale");
      })
      .catch(function () { document.body.setAttribute("data-stale", "true"); })
      .then(function () { busy = false; });
  }

  function selectAll() {
    document.querySelectorAll("input[data-select-all]").forEach(function (box) {
      box.hidden = false;
      box.addEventListener("change", function () {
        var form = box.form;
        form.querySelectorAll("input[type=checkbox][name=id]").forEach(function (item) {
          item.checked = box.checked;
        });
      });
    });
  }

  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    selectAll();
    confirmations();
    window.setInterval(refresh, INTERVAL_MS);
  });
})();

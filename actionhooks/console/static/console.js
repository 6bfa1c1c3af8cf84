// actionhooks console: small enhancements over plain forms (every page works without this file).
// - forms with data-confirm ask before posting (the server asks again when this script is absent);
// - "Add value" adds a Key/Value pair in place instead of a round trip;
// - the delivery and authentication selects show only the chosen type's fields;
// - the action search filters the action checkboxes;
// - "Copy …" buttons copy a snippet to the clipboard (without JavaScript the text box is selectable).
(function () {
  "use strict";

  function onReady(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  function confirmForms(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      if (form.dataset.confirmBound) return;
      form.dataset.confirmBound = "1";
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); return; }
        var flag = document.createElement("input");
        flag.type = "hidden"; flag.name = "confirmed"; flag.value = "yes";
        form.appendChild(flag);
      });
    });
  }

  function addPairs() {
    document.querySelectorAll("[data-add-pair]").forEach(function (button) {
      var list = document.querySelector(button.dataset.addPair);
      if (!list) return;
      button.type = "button";  // Enter in a field now saves, as users expect
      button.addEventListener("click", function () {
        var pairs = list.querySelectorAll("[data-pair]");
        var template = pairs[pairs.length - 1];
        var copy = template.cloneNode(true);
        var n = pairs.length + 1;
        copy.classList.remove("invalid");
        copy.querySelectorAll(".field-error").forEach(function (e) { e.remove(); });
        copy.querySelectorAll(".field").forEach(function (field) {
          var input = field.querySelector("input"), label = field.querySelector("label");
          input.id = (input.name === "value_key" ? "key-" : "value-") + n;
          input.value = "";
          input.removeAttribute("aria-invalid");
          input.removeAttribute("aria-describedby");
          label.htmlFor = input.id;
        });
        list.appendChild(copy);
        copy.querySelector("input").focus();
      });
    });
  }

  function switches() {
    document.querySelectorAll("select[data-switch]").forEach(function (select) {
      var attr = "data-" + select.dataset.switch;
      var scope = select.closest("section, fieldset") || document;
      function apply() {
        scope.querySelectorAll("[" + attr + "]").forEach(function (block) {
          block.hidden = block.getAttribute(attr) !== select.value;
        });
      }
      select.addEventListener("change", apply);
      apply();
    });
  }

  function actionSearch() {
    document.querySelectorAll("input[data-filter]").forEach(function (input) {
      var root = document.querySelector(input.dataset.filter);
      if (!root) return;
      input.addEventListener("input", function () {
        var q = input.value.trim().toLowerCase();
        root.querySelectorAll("[data-code]").forEach(function (chip) {
          chip.hidden = q !== "" && chip.dataset.code.indexOf(q) === -1;
        });
        root.querySelectorAll("fieldset").forEach(function (group) {
          group.hidden = group.querySelectorAll("[data-code]:not([hidden])").length === 0;
        });
      });
    });
  }

  function copyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      var box = document.querySelector(button.dataset.copy);
      if (!box) return;
      var label = button.textContent;
      button.hidden = false;
      button.addEventListener("click", function () {
        box.select();
        var done = function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = label; }, 1500); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(box.value).then(done, function () { document.execCommand("copy"); done(); });
        } else {
          document.execCommand("copy");
          done();
        }
      });
    });
  }

  onReady(function () {
    confirmForms(document);
    addPairs();
    switches();
    actionSearch();
    copyButtons();
    document.body.addEventListener("htmx:afterSwap", function (event) { confirmForms(event.target); });
  });
})();

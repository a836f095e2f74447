// apikey-dashboard: progressive enhancement only. Every action works without this file:
// it adds a copy button for an issued key and a filter of the rows on the current page.
// Loaded from the dashboard itself (the CSP allows no other script and no inline script).
"use strict";
(function () {
  function copyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (btn) {
      var target = document.getElementById(btn.getAttribute("data-copy"));
      if (!target) { return; }
      btn.hidden = false;
      btn.addEventListener("click", function () {
        var text = target.textContent;
        var done = function () { btn.textContent = "Copied"; setTimeout(function () { btn.textContent = "Copy"; }, 2000); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { selectText(target); });
        } else {
          selectText(target);
          btn.textContent = "Selected: press Ctrl+C";
        }
      });
    });
  }
  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }
  function liveFilters() {
    document.querySelectorAll("input[data-filter]").forEach(function (input) {
      var table = document.getElementById(input.getAttribute("data-filter"));
      if (!table || !table.tBodies.length) { return; }
      input.hidden = false;
      input.addEventListener("input", function () {
        var q = input.value.toLowerCase();
        Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
          row.hidden = q !== "" && row.textContent.toLowerCase().indexOf(q) < 0;
        });
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { copyButtons(); liveFilters(); });
})();

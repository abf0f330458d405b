// Mohr verification page: a little help on top of a page that works without script. Switches the language
// of the page in place (both languages are in the page, so a result survives the switch), lets a file be
// dropped onto the form, and moves the focus to the verdict when a result arrives.
(function () {
  "use strict";
  function views() { return Array.prototype.slice.call(document.querySelectorAll(".view")); }
  function show(lang) {
    var shown = null;
    views().forEach(function (v) {
      var on = v.getAttribute("data-lang") === lang;
      v.hidden = !on;
      if (on) { shown = v; }
    });
    if (!shown) { return; }
    document.documentElement.lang = lang;
    document.documentElement.dir = shown.getAttribute("dir");
    document.title = shown.getAttribute("data-title");
    return shown;
  }
  document.addEventListener("click", function (e) {
    var a = e.target.closest("a[data-switch]");
    if (!a) { return; }
    e.preventDefault();
    var v = show(a.getAttribute("data-switch"));
    if (v) {
      var back = v.querySelector("a[data-switch]");
      if (back) { back.focus(); }
    }
  });
  views().forEach(function (v) {
    var drop = v.querySelector("[data-drop]");
    var input = drop && drop.querySelector("input[type=file]");
    var hint = drop && drop.querySelector("[data-hint]");
    if (!input) { return; }
    input.addEventListener("change", function () {
      if (input.files.length && hint) { hint.textContent = input.files[0].name; }
    });
    ["dragenter", "dragover"].forEach(function (t) {
      drop.addEventListener(t, function (e) { e.preventDefault(); drop.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (t) {
      drop.addEventListener(t, function () { drop.classList.remove("over"); });
    });
    drop.addEventListener("drop", function (e) {
      e.preventDefault();
      if (e.dataTransfer && e.dataTransfer.files.length) {
        input.files = e.dataTransfer.files;
        input.dispatchEvent(new Event("change"));
      }
    });
  });
  var verdict = document.querySelector(".view:not([hidden]) .verdict h2");
  if (verdict) { verdict.focus(); }
})();

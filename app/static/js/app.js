// convscope page helpers: drag-and-drop upload. Everything works without this file, too.
(function () {
  "use strict";
  function init() {
    var zone = document.getElementById("drop-zone");
    var input = document.getElementById("file-input");
    var name = document.getElementById("file-name");
    if (!zone || !input) return;
    var show = function () { if (name) name.textContent = input.files && input.files[0] ? input.files[0].name : ""; };
    input.addEventListener("change", show);
    ["dragenter", "dragover"].forEach(function (ev) {
      zone.addEventListener(ev, function (e) { e.preventDefault(); zone.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (ev) {
      zone.addEventListener(ev, function (e) { e.preventDefault(); zone.classList.remove("over"); });
    });
    zone.addEventListener("drop", function (e) {
      if (!e.dataTransfer || !e.dataTransfer.files.length) return;
      input.files = e.dataTransfer.files;
      show();
      var form = document.getElementById("upload-form");
      if (form) form.requestSubmit();
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();

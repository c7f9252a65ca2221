// convscope examples pages: the layer picker of the overview jumps to the chosen layer.
// Everything works without this file (links on the model page lead to every layer).
(function () {
  "use strict";
  function init() {
    document.querySelectorAll("select.js-layer-jump").forEach(function (sel) {
      sel.addEventListener("change", function () {
        var form = sel.form;
        var params = new URLSearchParams(new FormData(form));
        params.delete("layer");
        window.location.assign(sel.dataset.base + encodeURIComponent(sel.value) + "/examples?" + params.toString());
      });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();

// convscope: "copy link" buttons (the page's URL is its permalink) and the timeline's label sync.
(function () {
  "use strict";
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    var ta = document.createElement("textarea");
    ta.value = text; ta.setAttribute("readonly", ""); ta.className = "offscreen";
    document.body.appendChild(ta); ta.select();
    try { document.execCommand("copy"); } finally { document.body.removeChild(ta); }
    return Promise.resolve();
  }
  document.addEventListener("click", function (e) {
    var btn = e.target.closest ? e.target.closest("[data-copy-link]") : null;
    if (!btn) return;
    var href = btn.getAttribute("data-href");
    var url = href ? new URL(href, location.href).href : location.href;
    btn.setAttribute("data-copied-url", url);
    var label = btn.textContent;
    copyText(url).then(function () {
      btn.textContent = btn.getAttribute("data-done") || "Copied";
      setTimeout(function () { btn.textContent = label; }, 1500);
    }, function () { window.prompt("URL", url); });
  });
  document.addEventListener("htmx:afterSwap", function () {
    var h = document.getElementById("tl-when-h"), out = document.getElementById("tl-when"),
        r = document.getElementById("tl-step");
    if (!h || !out) return;
    var when = (h.firstChild && h.firstChild.textContent || "").trim();
    out.textContent = when;
    if (r) r.setAttribute("aria-valuetext", when);
  });
})();

// convscope lecture mode: keyboard, autoplay and full screen. It computes nothing: keys follow the
// links and press the buttons that the server rendered (each one an htmx request or a plain link).
//   ← / → (PageUp / PageDown)  previous / next section      1…8, 0  section, list of sections
//   ↓ or n / ↑ or p            next / previous step           Home / End  first / last step
//   Space                      play / pause the steps         f  full screen     l  language
//   ?                          the list of keys (Esc closes it)
(function () {
  "use strict";
  var PERIOD_MS = 1400;
  var timer = null;

  function $(sel) { return document.querySelector(sel); }
  function follow(a) { if (a && a.href) { stop(); window.location.assign(a.href); return true; } return false; }
  function usable(el) { return el && !el.disabled; }
  function press(key) {
    var el = $('[data-key="' + key + '"]');
    if (usable(el)) { el.click(); return true; }
    return false;
  }
  function busy() { return !!$(".htmx-request"); }

  function syncPlay() {
    var b = $('[data-action="play"]');
    if (!b) { if (timer) stop(); return; }
    b.setAttribute("aria-pressed", timer ? "true" : "false");
    b.textContent = timer ? b.getAttribute("data-label-pause") : b.getAttribute("data-label-play");
  }
  function stop() {
    if (timer) { window.clearInterval(timer); timer = null; }
    syncPlay();
  }
  function tick() {
    if (busy()) return;
    if (!press("next-step")) stop();
  }
  function togglePlay() {
    if (timer) { stop(); return; }
    if (!$('[data-key="next-step"]')) return;
    if (!usable($('[data-key="next-step"]'))) press("first-step");  // at the end: start again
    timer = window.setInterval(tick, PERIOD_MS);
    syncPlay();
  }

  function toggleFullscreen() {
    if (document.fullscreenElement) {
      if (document.exitFullscreen) document.exitFullscreen().catch(function () {});
    } else if (document.documentElement.requestFullscreen) {
      document.documentElement.requestFullscreen().catch(function () {});
    }
  }
  function syncFullscreen() {
    var b = $('[data-action="fullscreen"]');
    if (b) b.setAttribute("aria-pressed", document.fullscreenElement ? "true" : "false");
  }
  function toggleKeys() {
    var d = document.getElementById("keys-dialog");
    if (!d || typeof d.showModal !== "function") return false;
    if (d.open) d.close(); else d.showModal();
    return true;
  }

  function reveal(root) {
    (root || document).querySelectorAll("[data-js][hidden]").forEach(function (el) { el.hidden = false; });
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    var t = e.target;
    var tag = t && t.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (t && t.isContentEditable)) {
      if (e.key === "Escape") t.blur();
      return;  // typing a value: keys are the field's own
    }
    var k = e.key;
    var steps = !!$('[data-key="next-step"]');
    var done = true;
    if (k === "ArrowRight" || k === "PageDown") follow($('a[rel="next"]'));
    else if (k === "ArrowLeft" || k === "PageUp") follow($('a[rel="prev"]'));
    else if (/^[0-9]$/.test(k)) done = follow($('a[data-section="' + k + '"]'));
    else if ((k === "ArrowDown" || k === "n") && steps) press("next-step");
    else if ((k === "ArrowUp" || k === "p") && steps) press("prev-step");
    else if (k === "Home" && steps) press("first-step");
    else if (k === "End" && steps) press("last-step");
    else if (k === " " && steps) togglePlay();
    else if (k === "f") toggleFullscreen();
    else if (k === "l") done = follow($('a[data-key="lang"]'));
    else if (k === "?") done = toggleKeys();
    else done = false;
    if (done) e.preventDefault();
  });

  document.addEventListener("click", function (e) {
    var el = e.target.closest ? e.target.closest("[data-action]") : null;
    if (!el) return;
    var action = el.getAttribute("data-action");
    if (action === "fullscreen") toggleFullscreen();
    else if (action === "play") togglePlay();
    else if (action === "keys") { if (toggleKeys()) e.preventDefault(); return; }
    else return;
    e.preventDefault();
  });

  document.addEventListener("fullscreenchange", syncFullscreen);
  document.addEventListener("htmx:afterSettle", function (e) { reveal(e.target); syncPlay(); });
  document.addEventListener("htmx:oobAfterSwap", function () { reveal(); syncFullscreen(); });

  function init() { reveal(); syncPlay(); syncFullscreen(); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();

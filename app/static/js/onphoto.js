// convscope: a channel's map on the photo. Hovering (or focusing, or moving with the arrow keys) a position of the
// channel's map or of its table of values draws that unit's receptive field on the photo; the opacity slider
// redraws the overlay. Without this file the page still shows the overlay and its form.
(function () {
  "use strict";
  function pairs(s) {
    return (s || "").trim().split(/\s+/).map(function (p) { return p.split(",").map(Number); });
  }
  function scopeOf(el) { return el && el.closest ? el.closest(".rf-scope") : null; }
  function show(scope, y, x) {
    var rows = pairs(scope.getAttribute("data-rows")), cols = pairs(scope.getAttribute("data-cols"));
    if (!rows[y] || !cols[x]) return;
    scope.setAttribute("data-y", y); scope.setAttribute("data-x", x);
    var box = scope.querySelector(".rf-box");
    if (box) {
      box.setAttribute("x", cols[x][0]); box.setAttribute("y", rows[y][0]);
      box.setAttribute("width", cols[x][1] - cols[x][0]); box.setAttribute("height", rows[y][1] - rows[y][0]);
      box.setAttribute("visibility", "visible");
    }
    var at = scope.querySelector(".rf-at");
    if (at) { at.setAttribute("x", x); at.setAttribute("y", y); at.setAttribute("visibility", "visible"); }
    var text = scope.querySelector(".rf-text"), tpl = scope.getAttribute("data-box-text");
    if (text && tpl) {
      var v = {y: y, x: x, x0: cols[x][0], x1: cols[x][1] - 1, y0: rows[y][0], y1: rows[y][1] - 1};
      text.textContent = tpl.replace(/\{(\w+)\}/g, function (_m, k) { return k in v ? v[k] : _m; });
    }
  }
  function fromPointer(e) {
    var map = e.target.closest ? e.target.closest(".rf-map") : null, scope = scopeOf(map);
    if (!map || !scope) return;
    var r = map.getBoundingClientRect();
    var h = +scope.getAttribute("data-h"), w = +scope.getAttribute("data-w");
    var y = Math.min(h - 1, Math.max(0, Math.floor((e.clientY - r.top) / r.height * h)));
    var x = Math.min(w - 1, Math.max(0, Math.floor((e.clientX - r.left) / r.width * w)));
    show(scope, y, x);
  }
  document.addEventListener("mousemove", fromPointer);
  document.addEventListener("focusin", function (e) {
    var scope = scopeOf(e.target);
    if (!scope) return;
    var cell = e.target.closest("[data-y][data-x]");
    if (cell && cell !== scope) { show(scope, +cell.getAttribute("data-y"), +cell.getAttribute("data-x")); return; }
    if (e.target.classList && e.target.classList.contains("rf-map")) {
      show(scope, +(scope.getAttribute("data-y") || Math.floor(+scope.getAttribute("data-h") / 2)),
           +(scope.getAttribute("data-x") || Math.floor(+scope.getAttribute("data-w") / 2)));
    }
  });
  document.addEventListener("mouseover", function (e) {
    var cell = e.target.closest ? e.target.closest("table.values [data-y][data-x]") : null, scope = scopeOf(cell);
    if (scope) show(scope, +cell.getAttribute("data-y"), +cell.getAttribute("data-x"));
  });
  document.addEventListener("keydown", function (e) {
    var map = e.target.classList && e.target.classList.contains("rf-map") ? e.target : null, scope = scopeOf(map);
    if (!scope) return;
    var d = {ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1]}[e.key];
    if (!d) return;
    e.preventDefault();
    var h = +scope.getAttribute("data-h"), w = +scope.getAttribute("data-w");
    var y = +(scope.getAttribute("data-y") || Math.floor(h / 2)), x = +(scope.getAttribute("data-x") || Math.floor(w / 2));
    show(scope, Math.min(h - 1, Math.max(0, y + d[0])), Math.min(w - 1, Math.max(0, x + d[1])));
  });
  var timer = null;
  document.addEventListener("input", function (e) {
    if (!e.target.classList || !e.target.classList.contains("onphoto-opacity")) return;
    var fig = e.target.closest(".onphoto"), img = fig ? fig.querySelector(".onphoto-img") : null;
    if (!img) return;
    clearTimeout(timer);
    timer = setTimeout(function () { img.src = img.getAttribute("data-base") + "&opacity=" + e.target.value; }, 120);
  });
})();

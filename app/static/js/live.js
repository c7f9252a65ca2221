// convscope live camera: capture 320x240 JPEG frames, send them over a WebSocket, show the results.
// At most two frames are in flight; the server keeps only the newest pending one (latest frame wins).
(function () {
  "use strict";
  var W = 320, H = 240, MAX_IN_FLIGHT = 2, MIN_GAP_MS = 25;
  function $(id) { return document.getElementById(id); }

  function init() {
    var form = $("live-form");
    if (!form) return;
    var video = $("live-video"), canvas = $("live-canvas"), ctx = canvas.getContext("2d");
    var startBtn = $("live-start"), pauseBtn = $("live-pause");
    var i18n = $("live-i18n");
    // Spanish (and any non-English) pages: numbers as the page's locale writes them, CIFAR-10 class names
    // translated; an English page keeps its own formats (no data-locale).
    var locale = i18n.getAttribute("data-locale");
    var classes = JSON.parse(i18n.getAttribute("data-classes") || "{}");
    var pctFmt = locale ? new Intl.NumberFormat(locale, { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 }) : null;
    var oneFmt = locale ? new Intl.NumberFormat(locale, { minimumFractionDigits: 1, maximumFractionDigits: 1 }) : null;
    var numFmt = locale ? new Intl.NumberFormat(locale, { maximumSignificantDigits: 4 }) : null;
    function label(s) { return classes[s] || s; }
    function pct(p) { return pctFmt ? pctFmt.format(p) : (100 * p).toFixed(1) + " %"; }
    function num(v) { return numFmt ? numFmt.format(v).replace("-", "\u2212") : String(v); }
    function text(name, fallback) { return i18n.getAttribute(name) || fallback; }
    var ws = null, stream = null, paused = false, sent = 0, capturing = false, lastSend = 0;
    var sentAt = {}, latencies = [], shownTimes = [], shown = 0;

    function status(t) { $("live-status").textContent = t; }
    function config() {
      var o = { type: "config", model: $("live-model").value, layer: $("live-layer").value };
      var s = $("live-snapshot"); o.snapshot = s ? s.value : "";
      return o;
    }
    function socketUrl() {
      var c = config(), q = new URLSearchParams({ model: c.model, layer: c.layer });
      if (c.snapshot) q.set("snapshot", c.snapshot);
      return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + form.getAttribute("data-ws") + "?" + q;
    }
    function inFlight() { return Object.keys(sentAt).length; }

    function pump() {
      if (!ws || ws.readyState !== 1 || paused || capturing || !stream) return;
      if (inFlight() >= MAX_IN_FLIGHT) return;
      var now = performance.now();
      if (now - lastSend < MIN_GAP_MS) { setTimeout(pump, MIN_GAP_MS - (now - lastSend)); return; }
      if (video.readyState < 2) { setTimeout(pump, 50); return; }
      capturing = true;
      ctx.drawImage(video, 0, 0, W, H);
      canvas.toBlob(function (blob) {
        capturing = false;
        if (!blob || !ws || ws.readyState !== 1 || paused) return;
        sent += 1; sentAt[sent] = performance.now(); lastSend = sentAt[sent];
        ws.send(blob);
        pump();
      }, "image/jpeg", 0.8);
    }

    function median(a) { var s = a.slice().sort(function (x, y) { return x - y; }); return s.length ? s[Math.floor(s.length / 2)] : 0; }

    function showResult(m) {
      var now = performance.now();
      if (sentAt[m.seq] !== undefined) { latencies.push(now - sentAt[m.seq]); if (latencies.length > 30) latencies.shift(); }
      Object.keys(sentAt).forEach(function (k) { if (+k <= m.seq) delete sentAt[k]; });
      shown += 1; shownTimes.push(now);
      while (shownTimes.length && now - shownTimes[0] > 2000) shownTimes.shift();
      var span = shownTimes.length > 1 ? (shownTimes[shownTimes.length - 1] - shownTimes[0]) / 1000 : 0;
      $("live-fps").textContent = span > 0 ? (oneFmt ? oneFmt.format((shownTimes.length - 1) / span) : ((shownTimes.length - 1) / span).toFixed(1)) : "–";
      $("live-latency").textContent = Math.round(median(latencies)) + " ms";
      $("live-count").textContent = String(shown);
      $("live-dropped").textContent = String(m.dropped || 0);
      var ol = $("live-predictions"); ol.textContent = "";
      m.predictions.forEach(function (p) {
        var li = document.createElement("li"), lab = document.createElement("span"), met = document.createElement("meter"),
            pc = document.createElement("span");
        lab.className = "label"; lab.textContent = label(p.label);
        met.min = 0; met.max = 1; met.value = p.probability; met.textContent = pct(p.probability);
        met.setAttribute("aria-label", label(p.label));
        pc.className = "pct"; pc.textContent = pct(p.probability);
        li.appendChild(lab); li.appendChild(met); li.appendChild(pc); ol.appendChild(li);
      });
      var img = $("live-grid");
      img.src = m.grid;
      var top = m.top_channels.slice(0, 3).map(function (c) { return c.channel + " (" + num(c.max) + ")"; }).join(locale ? "; " : ", ");
      img.alt = text("data-grid-text", "{layer}: {shown} / {n} channels; strongest {top}").replace("{layer}", m.layer)
        .replace("{shown}", m.channels_shown).replace("{n}", m.shape[0]).replace("{top}", top);
      $("live-layer-name").textContent = m.layer;
      var tb = $("live-top-body"); tb.textContent = "";
      m.top_channels.forEach(function (c) {
        var tr = document.createElement("tr");
        [String(c.channel), num(c.max), num(c.mean)].forEach(function (v) { var td = document.createElement("td"); td.textContent = v; tr.appendChild(td); });
        tb.appendChild(tr);
      });
      document.body.setAttribute("data-live-frames", String(shown));
      document.body.setAttribute("data-live-top", m.predictions.length ? m.predictions[0].label : "");  // the API's name
    }

    function showFrozen(m) {
      var p = $("live-frozen"); p.textContent = ""; p.hidden = false;
      var a = document.createElement("a");
      a.href = m.url; a.id = "live-frozen-link";
      a.textContent = (i18n.getAttribute("data-open") || "Open") + " (" + m.id + ")";
      p.appendChild(document.createTextNode((i18n.getAttribute("data-frozen") || "Frozen") + ": "));
      p.appendChild(a);
    }

    function connect() {
      if (ws) { try { ws.close(); } catch (e) { /* closing anyway */ } }
      sentAt = {};
      ws = new WebSocket(socketUrl());
      ws.onopen = function () { status("● " + config().model + " · " + config().layer); pump(); };
      ws.onmessage = function (ev) {
        var m; try { m = JSON.parse(ev.data); } catch (e) { return; }
        // Once paused, results still in flight are dropped: the picture stays as it was at the click.
        if (m.type === "result") { if (!paused) { showResult(m); pump(); } }
        else if (m.type === "frozen") showFrozen(m);
        else if (m.type === "config") { status("● " + m.model + " · " + m.layer); }
        else if (m.type === "error") { status(m.detail); if (m.seq) { delete sentAt[m.seq]; pump(); } }
      };
      ws.onclose = function () { if (stream) status(text("data-closed", "WebSocket closed")); };
    }

    startBtn.addEventListener("click", function () {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) { status(text("data-no-camera", "getUserMedia is not available")); return; }
      navigator.mediaDevices.getUserMedia({ video: { width: W, height: H }, audio: false }).then(function (s) {
        stream = s; video.srcObject = s;
        return video.play();
      }).then(function () {
        startBtn.disabled = true; pauseBtn.disabled = false;
        connect();
      }).catch(function (e) { status(String(e)); });
    });

    pauseBtn.addEventListener("click", function () {
      paused = !paused;
      pauseBtn.textContent = pauseBtn.getAttribute(paused ? "data-resume" : "data-pause");
      pauseBtn.setAttribute("aria-pressed", paused ? "true" : "false");
      if (paused) {
        video.pause();
        if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "freeze" }));
      } else {
        $("live-frozen").hidden = true;
        video.play(); pump();
      }
    });

    // Changing the layer or checkpoint re-configures the open socket; another model reloads the page
    // (its layer list differs). Without a camera the form still works as a normal GET form.
    ["live-layer", "live-snapshot"].forEach(function (id) {
      var el = $(id);
      if (el) el.addEventListener("change", function () {
        if (ws && ws.readyState === 1) { ws.send(JSON.stringify(config())); history.replaceState(null, "", "?" + new URLSearchParams(new FormData(form))); }
      });
    });
    $("live-model").addEventListener("change", function () {
      var l = $("live-layer"); if (l) l.disabled = true;  // the new model picks its own default layer
      var s = $("live-snapshot"); if (s) s.disabled = true;
      form.requestSubmit();
    });
    form.addEventListener("submit", function (e) {
      if (ws && ws.readyState === 1 && e.submitter && e.submitter.id === "live-apply") {
        e.preventDefault(); ws.send(JSON.stringify(config()));
        history.replaceState(null, "", "?" + new URLSearchParams(new FormData(form)));
      }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();

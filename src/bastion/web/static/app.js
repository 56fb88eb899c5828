/* Bastion dashboard: charts (uPlot), live updates (Server-Sent Events + htmx), uploads with progress.
   No inline script anywhere (the CSP forbids it): pages carry data in <script type="application/json">
   blocks and data-* attributes, read here. */
(function () {
  "use strict";
  var PALETTE = ["#1d4ed8", "#c2410c", "#047857", "#7c3aed", "#b91c1c", "#0e7490", "#a16207"];

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }

  document.addEventListener("htmx:configRequest", function (e) {
    e.detail.headers["X-CSRF-Token"] = csrf();
  });

  // -- charts ---------------------------------------------------------------------------------
  function readSeries(el) {
    // data-series holds the chart's JSON (an attribute: htmx swaps keep it, and no script is inline)
    try { return JSON.parse(el.dataset.series || "null"); } catch (err) { return null; }
  }

  function draw(el, data) {
    if (el._plot) { el._plot.destroy(); el._plot = null; }
    el.textContent = "";
    var names = Object.keys((data && data.series) || {});
    if (!data || !data.x || data.x.length === 0 || names.length === 0) {
      var p = document.createElement("p");
      p.className = "muted chart-empty";
      p.textContent = "No data yet.";
      el.appendChild(p);
      return;
    }
    var bars = el.dataset.bars === "1";
    var series = [{ label: el.dataset.xlabel || "x" }];
    var columns = [data.x];
    names.forEach(function (name, i) {
      var s = { label: name, stroke: PALETTE[i % PALETTE.length], width: 2, points: { show: data.x.length < 40, size: 6 } };
      if (bars && typeof uPlot.paths.bars === "function") {
        s.paths = uPlot.paths.bars({ size: [0.5, 60] });
        s.fill = PALETTE[i % PALETTE.length] + "99";
      }
      series.push(s);
      columns.push(data.series[name].map(function (v) { return v === null || v === undefined ? null : Number(v); }));
    });
    var width = Math.max(260, el.clientWidth || el.parentElement.clientWidth || 400);
    var opts = {
      width: width,
      height: 220,
      series: series,
      scales: { x: { time: false, range: function (u, min, max) { return bars || min === max ? [min - 0.5, max + 0.5] : [min, max]; } } },
      axes: [
        { stroke: "#334155", grid: { stroke: "#e2e8f0" }, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000], values: function (u, ticks) { return ticks.map(function (t) { return Number.isInteger(t) ? String(t) : ""; }); } },
        { stroke: "#334155", grid: { stroke: "#e2e8f0" }, size: 56 },
      ],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
    el._plot = new uPlot(opts, columns, el);
    el._data = data;
  }

  function renderCharts(root) {
    if (typeof uPlot === "undefined") return;
    (root || document).querySelectorAll("[data-chart]").forEach(function (el) {
      draw(el, readSeries(el));
    });
  }

  // -- a job's live page ----------------------------------------------------------------------
  function jobLive(root) {
    var url = root.dataset.jobEvents;
    var chart = document.getElementById("job-chart");
    var es = new EventSource(url);
    var logTimer = null;

    function setProgress(p, stage) {
      var bar = document.getElementById("job-progress");
      var text = document.getElementById("job-progress-text");
      if (bar && typeof p === "number") bar.value = p;
      if (text && typeof p === "number") text.textContent = Math.round(p * 100) + "%";
      var st = document.getElementById("job-stage");
      if (st && stage) st.textContent = stage;
    }
    function setState(state) {
      var badge = document.getElementById("job-state");
      if (badge && state) { badge.textContent = state; badge.className = "badge state-" + state; }
    }
    function refresh(what, target) {
      if (window.htmx) htmx.ajax("GET", root.dataset.jobPanel.replace(/\/panel$/, "/" + what), { target: target, swap: "innerHTML" });
    }
    es.addEventListener("status", function (e) {
      var d = JSON.parse(e.data);
      setProgress(d.progress, d.stage);
      setState(d.status);
      if (d.status === "pending" || d.status === "running") {
        logTimer = setInterval(function () { refresh("logs", "#job-logs"); }, 3000);
      }
    });
    es.addEventListener("progress", function (e) { var d = JSON.parse(e.data); setProgress(d.progress, d.stage); });
    es.addEventListener("state", function (e) { var d = JSON.parse(e.data); setState(d.state); if (typeof d.progress === "number") setProgress(d.progress); });
    es.addEventListener("metrics", function (e) {
      var d = JSON.parse(e.data);
      var data = chart._data || readSeries(chart) || { x: [], series: {} };
      if (data.x.indexOf(d.epoch) !== -1) return;
      data.x.push(d.epoch);
      Object.keys(d).forEach(function (k) {
        if (k === "epoch" || k === "job_id" || k === "lr" || k === "steps" || typeof d[k] !== "number") return;
        if (!data.series[k]) data.series[k] = data.x.slice(0, -1).map(function () { return null; });
      });
      Object.keys(data.series).forEach(function (k) { data.series[k].push(typeof d[k] === "number" ? d[k] : null); });
      var empty = document.getElementById("job-chart-empty");
      if (empty) empty.hidden = true;
      draw(chart, data);
    });
    es.addEventListener("end", function () {
      es.close();
      if (logTimer) clearInterval(logTimer);
      refresh("panel", "#job-panel");
      refresh("logs", "#job-logs");
      root.dataset.finished = "1";
    });
    es.onerror = function () { if (es.readyState === EventSource.CLOSED && logTimer) clearInterval(logTimer); };
  }

  // -- a fine-tuning job's live page: the API's event stream, the loss curve grows per epoch ----
  function ftLive(root) {
    var chart = document.getElementById("ft-chart");
    var list = document.getElementById("ft-events");
    var es = new EventSource(root.dataset.ftEvents);
    es.addEventListener("event", function (e) {
      var ev = JSON.parse(e.data);
      var d = ev.data || {};
      if (list) {
        var li = document.createElement("li");
        li.textContent = ev.message;  // text, never HTML: error messages are user-influenced
        list.appendChild(li);
        while (list.children.length > 20) list.removeChild(list.firstChild);
      }
      var bar = document.getElementById("ft-progress");
      if (bar && typeof d.progress === "number") {
        bar.value = d.progress;
        document.getElementById("ft-progress-text").textContent = Math.round(d.progress * 100) + "%";
      }
      if (ev.type !== "metrics" || typeof d.epoch !== "number") return;
      var data = chart._data || readSeries(chart) || { x: [], series: {} };
      if (data.x.indexOf(d.epoch) !== -1) return;
      data.x.push(d.epoch);
      ["train_loss", "eval_loss"].forEach(function (k) {
        if (typeof d[k] !== "number") return;
        if (!data.series[k]) data.series[k] = data.x.slice(0, -1).map(function () { return null; });
      });
      Object.keys(data.series).forEach(function (k) { data.series[k].push(typeof d[k] === "number" ? d[k] : null); });
      draw(chart, data);
    });
    es.addEventListener("end", function () {
      es.close();
      htmx.ajax("GET", root.dataset.ftPanel, { target: "#ft-panel", swap: "innerHTML" }).then(function () {
        root.dataset.finished = "1";
      });
    });
  }

  // -- a federation's live page ---------------------------------------------------------------
  function fedLive(root) {
    var es = new EventSource(root.dataset.fedEvents);
    var first = true;
    es.addEventListener("changed", function () {
      if (first) { first = false; return; }
      htmx.ajax("GET", root.dataset.fedPanel, { target: "#fed-panel", swap: "innerHTML" });
    });
    es.addEventListener("end", function () {
      es.close();
      htmx.ajax("GET", root.dataset.fedPanel, { target: "#fed-panel", swap: "innerHTML" });
    });
  }

  // -- uploads --------------------------------------------------------------------------------
  function upload(form) {
    var input = document.getElementById("upload-file");
    var zone = document.getElementById("dropzone");
    var chosen = document.getElementById("upload-chosen");
    var bar = document.getElementById("upload-progress");
    var status = document.getElementById("upload-status");
    function show() { chosen.textContent = input.files.length ? input.files[0].name + " (" + Math.round(input.files[0].size / 1024) + " KiB)" : ""; }
    input.addEventListener("change", show);
    ["dragenter", "dragover"].forEach(function (t) { zone.addEventListener(t, function (e) { e.preventDefault(); zone.classList.add("over"); }); });
    ["dragleave", "drop"].forEach(function (t) { zone.addEventListener(t, function (e) { e.preventDefault(); zone.classList.remove("over"); }); });
    zone.addEventListener("drop", function (e) {
      if (e.dataTransfer && e.dataTransfer.files.length) { input.files = e.dataTransfer.files; show(); }
    });
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      if (!input.files.length) { status.textContent = "Choose a file first."; return; }
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("X-CSRF-Token", csrf());
      xhr.setRequestHeader("Accept", "application/json");
      bar.hidden = false; bar.value = 0;
      status.textContent = "Uploading…";
      xhr.upload.addEventListener("progress", function (ev) {
        if (ev.lengthComputable) { bar.value = Math.round((ev.loaded / ev.total) * 100); }
        if (ev.loaded === ev.total) status.textContent = "De-identifying…";
      });
      xhr.addEventListener("load", function () {
        if (xhr.status === 201) {
          bar.value = 100;
          window.location.assign(JSON.parse(xhr.responseText).location);
        } else {
          var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
          var err = doc.querySelector(".error");
          status.textContent = "Upload refused: " + (err ? err.textContent : "HTTP " + xhr.status);
          status.className = "error";
        }
      });
      xhr.addEventListener("error", function () { status.textContent = "Upload failed (network)."; status.className = "error"; });
      xhr.send(new FormData(form));
    });
  }

  function confirms(root) {
    root.querySelectorAll("[data-confirm]").forEach(function (btn) {
      btn.addEventListener("click", function (e) { if (!window.confirm(btn.dataset.confirm)) e.preventDefault(); });
    });
  }

  // -- single sign-on: the provider's round trip ends with #sso_code=... (a fragment never reaches a
  // server or a Referer); post it once and wipe it from the address bar and history
  function ssoFinish(form) {
    var m = /(?:^#|&)sso_code=([A-Za-z0-9_\-]+)/.exec(window.location.hash);
    history.replaceState(null, "", window.location.pathname + window.location.search);
    if (!m) {
      var st = document.getElementById("sso-status");
      st.textContent = "The sign-in did not complete. Go back and try again.";
      st.className = "error";
      return;
    }
    form.elements.code.value = m[1];
    form.submit();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var sso = document.getElementById("sso-finish");
    if (sso) ssoFinish(sso);
    renderCharts(document);
    confirms(document);
    var job = document.getElementById("job-live");
    if (job) jobLive(job);
    var ft = document.getElementById("ft-live");
    if (ft) ftLive(ft);
    var fed = document.getElementById("fed-live");
    if (fed) fedLive(fed);
    var form = document.getElementById("upload-form");
    if (form) upload(form);
    var main = document.getElementById("main");
    var resize = null;
    window.addEventListener("resize", function () { clearTimeout(resize); resize = setTimeout(function () { renderCharts(main); }, 200); });
  });
  document.addEventListener("htmx:afterSwap", function (e) { renderCharts(e.target); confirms(e.target); });
})();

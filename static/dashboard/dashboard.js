/* Staff dashboard: charts from the JSON endpoints, live batch preview, small form helpers.
 * Every number is also in the HTML; this only adds pictures and convenience. */
(function () {
  "use strict";

  var COLORS = {
    notices: "#125ea8",
    codes: "#f2a900",
    confirmed: "#1c8a4e",
    failed: "#c0392b",
    capacity: "#6b7a8c",
    scheduled: "#b9a6e6",
    grid: "#e6ebf1",
  };
  var nf = new Intl.NumberFormat("en-KE");

  function fmt(n) {
    return n === null || n === undefined ? "–" : nf.format(n);
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      return r.json().then(function (body) {
        return { ok: r.ok, status: r.status, body: body };
      });
    });
  }

  var cache = {};
  function data(url) {
    if (!cache[url]) {
      cache[url] = getJSON(url).then(function (res) {
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.body;
      });
    }
    return cache[url];
  }

  function baseOptions() {
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: false, // draw at once: screenshots and tests see the final picture
      interaction: { mode: "index", intersect: false },
      plugins: {
        legend: { position: "bottom", labels: { boxWidth: 12, usePointStyle: true } },
        tooltip: {
          callbacks: {
            label: function (ctx) {
              return ctx.dataset.label + ": " + fmt(ctx.parsed.y);
            },
          },
        },
      },
      scales: {
        x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 12 } },
        y: { beginAtZero: true, grid: { color: COLORS.grid }, ticks: { callback: fmt } },
      },
    };
  }

  function shortDay(iso) {
    var d = new Date(iso + "T00:00:00Z");
    return d.toLocaleDateString("en-GB", { day: "numeric", month: "short", timeZone: "UTC" });
  }

  function drawDaily(canvas, d) {
    var labels = d.daily.days.map(shortDay);
    return new Chart(canvas, {
      type: "bar",
      data: {
        labels: labels,
        datasets: [
          { label: "Scheduled", data: d.daily.scheduled, backgroundColor: COLORS.scheduled, borderRadius: 2 },
          { label: "Notices sent", data: d.daily.notices_sent, backgroundColor: COLORS.notices, borderRadius: 2 },
          { label: "Codes issued", data: d.daily.codes_issued, backgroundColor: COLORS.codes, borderRadius: 2 },
          { label: "Confirmations", data: d.daily.confirmed, backgroundColor: COLORS.confirmed, borderRadius: 2 },
          {
            type: "line",
            label: "Daily capacity",
            data: labels.map(function () {
              return d.daily.capacity;
            }),
            borderColor: COLORS.capacity,
            borderDash: [6, 4],
            borderWidth: 1.5,
            pointRadius: 0,
            fill: false,
          },
        ],
      },
      options: baseOptions(),
    });
  }

  function drawProgress(canvas, d) {
    var target = d.funnel[0].value;
    // History only: the series also carries the days ahead that already have meters scheduled.
    var upto = d.daily.days.filter(function (day) {
      return day <= d.daily.today;
    }).length;
    var days = d.daily.days.slice(0, upto);
    var cumulative = [];
    var total = 0;
    d.daily.codes_issued.slice(0, upto).forEach(function (n) {
      total += n;
      cumulative.push(total);
    });
    // The axis ends at the deadline, so where the campaign stands against it reads at a glance; a
    // projection past the deadline is named in the legend instead of stretching the axis.
    var last = days.length ? new Date(days[days.length - 1] + "T00:00:00Z") : new Date();
    var end = new Date(d.campaign.deadline + "T00:00:00Z");
    var rate = d.projection.rate_per_day;
    var projectedLabel = "At the 7-day rate";
    if (d.projection.projected_date && d.projection.projected_date > d.campaign.deadline)
      projectedLabel += " (done " + shortDay(d.projection.projected_date) + " " + d.projection.projected_date.slice(0, 4) + ", after the deadline)";
    else if (!d.projection.projected_date && d.projection.remaining > 0) projectedLabel += " (not moving)";
    var projectedLine = cumulative.map(function (v, i) {
      return i === cumulative.length - 1 ? v : null;
    });
    var cursor = new Date(last.getTime());
    var value = total;
    while (cursor < end) {
      cursor = new Date(cursor.getTime() + 86400000);
      days.push(cursor.toISOString().slice(0, 10));
      value = Math.min(target, value + rate);
      projectedLine.push(Math.round(value));
    }
    var deadlineIndex = days.indexOf(d.campaign.deadline);
    return new Chart(canvas, {
      type: "line",
      data: {
        labels: days.map(shortDay),
        datasets: [
          {
            label: "Updated (codes issued)",
            data: cumulative,
            borderColor: COLORS.codes,
            backgroundColor: "rgba(242,169,0,.15)",
            fill: true,
            pointRadius: 0,
            borderWidth: 2,
          },
          {
            label: projectedLabel,
            data: projectedLine,
            borderColor: COLORS.notices,
            borderDash: [5, 4],
            pointRadius: 0,
            borderWidth: 1.5,
          },
          {
            label: "Target",
            data: days.map(function () {
              return target;
            }),
            borderColor: COLORS.capacity,
            borderDash: [2, 3],
            pointRadius: days.map(function (_, i) {
              return i === deadlineIndex ? 5 : 0;
            }),
            pointBackgroundColor: COLORS.failed,
            borderWidth: 1,
          },
        ],
      },
      options: baseOptions(),
    });
  }

  function drawVends(canvas, d) {
    return new Chart(canvas, {
      type: "line",
      data: {
        labels: d.minutes,
        datasets: [
          {
            label: "Vends",
            data: d.vends,
            borderColor: COLORS.notices,
            backgroundColor: "rgba(18,94,168,.12)",
            fill: true,
            pointRadius: 0,
            borderWidth: 2,
            tension: 0.25,
          },
          {
            label: "With update codes",
            data: d.with_codes,
            borderColor: COLORS.codes,
            pointRadius: 0,
            borderWidth: 2,
            tension: 0.25,
          },
        ],
      },
      options: baseOptions(),
    });
  }

  function drawRegions(canvas, d) {
    // Lagging regions first (the server's order): the share of each target updated, on a 0-100 axis.
    var rows = d.regions;
    var options = baseOptions();
    options.indexAxis = "y";
    options.interaction = { mode: "nearest", axis: "y", intersect: false };
    options.scales = {
      x: { stacked: true, min: 0, max: 100, grid: { color: COLORS.grid }, ticks: { callback: function (v) { return v + " %"; } } },
      y: { stacked: true, grid: { display: false } },
    };
    options.plugins.tooltip.callbacks.label = function (ctx) {
      var r = rows[ctx.dataIndex];
      if (ctx.datasetIndex === 0)
        return "Updated " + fmt(r.done) + " of " + fmt(r.target) + " (" + r.share + " %), " + fmt(r.rate_per_day) +
          "/day; needs " + fmt(r.needed_per_day) + "/day";
      return "Still to update: " + fmt(r.target - r.done);
    };
    return new Chart(canvas, {
      type: "bar",
      data: {
        labels: rows.map(function (r) { return r.region; }),
        datasets: [
          {
            label: "Updated",
            data: rows.map(function (r) { return r.share; }),
            backgroundColor: rows.map(function (r) { return r.on_track ? COLORS.confirmed : COLORS.codes; }),
            borderRadius: 2,
          },
          {
            label: "Still to update",
            data: rows.map(function (r) { return Math.max(0, 100 - r.share); }),
            backgroundColor: COLORS.grid,
            borderRadius: 2,
          },
        ],
      },
      options: options,
    });
  }

  function drawDelivery(canvas, d) {
    // Bucket times arrive in Africa/Nairobi (ISO with +03:00): the label is their wall-clock part.
    var labels = d.buckets.map(function (iso) {
      var day = iso.slice(8, 10).replace(/^0/, "") + " " + shortDay(iso.slice(0, 10)).split(" ")[1];
      return d.unit === "day" ? day : (d.unit === "hour" ? day + " " : "") + iso.slice(11, 16);
    });
    function running(values) {
      var total = 0;
      return values.map(function (n) {
        total += n;
        return total;
      });
    }
    var options = baseOptions();
    options.scales.y.suggestedMax = d.enrolled;
    return new Chart(canvas, {
      type: "line",
      data: {
        labels: labels,
        datasets: [
          {
            label: "Delivered",
            data: running(d.delivered),
            borderColor: COLORS.confirmed,
            backgroundColor: "rgba(28,138,78,.12)",
            fill: true,
            pointRadius: labels.length > 1 ? 0 : 4,
            borderWidth: 2,
            stepped: true,
          },
          {
            label: "Failed",
            data: running(d.failed),
            borderColor: COLORS.failed,
            pointRadius: 0,
            borderWidth: 1.5,
            stepped: true,
          },
          {
            label: "Meters in the batch",
            data: labels.map(function () {
              return d.enrolled;
            }),
            borderColor: COLORS.capacity,
            borderDash: [2, 3],
            pointRadius: 0,
            borderWidth: 1,
          },
        ],
      },
      options: options,
    });
  }

  var DRAW = { daily: drawDaily, progress: drawProgress, vends: drawVends, regions: drawRegions, delivery: drawDelivery };

  function initCharts() {
    if (typeof Chart === "undefined") return;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.color = "#5d6b7a";
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var draw = DRAW[canvas.dataset.chart];
      if (!draw) return;
      data(canvas.dataset.url)
        .then(function (d) {
          draw(canvas, d);
          canvas.dataset.ready = "1";
        })
        .catch(function (err) {
          canvas.dataset.ready = "error";
          var note = document.createElement("p");
          note.className = "muted small";
          note.textContent = "Chart unavailable (" + err.message + "); the figures on this page are current.";
          canvas.parentNode.appendChild(note);
        });
    });
  }

  /* --- schedule form: live preview --------------------------------------------------------- */

  function previewQuery(form) {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {
      if (key !== "csrfmiddlewaretoken" && key !== "action") params.append(key, value);
    });
    return params.toString();
  }

  function renderPreview(box, res) {
    var b = res.body;
    if (!res.ok || !b.valid) {
      var errors = (b && b.errors) || {};
      // Name a field as its label does ("Date"), never by its key ("date").
      var lines = Object.keys(errors).map(function (field) {
        var label = document.querySelector('label[for="id_' + field + '"]');
        var name = label ? label.textContent.replace(/[:*]\s*$/, "").trim() : "";
        return (field === "__all__" || !name ? "" : name + ": ") + errors[field].join(" ");
      });
      box.innerHTML = "";
      var p = document.createElement("p");
      p.className = "warn-box";
      p.textContent = lines.length ? lines.join(" ") : "Complete the form to see the preview.";
      box.appendChild(p);
      return;
    }
    var capacityShare = b.capacity ? Math.min(100, (100 * b.day_load) / b.capacity) : 0;
    var addingShare = b.capacity ? Math.min(100 - capacityShare, (100 * b.matched) / b.capacity) : 0;
    var status;
    if (b.matched === 0) status = '<p class="error-box">No meters match this selection.</p>';
    else if (b.over_capacity)
      status =
        '<p class="error-box">Over the daily capacity by ' +
        fmt(b.load_after - b.capacity) +
        ": tick the override to schedule anyway.</p>";
    else status = '<p class="ok-box">Within the daily capacity (' + fmt(b.capacity - b.load_after) + " to spare).</p>";
    box.innerHTML =
      "<dl>" +
      '<dt>Meters matched</dt><dd data-field="matched">' + fmt(b.matched) + "</dd>" +
      "<dt>Already scheduled on " + shortDay(b.day) + " " + b.day.slice(0, 4) + '</dt><dd data-field="day_load">' + fmt(b.day_load) + "</dd>" +
      '<dt>Load after this batch</dt><dd data-field="load_after">' + fmt(b.load_after) + "</dd>" +
      '<dt>Daily capacity</dt><dd data-field="capacity">' + fmt(b.capacity) + "</dd>" +
      "</dl>" +
      '<div class="meter' + (b.over_capacity ? " over" : "") + '"><span class="used" style="width:' + capacityShare +
      '%"></span><span class="adding" style="width:' + addingShare + '%"></span></div>' +
      status +
      (b.after_deadline ? '<p class="warn-box">This date is after the campaign\'s deadline.</p>' : "");
    box.dataset.matched = String(b.matched);
  }

  function initPreview() {
    var form = document.getElementById("schedule-form");
    var box = document.getElementById("preview-body");
    if (!form || !box) return;
    var timer = null;
    var seq = 0;
    function update() {
      var mine = ++seq;
      box.classList.add("loading");
      getJSON(form.dataset.previewUrl + "&" + previewQuery(form))
        .then(function (res) {
          if (mine !== seq) return; // a newer request is on its way
          renderPreview(box, res);
        })
        .catch(function () {
          box.textContent = "Preview unavailable; press Preview to check on the server.";
        })
        .finally(function () {
          box.classList.remove("loading");
        });
    }
    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(update, 300);
    }
    form.addEventListener("input", schedule);
    form.addEventListener("change", schedule);
    update();
  }

  /* --- small helpers ----------------------------------------------------------------------- */

  function initForms() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () {
        select.form.submit();
      });
    });
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    initForms();
    initCharts();
    initPreview();
  });
})();

/* The operator dashboard's charts (templates/admin/dashboard.html). Data: #dashboard-charts.
   Precision and coverage arrive in percent, NDCG as a 0..1 score (config/dashboard.py). */
(function () {
  "use strict";
  const c = window.marketingData("dashboard-charts");
  if (!c || !window.Chart) return;
  const pct = function (v) { return v === null || v === undefined ? "—" : v.toFixed(1) + "%"; };
  new Chart(document.getElementById("chart-segments"), {type: "bar",
    data: {labels: c.segments.labels, datasets: [{label: "customers", data: c.segments.sizes,
      backgroundColor: c.segments.kinds.map(function (k) { return k === "rule" ? "#f0a202" : "#417690"; })}]},
    options: {indexAxis: "y", plugins: {legend: {display: false}}}});
  if (c.elbow) {
    new Chart(document.getElementById("chart-elbow"), {type: "line",
      data: {labels: c.elbow.ks, datasets: [
        {label: "inertia (lower: tighter segments)", data: c.elbow.inertia, yAxisID: "y",
         pointRadius: c.elbow.ks.map(function (k) { return k === c.elbow.chosen_k ? 8 : 3; })},
        {label: "silhouette (higher: better separated)", data: c.elbow.silhouette, yAxisID: "y1", borderDash: [4, 4]}]},
      options: {scales: {x: {title: {display: true, text: "number of segments"}},
        y: {position: "left"}, y1: {position: "right", grid: {drawOnChartArea: false}}}}});
  }
  new Chart(document.getElementById("chart-reco"), {type: "line",
    data: {labels: c.recommender.labels, datasets: [
      {label: "NDCG@10 (score, right)", data: c.recommender.ndcg, yAxisID: "y1"},
      {label: "precision@10", data: c.recommender.precision, yAxisID: "y"},
      {label: "catalogue coverage", data: c.recommender.coverage, yAxisID: "y"}]},
    options: {scales: {
      y: {position: "left", min: 0, ticks: {callback: function (v) { return v + "%"; }}},
      y1: {position: "right", min: 0, grid: {drawOnChartArea: false}}},
      plugins: {tooltip: {callbacks: {label: function (ctx) {
        return ctx.dataset.label + ": " + (ctx.dataset.yAxisID === "y" ? pct(ctx.parsed.y) : ctx.parsed.y.toFixed(3));
      }}}}}});
})();

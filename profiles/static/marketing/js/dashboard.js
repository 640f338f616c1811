/* The operator dashboard's charts (templates/admin/dashboard.html). Data: #dashboard-charts. */
(function () {
  "use strict";
  const c = window.marketingData("dashboard-charts");
  if (!c || !window.Chart) return;
  new Chart(document.getElementById("chart-segments"), {type: "bar",
    data: {labels: c.segments.labels, datasets: [{label: "members", data: c.segments.sizes,
      backgroundColor: c.segments.kinds.map(function (k) { return k === "rule" ? "#f0a202" : "#417690"; })}]},
    options: {indexAxis: "y", plugins: {legend: {display: false}}}});
  if (c.elbow) {
    new Chart(document.getElementById("chart-elbow"), {type: "line",
      data: {labels: c.elbow.ks, datasets: [
        {label: "inertia", data: c.elbow.inertia, yAxisID: "y",
         pointRadius: c.elbow.ks.map(function (k) { return k === c.elbow.chosen_k ? 8 : 3; })},
        {label: "silhouette", data: c.elbow.silhouette, yAxisID: "y1", borderDash: [4, 4]}]},
      options: {scales: {y: {position: "left"}, y1: {position: "right", grid: {drawOnChartArea: false}}}}});
  }
  new Chart(document.getElementById("chart-reco"), {type: "line",
    data: {labels: c.recommender.labels, datasets: [
      {label: "NDCG@10", data: c.recommender.ndcg}, {label: "precision@10", data: c.recommender.precision},
      {label: "coverage", data: c.recommender.coverage}]}});
})();

/* The recommender runs list: offline metrics over runs. Data: #recommender-metrics-chart. */
(function () {
  "use strict";
  const d = window.marketingData("recommender-metrics-chart");
  const el = document.getElementById("metrics-chart");
  if (!d || !window.Chart || !el) return;
  if (!d.labels.length) {
    const p = document.createElement("p"); p.textContent = "No successful run yet.";
    el.parentNode.replaceChildren(p);
    return;
  }
  new Chart(el, {
    type: "line",
    data: {labels: d.labels, datasets: [
      {label: "NDCG@10", data: d.ndcg, tension: 0.1, yAxisID: "y"},
      {label: "precision@10", data: d.precision, tension: 0.1, yAxisID: "y"},
      {label: "recall@10", data: d.recall, tension: 0.1, yAxisID: "y"},
      {label: "coverage@10", data: d.coverage, tension: 0.1, borderDash: [6, 4], yAxisID: "y2"}
    ]},
    options: {scales: {
      y: {beginAtZero: true, title: {display: true, text: "accuracy"}},
      y2: {beginAtZero: true, max: 1, position: "right", grid: {drawOnChartArea: false}, title: {display: true, text: "coverage"}}
    }}
  });
})();

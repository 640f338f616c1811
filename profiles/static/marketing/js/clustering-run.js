/* A clustering run's page: the elbow and silhouette charts. Data: #clustering-chart-data. */
(function () {
  "use strict";
  const d = window.marketingData("clustering-chart-data");
  if (!d || !window.Chart || !d.ks.length) return;
  const mark = function (color) {
    return d.ks.map(function (k) { return k === d.chosen_k ? color : "rgba(120,120,120,0.6)"; });
  };
  const radius = d.ks.map(function (k) { return k === d.chosen_k ? 8 : 3; });
  new Chart(document.getElementById("elbow-chart"), {
    type: "line",
    data: {labels: d.ks, datasets: [{label: "inertia (chosen k = " + d.chosen_k + ", knee = " + d.elbow_k + ")", data: d.inertia,
      pointBackgroundColor: mark("#c62828"), pointRadius: radius, tension: 0.1}]},
    options: {scales: {x: {title: {display: true, text: "k"}}, y: {title: {display: true, text: "inertia"}}}}
  });
  new Chart(document.getElementById("silhouette-chart"), {
    type: "bar",
    data: {labels: d.ks, datasets: [{label: "silhouette", data: d.silhouette, backgroundColor: mark("#c62828")}]},
    options: {scales: {x: {title: {display: true, text: "k"}}, y: {title: {display: true, text: "silhouette"}}}}
  });
})();

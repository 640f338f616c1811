/* The customer page: interests as a horizontal bar chart. Data: #interests-data ({labels, values} in %).
   The same figures are in the table under the chart, for readers without the canvas. */
(function () {
  "use strict";
  const d = window.marketingData && window.marketingData("interests-data");
  const el = document.getElementById("interests-chart");
  if (!d || !window.Chart || !el || !d.labels.length) return;
  el.parentNode.style.height = (40 + 26 * d.labels.length) + "px";
  el.chart = new Chart(el, {
    type: "bar",
    data: {labels: d.labels, datasets: [{label: "share of interest", data: d.values, backgroundColor: "#417690"}]},
    options: {
      indexAxis: "y",
      maintainAspectRatio: false,
      animation: false,
      plugins: {
        legend: {display: false},
        tooltip: {callbacks: {label: function (ctx) { return ctx.parsed.x.toFixed(0) + "%"; }}}
      },
      scales: {x: {beginAtZero: true, ticks: {callback: function (v) { return v + "%"; }}}}
    }
  });
  el.setAttribute("data-drawn", "1");
})();

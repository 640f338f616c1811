/* A launched campaign's report (#campaign-chart-data, from campaigns.selectors.campaign_report_words):
   the funnel sent → delivered → opened → clicked as horizontal bars, and the uplift as ONE error bar:
   a point at the estimate and a whisker from the interval's low to its high end, against a dashed
   line at zero (an interval that crosses the line is not significant). */
(function () {
  "use strict";
  const d = window.marketingData("campaign-chart-data");
  if (!d || !window.Chart) return;
  const fmt = new Intl.NumberFormat(undefined, {maximumFractionDigits: 0});

  const funnel = document.getElementById("funnel-chart");
  if (funnel && d.funnel) {
    const first = d.funnel.values[0] || 0;
    new Chart(funnel, {
      type: "bar",
      data: {labels: d.funnel.labels,
             datasets: [{label: "messages", data: d.funnel.values, backgroundColor: ["#417690", "#5b8fa8", "#79aec8", "#a6cde0"]}]},
      options: {
        indexAxis: "y", maintainAspectRatio: false, animation: false,
        plugins: {legend: {display: false},
                  tooltip: {callbacks: {label: function (ctx) {
                    const share = first ? " (" + (100 * ctx.parsed.x / first).toFixed(1) + "% of sent)" : "";
                    return fmt.format(ctx.parsed.x) + " messages" + share;
                  }}}},
        scales: {x: {beginAtZero: true, ticks: {precision: 0}}}
      }
    });
  }

  const canvas = document.getElementById("uplift-chart");
  const u = d.uplift;
  if (!canvas || !u) return;
  const colour = u.significant ? "#2e7d32" : "#6b6b6b";
  // Draws the whisker (low to high, with end caps) through the point, and the zero line.
  const errorBar = {
    id: "errorBar",
    afterDatasetsDraw: function (chart) {
      const x = chart.scales.x, y = chart.scales.y, ctx = chart.ctx;
      const cy = y.getPixelForValue(0), lo = x.getPixelForValue(u.low), hi = x.getPixelForValue(u.high);
      const zero = x.getPixelForValue(0);
      ctx.save();
      ctx.strokeStyle = "#999"; ctx.setLineDash([4, 4]); ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(zero, y.top); ctx.lineTo(zero, y.bottom); ctx.stroke();
      ctx.setLineDash([]); ctx.strokeStyle = colour; ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(lo, cy); ctx.lineTo(hi, cy);
      ctx.moveTo(lo, cy - 9); ctx.lineTo(lo, cy + 9);
      ctx.moveTo(hi, cy - 9); ctx.lineTo(hi, cy + 9);
      ctx.stroke();
      ctx.restore();
      chart.canvas.dataset.whisker = Math.round(lo) + "," + Math.round(hi);
    }
  };
  const span = Math.max(Math.abs(u.low), Math.abs(u.high), 0.1) * 1.15;
  const pts = function (v) { return (v > 0 ? "+" : v < 0 ? "−" : "") + Math.abs(v).toFixed(1) + " pts"; };
  new Chart(canvas, {
    type: "scatter",
    data: {datasets: [{label: u.label, data: [{x: u.point, y: 0}], pointRadius: 6, pointHoverRadius: 7,
                       backgroundColor: colour, borderColor: colour}]},
    options: {
      maintainAspectRatio: false, animation: false,
      plugins: {legend: {display: false},
                title: {display: true, text: u.label},
                tooltip: {callbacks: {label: function () {
                  return pts(u.point) + " (95% CI " + pts(u.low) + " to " + pts(u.high) + ")";
                }}}},
      scales: {
        x: {min: -span, max: span,
            ticks: {maxTicksLimit: 7, maxRotation: 0, callback: function (v) { return pts(v); }}},
        y: {min: -1, max: 1, display: false}
      }
    },
    plugins: [errorBar]
  });
})();

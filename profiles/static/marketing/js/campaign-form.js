/* A campaign's page: the live audience size (#campaign-form-config: {preview_url}) and the
   report's funnel and uplift charts (#campaign-chart-data). */
(function () {
  "use strict";
  const config = window.marketingData("campaign-form-config") || {};
  const out = document.getElementById("audience-size");
  function ids(name) {
    const sel = document.querySelector('select[name="' + name + '"]');
    if (!sel) return [];
    const all = sel.id.endsWith("_to");
    return Array.from(sel.options).filter(function (o) { return all || o.selected; }).map(function (o) { return parseInt(o.value, 10); });
  }
  function val(name, fallback) { const el = document.querySelector('[name="' + name + '"]'); return el ? el.value : fallback; }
  let timer = null;
  function refresh() {
    if (!out || !config.preview_url) return;
    clearTimeout(timer);
    timer = setTimeout(function () {
      const segments = ids("segments");
      if (!segments.length) { out.textContent = "choose segments to see the audience size"; return; }
      const csrf = document.querySelector("[name=csrfmiddlewaretoken]");
      fetch(config.preview_url, {method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRFToken": csrf ? csrf.value : ""},
        body: JSON.stringify({segments: segments, excluded_segments: ids("excluded_segments"), channel: val("channel", "in_app"),
                              control_percent: parseFloat(val("control_percent", "10")) || 0})})
        .then(function (r) { return r.json(); })
        .then(function (d) {
          out.textContent = d.members + " members, " + d.consenting + " consenting for the channel (" + d.no_consent +
            " without consent), about " + d.treated_expected + " to receive and " + d.control_expected + " held out";
        });
    }, 300);
  }
  document.addEventListener("change", refresh);
  document.addEventListener("click", function (e) { if (e.target.closest(".selector")) refresh(); });
  refresh();
  const d = window.marketingData("campaign-chart-data");
  if (!d || !window.Chart) return;
  new Chart(document.getElementById("funnel-chart"), {
    type: "bar", data: {labels: d.funnel.labels, datasets: [{label: "customers", data: d.funnel.values, backgroundColor: "#447e9b"}]},
    options: {indexAxis: "y", plugins: {title: {display: true, text: "Funnel"}}}
  });
  const ci = d.uplift.ci || [null, null];
  new Chart(document.getElementById("uplift-chart"), {
    type: "bar",
    data: {labels: ["control", "treated", "uplift", "CI low", "CI high"],
           datasets: [{label: "conversion rate / uplift (95% CI)", data: [d.uplift.control, d.uplift.treated, d.uplift.abs, ci[0], ci[1]],
                       backgroundColor: ["#9e9e9e", "#2e7d32", "#c62828", "#ef9a9a", "#ef9a9a"]}]},
    options: {plugins: {title: {display: true, text: "Uplift vs control"}}}
  });
})();

/* A segment's page: size over time (#segment-size-chart) and the live audience preview of a rule
   (#segment-form-config: {preview_url, segment_id}). Text from the server or the operator is put
   into the page with textContent only. */
(function () {
  "use strict";
  const sizeData = window.marketingData("segment-size-chart");
  if (sizeData && window.Chart && document.getElementById("size-chart")) {
    new Chart(document.getElementById("size-chart"), {
      type: "line",
      data: {labels: sizeData.labels, datasets: [{label: "members", data: sizeData.sizes, tension: 0.2, fill: false}]},
      options: {plugins: {legend: {display: false}}, scales: {y: {beginAtZero: true}}}
    });
  }
  const config = window.marketingData("segment-form-config");
  const box = document.getElementById("id_rule");
  if (!config || !config.preview_url || !box || !document.getElementById("rule-preview")) return;
  const sizeEl = document.getElementById("rule-preview-size");
  const descEl = document.getElementById("rule-preview-description");
  const errEl = document.getElementById("rule-preview-errors");
  const csrf = document.querySelector("[name=csrfmiddlewaretoken]").value;
  let timer = null;
  function showErrors(errors) {
    errEl.replaceChildren();
    errors.forEach(function (text) {
      const li = document.createElement("li"); li.textContent = text; errEl.appendChild(li);
    });
  }
  async function preview() {
    showErrors([]);
    let rule;
    try { rule = JSON.parse(box.value); } catch (e) {
      sizeEl.textContent = "–"; descEl.textContent = "";
      showErrors(["Not valid JSON yet: " + e.message]); return;
    }
    const body = {rule: rule};
    if (config.segment_id) body.segment_id = config.segment_id;
    const resp = await fetch(config.preview_url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf}, body: JSON.stringify(body)
    });
    const data = await resp.json();
    if (resp.ok) {
      sizeEl.textContent = data.size.toLocaleString() + " customers";
      descEl.textContent = data.description;
    } else {
      sizeEl.textContent = "–";
      showErrors((data.errors || [{path: "", message: data.detail}]).map(function (e) {
        return (e.path ? e.path + ": " : "") + e.message;
      }));
    }
  }
  box.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(preview, 400); });
  if (box.value.trim()) preview();
})();

/* A segment's page: size over time (#segment-size-chart), and for a rule segment the rule builder
   (rule-builder.js, drawn from #rule-grammar and #rule-choices) kept in step with the rule's JSON
   (the form's #id_rule, shown as the "Advanced (JSON)" view), and the live audience size
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
  const grammar = window.marketingData("rule-grammar");
  let timer = null;
  let asked = 0; // only the answer to the latest question is shown

  function showErrors(errors) {
    errEl.replaceChildren();
    errors.forEach(function (text) {
      const li = document.createElement("li"); li.textContent = text; errEl.appendChild(li);
    });
  }

  // A preview that no longer matches the rule is taken away, never left under it.
  function clearPreview() {
    sizeEl.textContent = "–";
    descEl.textContent = "";
  }

  // --- the builder and the JSON view, each following the other ---------------------------------
  let builder = null;
  const jsonError = document.createElement("ul");
  jsonError.className = "errorlist";
  jsonError.id = "rule-json-error";
  if (grammar && window.RuleBuilder) {
    const holder = document.createElement("div");
    holder.id = "rule-builder";
    holder.className = "rule-builder";
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.id = "rule-json-toggle";
    toggle.className = "button rb-json-toggle";
    const jsonView = document.createElement("div");
    jsonView.id = "rule-json-view";
    jsonView.className = "rb-json-view";
    const field = document.createElement("div");
    field.className = "rb-field";
    box.parentNode.insertBefore(field, box);
    field.appendChild(holder);
    // the audience size right under the rule it counts
    field.appendChild(document.getElementById("rule-preview"));
    field.appendChild(toggle);
    field.appendChild(jsonView);
    jsonView.appendChild(box);
    jsonView.appendChild(jsonError);
    function setJsonShown(shown) {
      jsonView.hidden = !shown;
      toggle.textContent = shown ? "Hide the JSON" : "Advanced (JSON)";
      toggle.setAttribute("aria-expanded", shown ? "true" : "false");
    }
    // A rule that is not JSON (the form came back with it) opens the JSON view, where it can be fixed.
    let initial;
    try { initial = JSON.parse(box.value || "null"); } catch (e) { initial = undefined; }
    setJsonShown(initial === undefined);
    toggle.addEventListener("click", function () { setJsonShown(jsonView.hidden); });
    builder = window.RuleBuilder(holder, grammar, window.marketingData("rule-choices") || {}, function (rule) {
      box.value = JSON.stringify(rule, null, 2);
      jsonError.replaceChildren();
      schedule();
    });
    builder.render(initial === undefined || initial === null ? {all: []} : initial);
  }

  function schedule() {
    clearTimeout(timer);
    asked++; // an answer on its way is stale from now on
    timer = setTimeout(preview, 350);
  }

  async function preview() {
    const question = ++asked;
    let rule;
    try { rule = JSON.parse(box.value); } catch (e) {
      clearPreview();
      showErrors([]);
      jsonError.replaceChildren();
      const li = document.createElement("li");
      li.textContent = "Not valid JSON yet: " + e.message + " (the builder keeps the last valid rule)";
      jsonError.appendChild(li);
      if (!builder) showErrors([li.textContent]);
      return;
    }
    jsonError.replaceChildren();
    sizeEl.textContent = "counting…";
    descEl.textContent = "";
    const body = {rule: rule};
    if (config.segment_id) body.segment_id = config.segment_id;
    let resp, data;
    try {
      resp = await fetch(config.preview_url, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRFToken": csrf}, body: JSON.stringify(body)
      });
      data = await resp.json();
    } catch (e) {
      if (question !== asked) return;
      clearPreview();
      showErrors(["The audience could not be counted: " + e.message]);
      return;
    }
    if (question !== asked) return;
    if (resp.ok) {
      showErrors([]);
      if (builder) builder.clearErrors();
      sizeEl.textContent = data.size.toLocaleString() + " customers";
      descEl.textContent = data.description;
    } else {
      clearPreview();
      const errors = data.errors || [{path: "", message: data.detail}];
      const withPath = function (e) { return (e.path ? e.path + ": " : "") + e.message; };
      const unplaced = builder ? builder.markErrors(errors) : errors;
      const jsonOpen = !document.getElementById("rule-json-view") || !document.getElementById("rule-json-view").hidden;
      if (jsonOpen) showErrors(errors.map(withPath)); // who edits the JSON reads the paths
      else {
        const placed = errors.length - unplaced.length;
        showErrors((placed ? [placed + (placed === 1 ? " problem in the rule, marked above." : " problems in the rule, marked above.")] : [])
          .concat(unplaced.map(withPath)));
      }
    }
  }

  box.addEventListener("input", function () {
    let rule;
    try { rule = JSON.parse(box.value); } catch (e) { rule = undefined; }
    // Valid JSON redraws the builder; JSON still being typed leaves the builder as it was.
    if (builder && rule !== undefined) builder.render(rule === null ? {all: []} : rule);
    schedule();
  });
  if (box.value.trim()) preview();
})();

/* A recomputation's page follows the run by itself: while it is queued or running, it asks the
   run's progress view every 2 seconds and updates the status, each step's badge, progress bar,
   text and duration, and, once a step is done, its figures; it stops asking when the run ends.
   Data: #pipeline-run-data ({url, active, interval_ms}). Everything the server sends is written
   with textContent (no markup from data, see docs/security.md). */
(function () {
  "use strict";
  const conf = window.marketingData("pipeline-run-data");
  if (!conf || !conf.url || !conf.active) return;
  const interval = conf.interval_ms || 2000;
  let failures = 0;

  function setText(el, text) { if (el && el.textContent !== text) el.textContent = text; }

  function setBadge(el, item) {
    if (!el) return;
    setText(el, item.status_label);
    el.dataset.status = item.status;
    el.style.background = item.background;
    el.style.color = item.colour;
  }

  function renderRows(body, rows) {
    rows.forEach(function (row) {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.textContent = row.label;
      th.style.paddingLeft = row.depth + ".8em";
      th.style.fontWeight = row.value || row.url || row.values ? "normal" : "600";
      tr.appendChild(th);
      if (row.values) {
        row.values.forEach(function (value) {
          const cell = document.createElement("td");
          cell.style.textAlign = "right";
          cell.textContent = value;
          tr.appendChild(cell);
        });
        body.appendChild(tr);
        return;
      }
      const td = document.createElement("td");
      td.style.textAlign = "right";
      if (row.url) {
        const a = document.createElement("a");
        a.href = row.url;
        a.textContent = row.value;
        td.appendChild(a);
      } else {
        td.textContent = row.value;
      }
      tr.appendChild(td);
      body.appendChild(tr);
    });
  }

  function renderFigures(box, groups) {
    if (!box) return;
    const tables = groups.map(function (group) {
      const table = document.createElement("table");
      table.style.minWidth = "300px";
      if (group.title) {
        const caption = document.createElement("caption");
        caption.textContent = group.title;
        caption.style.textAlign = "left";
        caption.style.fontWeight = "600";
        caption.style.padding = "4px 0";
        table.appendChild(caption);
      }
      if (group.columns) {
        const head = document.createElement("thead");
        const tr = document.createElement("tr");
        tr.appendChild(document.createElement("th"));
        group.columns.forEach(function (column) {
          const th = document.createElement("th");
          th.textContent = column;
          th.style.textAlign = "right";
          tr.appendChild(th);
        });
        head.appendChild(tr);
        table.appendChild(head);
      }
      const body = document.createElement("tbody");
      renderRows(body, group.rows);
      table.appendChild(body);
      return table;
    });
    box.replaceChildren.apply(box, tables);
  }

  function renderStep(item) {
    const box = document.querySelector('.run-step[data-step="' + CSS.escape(item.name) + '"]');
    if (!box) return;
    setBadge(box.querySelector(".run-step-status"), item);
    const took = item.took ? (item.status === "running" ? "running for " : "took ") + item.took : "";
    setText(box.querySelector(".run-step-took"), took);
    const bar = box.querySelector(".run-step-bar");
    if (bar) bar.setAttribute("aria-valuenow", String(item.percent));
    const fill = box.querySelector(".run-step-fill");
    if (fill) { fill.style.width = item.percent + "%"; fill.style.background = item.colour; }
    setText(box.querySelector(".run-step-text"), item.text);
    const figuresBox = document.querySelector('.run-figures-box[data-step="' + CSS.escape(item.name) + '"]');
    const figures = figuresBox && figuresBox.querySelector(".run-step-figures");
    const wanted = JSON.stringify(item.figures);
    if (figures && (figures.dataset.rows || "") !== wanted) {
      renderFigures(figures, item.figures);
      figures.dataset.rows = wanted;
      figuresBox.hidden = item.figures.length === 0;
    }
  }

  function render(run) {
    setBadge(document.getElementById("run-status"), run);
    setText(document.getElementById("run-started"), run.started || "not yet");
    setText(document.getElementById("run-finished"), run.finished || "—");
    setText(document.getElementById("run-took"), run.took || "—");
    const errorRow = document.getElementById("run-error-row");
    if (errorRow) { errorRow.hidden = !run.error; setText(document.getElementById("run-error"), run.error || ""); }
    run.steps.forEach(renderStep);
    const none = document.querySelector(".run-figures-none");
    if (none) none.hidden = run.has_figures;
    const following = document.getElementById("run-following");
    if (following) following.hidden = !run.active;
  }

  function poll() {
    fetch(conf.url, {credentials: "same-origin", headers: {Accept: "application/json"}, cache: "no-store"})
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (run) {
        failures = 0;
        render(run);
        if (run.active) window.setTimeout(poll, interval);
      })
      .catch(function () {
        // a missed answer (a restart, a busy database): try again, more slowly, then give up
        failures += 1;
        if (failures < 30) window.setTimeout(poll, interval * Math.min(failures + 1, 5));
      });
  }

  window.setTimeout(poll, interval);
})();

/* A campaign's form: the live audience size (#campaign-form-config: {preview_url}), written into the
   "Who" section's #audience-size. The report's charts are campaign-report.js. */
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
  // The send time row (send at, ends at) only matters for a schedule other than "now": hidden while
  // "now" is chosen and both are empty, so a value is never hidden.
  function sendTimeRow() {
    const schedule = document.querySelector('select[name="schedule"]');
    const row = document.querySelector(".form-row.field-send_at");
    if (!schedule || !row) return;
    const empty = ["send_at_0", "send_at_1", "ends_at_0", "ends_at_1"].every(function (n) { return !val(n, ""); });
    row.hidden = schedule.value === "now" && empty;
  }
  document.addEventListener("change", function (e) { if (e.target.name === "schedule") sendTimeRow(); });
  sendTimeRow();
  document.addEventListener("change", refresh);
  document.addEventListener("click", function (e) { if (e.target.closest(".selector")) refresh(); });
  refresh();
})();

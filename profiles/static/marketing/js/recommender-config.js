// The recommender configuration page: show only the chosen algorithm's parameters, and the blend's
// components only for a blend. Without this script every fieldset shows (the form still works).
(function () {
  "use strict";
  function update() {
    var select = document.getElementById("id_algorithm");
    if (!select) return;
    var chosen = select.value;
    document.querySelectorAll("fieldset.algo-params").forEach(function (fs) {
      fs.hidden = !fs.classList.contains("algo-" + chosen);
    });
    var blend = document.querySelector(".blend-components");
    var inline = blend ? blend.closest(".inline-group") || blend : null;
    if (inline) inline.hidden = chosen !== "blend";
  }
  document.addEventListener("DOMContentLoaded", function () {
    var select = document.getElementById("id_algorithm");
    if (!select) return;
    select.addEventListener("change", update);
    update();
  });
})();

/* Reads the page's data islands: <script type="application/json" id="..."> written by Django's
   json_script filter. Page scripts never receive data any other way (no inline script, see
   docs/security.md). */
window.marketingData = function (id) {
  "use strict";
  const el = document.getElementById(id);
  if (!el) return null;
  try { return JSON.parse(el.textContent); } catch (e) { return null; }
};

/* django-celery-beat's periodic task form: the crontab's reading in words under the field, as its
   own template did inline (templates/admin/djcelery/change_periodictask_form.html). */
(function () {
  "use strict";
  const crontabs = window.marketingData("readable-crontabs") || {};
  const translation = document.querySelector(".field-crontab_translation");
  if (translation) translation.hidden = true;
  const select = document.getElementById("id_crontab");
  const help = document.querySelector(".field-crontab .help");
  if (!select || !help) return;
  const original = help.textContent.trim();
  select.addEventListener("change", function () {
    help.replaceChildren(document.createTextNode(original), document.createElement("br"),
      document.createTextNode("Translation: " + (crontabs[select.value] || "")));
  });
})();

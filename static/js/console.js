// The manager's pages: show only the parameters of the routing policy chosen. htmx does the rest.
(function () {
  "use strict";
  function showPolicyParams(form) {
    var select = form.querySelector("select[name=name]");
    if (!select) { return; }
    form.querySelectorAll("fieldset.policy-params").forEach(function (set) {
      var on = set.dataset.policy === select.value;
      set.hidden = !on;
      set.disabled = !on; // hidden parameters are not sent
    });
  }
  function init(root) {
    var form = (root || document).querySelector("#policy-form");
    if (form) { showPolicyParams(form); }
  }
  document.addEventListener("change", function (e) {
    if (e.target.matches && e.target.matches("#policy-form select[name=name]")) { showPolicyParams(e.target.form); }
  });
  document.addEventListener("DOMContentLoaded", function () { init(document); });
})();

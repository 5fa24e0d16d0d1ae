// Small behaviours htmx attributes cannot say without inline script (the CSP allows none).
// A form marked data-reset-on-success empties itself after a successful htmx request and
// announces the change, so a live preview that listens for "change" counts again.
document.addEventListener("htmx:afterRequest", (event) => {
  const form = event.target.closest && event.target.closest("form[data-reset-on-success]");
  if (!form || event.target !== form || !event.detail.successful) return;
  form.reset();
  htmx.trigger(form, "change");
});

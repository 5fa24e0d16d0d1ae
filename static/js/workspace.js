// The annotator workspace: keyboard, drag-to-rank, time on task. htmx does the requests.
(function () {
  "use strict";

  var shownAt = 0; // when the current task became visible
  var spent = 0; // ms already counted for the current task while the tab was visible

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }
  function openDialog() { return $("dialog[open]"); }

  // Time on task: visible time only, from the task's arrival to its submit.
  function startClock() { spent = 0; shownAt = document.hidden ? 0 : performance.now(); }
  function elapsed() { return Math.round(spent + (shownAt ? performance.now() - shownAt : 0)); }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { spent = elapsed(); shownAt = 0; } else { shownAt = performance.now(); }
  });

  // Listwise: positions, tie badges and the hidden inputs follow the DOM order.
  function renumber(list) {
    var rank = 0;
    $all(".rank-item", list).forEach(function (li, index) {
      var tied = $("input[name=tied]", li);
      if (index === 0) { tied.value = "0"; }
      if (tied.value !== "1") { rank += 1; }
      $(".rank-pos", li).textContent = rank + ".";
      $(".tie-badge", li).hidden = tied.value !== "1";
      li.classList.toggle("tied", tied.value === "1");
    });
  }
  function selectItem(li) {
    $all(".rank-item.selected").forEach(function (x) { x.classList.remove("selected"); });
    if (li) { li.classList.add("selected"); li.focus({ preventScroll: false }); }
  }
  function move(li, delta) {
    var list = li.parentNode;
    if (delta < 0 && li.previousElementSibling) { list.insertBefore(li, li.previousElementSibling); }
    if (delta > 0 && li.nextElementSibling) { list.insertBefore(li.nextElementSibling, li); }
    renumber(list);
    li.focus();
  }
  function toggleTie(li) {
    var list = li.parentNode;
    if (list.dataset.allowTie !== "1" || !li.previousElementSibling) { return; }
    var tied = $("input[name=tied]", li);
    tied.value = tied.value === "1" ? "0" : "1";
    renumber(list);
  }

  var dragged = null;
  function initRanking(list) {
    renumber(list);
    list.addEventListener("dragstart", function (e) {
      dragged = e.target.closest(".rank-item");
      if (dragged) { dragged.classList.add("dragging"); e.dataTransfer.effectAllowed = "move"; e.dataTransfer.setData("text/plain", dragged.dataset.letter); }
    });
    list.addEventListener("dragover", function (e) {
      if (!dragged) { return; }
      e.preventDefault();
      var over = e.target.closest(".rank-item");
      if (!over || over === dragged) { return; }
      var box = over.getBoundingClientRect();
      var after = e.clientY > box.top + box.height / 2;
      list.insertBefore(dragged, after ? over.nextElementSibling : over);
    });
    list.addEventListener("drop", function (e) { e.preventDefault(); });
    list.addEventListener("dragend", function () {
      if (dragged) { dragged.classList.remove("dragging"); renumber(list); dragged = null; }
    });
    list.addEventListener("click", function (e) {
      var li = e.target.closest(".rank-item");
      var button = e.target.closest("button");
      if (!li) { return; }
      if (button && button.dataset.move) { move(li, parseInt(button.dataset.move, 10)); }
      else if (button && button.hasAttribute("data-tie")) { toggleTie(li); }
      selectItem(li);
    });
  }

  // Single-key shortcuts can be turned off (remembered in this browser).
  var SHORTCUTS_KEY = "tandem.shortcuts";
  function shortcutsOn() {
    try { return window.localStorage.getItem(SHORTCUTS_KEY) !== "off"; } catch (err) { return true; }
  }
  function initShortcutToggle() {
    var box = $("input[data-action=shortcuts]");
    if (box) { box.checked = shortcutsOn(); }
  }
  document.addEventListener("change", function (e) {
    if (!e.target.matches || !e.target.matches("input[data-action=shortcuts]")) { return; }
    try { window.localStorage.setItem(SHORTCUTS_KEY, e.target.checked ? "on" : "off"); } catch (err) { /* private mode */ }
    e.target.blur();
  });

  // Listwise: a ranking typed by response number, best first: "2>1>3", "2=3>1" (ties).
  function applyTypedRanking(input) {
    var list = $("#ranking");
    var error = $("[data-typed-error]");
    if (!list) { return; }
    var text = input.value.replace(/\s+/g, "");
    if (!text) { if (error) { error.hidden = true; } return; }
    var count = parseInt(input.dataset.count, 10);
    var problem = "";
    if (!/^\d+([>=]\d+)*$/.test(text)) { problem = "Write numbers joined by > (or = for a tie), e.g. 2>1>3."; }
    var numbers = text.split(/[>=]/);
    var links = text.replace(/\d+/g, "").split("");
    if (!problem) {
      var seen = {};
      numbers.forEach(function (n) {
        var k = parseInt(n, 10);
        if (k < 1 || k > count) { problem = "There are responses 1 to " + count + " only."; }
        else if (seen[k]) { problem = "Response " + k + " appears twice."; }
        seen[k] = true;
      });
      if (!problem && numbers.length !== count) { problem = "Rank all " + count + " responses."; }
      if (!problem && list.dataset.allowTie !== "1" && links.indexOf("=") !== -1) { problem = "Ties are not allowed here."; }
    }
    if (error) { error.hidden = !problem; error.textContent = problem; }
    if (problem) { return; }
    numbers.forEach(function (n, index) {
      var li = $(".rank-item[data-number='" + parseInt(n, 10) + "']", list);
      list.appendChild(li);
      $("input[name=tied]", li).value = index > 0 && links[index - 1] === "=" ? "1" : "0";
    });
    renumber(list);
  }
  document.addEventListener("input", function (e) {
    if (e.target.matches && e.target.matches("input[name=typed_ranking]")) { applyTypedRanking(e.target); }
  });

  // Pairwise: the two panes scroll together (proportionally), or expand to full length.
  var syncing = false;
  document.addEventListener("scroll", function (e) {
    var body = e.target;
    if (syncing || !body.classList || !body.classList.contains("response-body")) { return; }
    var sync = $("input[data-action=sync-scroll]");
    var pair = body.closest(".responses.pair");
    if (!pair || !sync || !sync.checked) { return; }
    var range = body.scrollHeight - body.clientHeight;
    var ratio = range > 0 ? body.scrollTop / range : 0;
    syncing = true;
    $all(".response-body:not([hidden])", pair).forEach(function (other) {
      if (other !== body) { other.scrollTop = ratio * (other.scrollHeight - other.clientHeight); }
    });
    window.requestAnimationFrame(function () { syncing = false; });
  }, true);
  function toggleExpand() {
    var button = $("[data-action=expand]");
    var pair = $(".responses.pair");
    if (!button || !pair) { return; }
    var on = button.getAttribute("aria-pressed") !== "true";
    button.setAttribute("aria-pressed", on ? "true" : "false");
    pair.classList.toggle("expanded", on);
  }

  // Undo: offered for a short while after a submit.
  function initUndo(root) {
    var bar = $(".undo-bar", root);
    if (!bar) { return; }
    var seconds = parseInt(bar.dataset.undoSeconds, 10) || 0;
    window.setTimeout(function () { if (document.body.contains(bar)) { bar.hidden = true; } }, seconds * 1000);
  }
  function undo() {
    var button = $(".undo-bar:not([hidden]) [data-action=undo]");
    if (button) { button.click(); }
  }

  function initTask(root) {
    startClock();
    var list = $("#ranking", root);
    if (list) { initRanking(list); }
    initUndo(root);
  }

  function submitTask() {
    var form = $("#task-form");
    if (form) { form.requestSubmit(); }
  }

  function toggleDiff() {
    var button = $("[data-action=diff]");
    if (!button) { return; }
    var on = button.getAttribute("aria-pressed") !== "true";
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.firstChild.textContent = on ? "Show responses " : "Show differences ";
    $all(".response .md.response-body").forEach(function (el) { el.hidden = on; });
    $all(".response .diff").forEach(function (el) { el.hidden = !on; });
  }

  function showDialog(id) {
    var dialog = document.getElementById(id);
    if (!dialog || dialog.open) { return; }
    var current = openDialog();
    if (current) { current.close(); }
    dialog.showModal();
    var first = $("input, button", dialog);
    if (first) { first.focus(); }
  }

  document.addEventListener("click", function (e) {
    var opener = e.target.closest("[data-open]");
    if (opener) { showDialog(opener.dataset.open); return; }
    if (e.target.closest("[data-close]")) { var d = e.target.closest("dialog"); if (d) { d.close(); } return; }
    if (e.target.closest("[data-action=diff]")) { toggleDiff(); }
    if (e.target.closest("[data-action=expand]")) { toggleExpand(); }
  });

  function pickByKey(root, key) {
    var input = $("input[type=radio][data-key='" + key + "']", root);
    if (input) { input.checked = true; input.focus(); input.dispatchEvent(new Event("change", { bubbles: true })); }
    return !!input;
  }

  // "Other" as a skip reason: the text box takes the focus, so what is typed next is the reason.
  document.addEventListener("change", function (e) {
    var radio = e.target;
    if (!radio.matches || !radio.matches("input[type=radio][name=reason][value=other]") || !radio.checked) { return; }
    var text = $("input[name=reason_text]", radio.form);
    if (text) { text.focus(); }
  });

  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.metaKey) { return; }
    var target = e.target;
    var typing = target.matches && target.matches("textarea, input[type=text], select");
    var dialog = openDialog();
    if (typing) {
      if (e.key === "Escape") { target.blur(); e.preventDefault(); }
      else if (e.key === "Enter" && e.ctrlKey) {
        e.preventDefault();
        if (dialog) { var f = $("form", dialog); if (f && f.requestSubmit) { f.requestSubmit(); } } else { submitTask(); }
      }
      return;
    }
    if (e.ctrlKey) { return; }
    if (!shortcutsOn() && e.key !== "Escape") { return; }
    if (dialog) {
      if (/^[1-9]$/.test(e.key)) { pickByKey(dialog, e.key); e.preventDefault(); }
      else if (e.key === "Enter" && !target.matches("button")) {
        var form = $("form:not([method=dialog])", dialog);
        if (form) { e.preventDefault(); form.requestSubmit(); }
      }
      return; // Escape closes the dialog natively
    }
    var task = $("#task");
    var list = $("#ranking");
    var selected = list && ($(".rank-item.selected", list) || (target.closest && target.closest(".rank-item")));
    var key = e.key;
    if (/^[1-9]$/.test(key)) {
      if (list) { selectItem($all(".rank-item", list)[parseInt(key, 10) - 1]); }
      else if (task) { pickByKey(task, key); }
      e.preventDefault();
    } else if (key === "Enter") {
      if (target.matches && target.matches("button, a")) { return; }
      e.preventDefault();
      submitTask();
    } else if (key === "s" || key === "S") {
      if (task && $("#skip-dialog")) { e.preventDefault(); showDialog("skip-dialog"); }
    } else if (key === "?") {
      e.preventDefault(); showDialog("keys-dialog");
    } else if (key === "g" || key === "G") {
      e.preventDefault(); showDialog("guidelines-dialog");
    } else if (key === "d" || key === "D") {
      toggleDiff();
    } else if (key === "x" || key === "X") {
      toggleExpand();
    } else if (key === "u" || key === "U") {
      e.preventDefault(); undo();
    } else if (selected && (key === "ArrowUp" || key === "k" || key === "K")) {
      e.preventDefault(); move(selected, -1); selectItem(selected);
    } else if (selected && (key === "ArrowDown" || key === "j" || key === "J")) {
      e.preventDefault(); move(selected, 1); selectItem(selected);
    } else if (selected && (key === "t" || key === "T")) {
      e.preventDefault(); toggleTie(selected);
    }
  });

  // Answers with an error status still carry a partial to show (a message, or the next task).
  document.addEventListener("htmx:beforeSwap", function (e) {
    var status = e.detail.xhr.status;
    var url = e.detail.xhr.responseURL || "";
    if (url.indexOf("/login/") !== -1) { // the session ended: log in again, then come back
      e.detail.shouldSwap = false;
      window.location.assign(url.split("?")[0] + "?next=" + encodeURIComponent(window.location.pathname));
      return;
    }
    if (status === 404 || status === 403 || status === 409 || status === 422) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
    }
  });
  document.addEventListener("htmx:configRequest", function (e) {
    if (e.detail.elt && e.detail.elt.id === "task-form") {
      e.detail.parameters.time_spent_ms = String(elapsed());
    }
  });
  document.addEventListener("htmx:afterSwap", function (e) {
    var open = openDialog();
    if (open && !document.body.contains(open)) { return; }
    if (e.detail.target && e.detail.target.id === "task-area") {
      initTask(e.detail.target);
      window.scrollTo(0, 0);
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    initShortcutToggle();
    var area = $("#task-area");
    if (area && $("#task-form", area)) { initTask(area); }
  });
})();

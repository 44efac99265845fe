// Keeps the open page current: the console sends an event whenever something changes
// (server-sent events), and the page fetches itself again and swaps in its new <main>, at most
// once a second however busy the system is. What an operator has chosen in a form is carried
// over, so a refresh never changes the target of an action.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var main = document.querySelector("main");
  if (!main || !window.EventSource) {
    if (live) live.textContent = "static";
    return;
  }
  var site = main.getAttribute("data-site") || "";
  var source = new EventSource("/events/stream" + (site ? "?site=" + encodeURIComponent(site) : ""));
  var pending = null;
  var broken = false;
  function show(text, on) {
    if (live) { live.textContent = text; live.className = on ? "live on" : "live"; }
  }
  source.onopen = function () {
    show("live", true);
    // Back after a break: what changed meanwhile was not sent.
    if (broken) { broken = false; schedule(); }
  };
  source.onerror = function () { broken = true; show("reconnecting…", false); };
  source.onmessage = schedule;
  function schedule() {
    if (pending === null) pending = setTimeout(refresh, 1000);
  }
  function editing() {
    var a = document.activeElement;
    return a && main.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName);
  }
  function key(control) {
    var form = control.form ? control.form.getAttribute("action") : "";
    return form + "#" + control.name;
  }
  function chosen() {
    var values = {};
    main.querySelectorAll("form select, form input[type=checkbox]").forEach(function (c) {
      values[key(c)] = c.type === "checkbox" ? c.checked : c.value;
    });
    return values;
  }
  function restore(values) {
    main.querySelectorAll("form select, form input[type=checkbox]").forEach(function (c) {
      var v = values[key(c)];
      if (v === undefined) return;
      if (c.type === "checkbox") c.checked = v;
      else if (Array.prototype.some.call(c.options, function (o) { return o.value === v; })) c.value = v;
    });
  }
  function refresh() {
    pending = null;
    if (editing()) { pending = setTimeout(refresh, 2000); return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("main");
        if (!fresh) return;
        var values = chosen();
        main.innerHTML = fresh.innerHTML;
        restore(values);
        document.title = doc.title;
        main.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () {});
  }
})();

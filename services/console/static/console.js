// Keeps the open page current: the console sends an event whenever something changes
// (server-sent events), and the page fetches itself again and swaps in its new <main>.
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
  var timer = null;
  source.onopen = function () { if (live) { live.textContent = "live"; live.className = "live on"; } };
  source.onerror = function () { if (live) { live.textContent = "reconnecting…"; live.className = "live"; } };
  source.onmessage = function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  };
  function editing() {
    var a = document.activeElement;
    return a && main.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName);
  }
  function refresh() {
    if (editing()) { timer = setTimeout(refresh, 2000); return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("main");
        if (fresh) {
          main.innerHTML = fresh.innerHTML;
          document.title = doc.title;
          main.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () {});
  }
})();

(function () {
  // Refresh in place every 15 s: the scroll position, open sections and a
  // filter being typed into are kept. Without JavaScript: reload by hand.
  var busy = false;
  function refresh() {
    if (busy || document.hidden) return;
    var a = document.activeElement;
    if (a && a.form) return;
    busy = true;
    fetch(location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (t) {
        if (!t) return;
        var doc = new DOMParser().parseFromString(t, "text/html");
        document.querySelectorAll("details[id]").forEach(function (d) {
          var n = doc.getElementById(d.id);
          if (n) { if (d.open) n.setAttribute("open", ""); else n.removeAttribute("open"); }
        });
        var main = doc.querySelector("main"), upd = doc.querySelector(".updated");
        if (main) document.querySelector("main").replaceWith(main);
        if (upd) document.querySelector(".updated").replaceWith(upd);
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  setInterval(refresh, 15000);
  // For the layout test: does the page fit the viewport's width?
  window.addEventListener("load", function () {
    document.body.setAttribute("data-scroll-width", document.documentElement.scrollWidth);
    document.body.setAttribute("data-viewport-width", window.innerWidth);
  });
})();

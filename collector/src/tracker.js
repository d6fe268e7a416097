// footfall tracker: one page view on load and on each SPA navigation.
// It sets no cookie, stores nothing and sends no identifier. A visitor opts
// out with localStorage.footfall_ignore = "true".
(function () {
  "use strict";
  var w = window, d = document, l = w.location, s = d.currentScript;
  // A browser driven by automation (Selenium, Puppeteer, Playwright) is not
  // a visitor.
  if (!s || navigator.webdriver) return;
  // Beacons go where the script came from unless data-api says otherwise.
  var api = s.getAttribute("data-api") || new URL("/api/event", s.src).href;
  var site = s.getAttribute("data-domain") || l.hostname;
  var hash = s.hasAttribute("data-hash");
  var referrer = d.referrer || null;
  var last = null;

  function send() {
    var page = l.pathname + (hash ? l.hash : "");
    if (page === last) return; // a query-only change is not a new page
    last = page;
    try {
      if (w.localStorage.footfall_ignore === "true") return;
    } catch (e) {}
    var body = JSON.stringify({
      n: "pageview", u: l.href, d: site, r: referrer, w: w.innerWidth, h: hash ? 1 : 0
    });
    // The next view's referrer is this page, so SPA navigation is not an entry.
    referrer = l.href;
    // A string body goes as text/plain: no CORS preflight.
    if (!(navigator.sendBeacon && navigator.sendBeacon(api, body))) {
      fetch(api, { method: "POST", body: body, keepalive: true }).catch(function () {});
    }
  }

  var push = w.history.pushState;
  if (push) {
    w.history.pushState = function () {
      push.apply(this, arguments);
      send();
    };
    w.addEventListener("popstate", send);
  }
  if (hash) w.addEventListener("hashchange", send);
  // A prerendered page counts only once someone actually looks at it.
  if (d.prerendering) d.addEventListener("prerenderingchange", send, { once: true });
  else send();
})();

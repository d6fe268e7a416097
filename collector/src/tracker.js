// footfall tracker: one page view on load and on each SPA navigation, and
// on leaving a page how long it was looked at and how far it was scrolled.
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
  var hash = s.hasAttribute("data-hash") ? 1 : 0;
  var referrer = d.referrer || null;
  var last = null;
  // The page being read: its URL, engaged milliseconds not yet reported,
  // when the running stretch began (0: not visible and focused), its
  // deepest scroll and the deepest already reported.
  var url = null, engaged = 0, since = 0, depth = 0, sent = -1;

  function post(o) {
    try {
      if (w.localStorage.footfall_ignore === "true") return;
    } catch (e) {}
    var body = JSON.stringify(o);
    // A string body goes as text/plain: no CORS preflight.
    if (!(navigator.sendBeacon && navigator.sendBeacon(api, body))) {
      fetch(api, { method: "POST", body: body, keepalive: true }).catch(function () {});
    }
  }

  function scroll() {
    var e = d.documentElement, h = Math.max(e.scrollHeight, e.offsetHeight);
    var sd = h > 0 ? Math.round(Math.min(1, (w.scrollY + w.innerHeight) / h) * 100) : 100;
    if (sd > depth) depth = sd;
  }

  // Stops the clock, and reports the page as Plausible's tracker does:
  // always the first time, then for 3 s more or a deeper scroll.
  function report() {
    if (since) engaged += Date.now() - since;
    since = 0;
    if (!url) return;
    scroll();
    if (sent < 0 || depth > sent || engaged >= 3000) {
      post({ n: "engagement", u: url, d: site, sd: depth, e: engaged, h: hash });
      engaged = 0;
      sent = depth;
    }
  }

  function resume() {
    if (d.visibilityState === "visible" && d.hasFocus() && !since) since = Date.now();
  }

  function view() {
    var page = l.pathname + (hash ? l.hash : "");
    if (page === last) return; // a query-only change is not a new page
    last = page;
    report();
    url = l.href;
    engaged = depth = 0;
    sent = -1;
    resume();
    scroll();
    post({ n: "pageview", u: url, d: site, r: referrer, w: w.innerWidth, h: hash });
    // The next view's referrer is this page, so SPA navigation is not an entry.
    referrer = url;
  }

  var push = w.history.pushState;
  if (push) {
    w.history.pushState = function () {
      push.apply(this, arguments);
      view();
    };
    w.addEventListener("popstate", view);
  }
  if (hash) w.addEventListener("hashchange", view);
  w.addEventListener("scroll", scroll, { passive: true });
  d.addEventListener("visibilitychange", function () {
    d.visibilityState === "hidden" ? report() : resume();
  });
  w.addEventListener("blur", report);
  w.addEventListener("focus", resume);
  // A prerendered page counts only once someone actually looks at it.
  if (d.prerendering) d.addEventListener("prerenderingchange", view, { once: true });
  else view();
})();

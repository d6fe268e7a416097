// footfall tracker: one page view on load and on each SPA navigation, and
// on leaving a page how long it was looked at and how far it was scrolled;
// custom events through Plausible's window.plausible(name, options). It
// sets no cookie, stores nothing and sends no identifier. A visitor opts
// out with localStorage.footfall_ignore = "true".
//
// This file is /script.js and the core of every variant at /js/script.*.js:
// scripts/build-tracker.mjs puts a variant's fragments
// (collector/src/tracker/) at the "@variants" line, leaves out what lies
// between "@auto" and "@end auto" for the manual variant, and minifies it
// with terser into collector/src/tracker/dist/, which the binary embeds.
// After changing this file or a fragment, run `node
// scripts/build-tracker.mjs` and commit what it writes (a test fails
// until then). The fragments share this function's scope.
(function () {
  "use strict";
  var w = window, d = document, l = w.location, s = d.currentScript;
  // A browser driven by automation (Selenium, Puppeteer, Playwright) is not
  // a visitor.
  if (!s || navigator.webdriver) return;
  // Beacons go where the script came from unless data-api says otherwise.
  var api = s.getAttribute("data-api") || new URL("/api/event", s.src).href,
    site = s.getAttribute("data-domain") || l.hostname,
    hash = s.hasAttribute("data-hash") ? 1 : 0,
    referrer = d.referrer || null,
    // The page last counted, and the page being read: its URL, engaged
    // milliseconds not yet reported, when the running stretch began (0:
    // not visible and focused), its deepest scroll and the deepest already
    // reported.
    last, url, engaged = 0, since = 0, depth = 0, sent = -1;

  // Sends a beacon. An event's callback is called as Plausible's tracker
  // calls it: with {status} once answered, {error} when the request failed,
  // and with nothing when the visitor opted out.
  function post(o, done) {
    try {
      if (w.localStorage.footfall_ignore == "true") return done && done();
    } catch (e) {}
    var body = JSON.stringify(o);
    // A string body goes as text/plain: no CORS preflight. Only fetch
    // learns the answer, so an event with a callback goes by fetch.
    if (done || !(navigator.sendBeacon && navigator.sendBeacon(api, body))) {
      fetch(api, { method: "POST", body: body, keepalive: true })
        .then((r) => ({ status: r.status }), (e) => ({ error: e }))
        .then(done);
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
    if (d.visibilityState == "visible" && d.hasFocus() && !since) since = Date.now();
  }

  // window.plausible(name, {props, interactive, callback, u}): "pageview"
  // is a view (a manual setup's, or the automatic one's), any other name a
  // custom event. Its referrer is the page's, as Plausible's tracker sends.
  function track(n, o) {
    o = o || {};
    var u = o.u || l.href, e = { n: n, u: u, d: site, r: d.referrer || null, p: o.props, h: hash };
    if (n == "pageview") {
      report();
      url = u;
      engaged = depth = 0;
      sent = -1;
      resume();
      scroll();
      e.r = referrer;
      e.w = w.innerWidth;
      // The next view's referrer is this page, so SPA navigation is not an
      // entry.
      referrer = u;
    }
    if (o.interactive === false) e.i = false;
    post(e, o.callback);
  }

  function view() {
    var page = l.pathname + (hash ? l.hash : "");
    if (page == last) return; // a query-only change is not a new page
    last = page;
    track("pageview");
  }

  w.addEventListener("scroll", scroll);
  d.addEventListener("visibilitychange", () =>
    d.visibilityState == "hidden" ? report() : resume()
  );
  w.addEventListener("blur", report);
  w.addEventListener("focus", resume);
  // @variants

  // Calls made before the script loaded wait in window.plausible.q (the
  // snippet Plausible documents).
  var q = (w.plausible && w.plausible.q) || [];
  w.plausible = track;

  // @auto: automatic views, which the manual variant leaves to the page.
  var push = w.history.pushState;
  if (push) {
    w.history.pushState = function () {
      push.apply(this, arguments);
      view();
    };
    w.addEventListener("popstate", view);
  }
  if (hash) w.addEventListener("hashchange", view);
  // A prerendered page counts only once someone actually looks at it.
  d.prerendering ? d.addEventListener("prerenderingchange", view) : view();
  // @end auto
  // The waiting calls go in order after the first view, so that an event
  // finds the visit the view opened (an interactive one ends its bounce).
  q.forEach((a) => track(...a));
})();

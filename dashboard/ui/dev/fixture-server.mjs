#!/usr/bin/env node
// A stand-in for footfall's operator listener, for developing and
// screenshotting the dashboard without the Rust server: it serves
// dashboard/ui/dist/ as the real server will (from manifest.json, gzip when
// asked, the strict CSP) and answers the API the dashboard calls with
// canned, deterministic numbers. It is not footfall and not its tests: the
// numbers only have to look like traffic and hang together roughly.
//
//   node dashboard/ui/dev/fixture-server.mjs [--port 8089] [--now 2026-12-08T14:37:00Z] [--delay 0]
//
// --now fixes the server's clock (the screenshots fix the browser's to the
// same instant); --delay adds milliseconds to every API answer, to see the
// loading states.
//
// Answers:
//   GET  /api/footfall/sites                      {"sites":[{"site","first","last","props"}]}
//   GET  /api/v1/stats/realtime/visitors?site_id  a bare number
//   POST /api/v2/query                            Plausible's v2 shape, or 400 {"error"}
// and three refusals to exercise the dashboard's error paths:
//   - exit pages (visit:exit_page) with a filter on visit:source;
//   - new.example.net has visits switched off: the visit metrics and the
//     entry/exit dimensions are refused;
//   - new.example.net records no custom events: event:* dimensions are refused.
// No dependencies: Node's http, fs and zlib only.

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const DIST = join(dirname(fileURLToPath(import.meta.url)), "..", "dist");

export const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// ---------------------------------------------------------------- numbers

// FNV-1a, as a number in [0, 1): the same inputs give the same noise.
function rand(...parts) {
  let h = 0x811c9dc5;
  for (const c of parts.join("|")) {
    h ^= c.charCodeAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h / 2 ** 32;
}

const DAY = 86400000;
const iso = (ms) => new Date(ms).toISOString().slice(0, 10);
const dateMs = (d) => Date.parse(`${d}T00:00:00Z`);
const addDays = (d, n) => iso(dateMs(d) + n * DAY);

// Shares of each dimension's values (normalised below); null is "no value".
const zipf = (values, s = 1) => values.map((v, i) => [v, 1 / (i + 1) ** s]);
const PAGES = [
  "/", "/pricing", "/blog", "/docs", "/blog/privacy-first-analytics", "/docs/getting-started", "/about",
  "/blog/counting-without-cookies", "/docs/api", "/changelog", "/signup", "/contact", "/docs/configuration",
  "/blog/hyperloglog-explained", "/careers", "/login", "/docs/self-hosting", "/blog/2026-in-review",
  "/legal/privacy", "/docs/faq", "/integrations", "/blog/parquet-for-analysts", "/security", "/status",
  "/blog/why-utc", "/docs/filters", "/press", "/legal/terms", "/partners", "/docs/migrating-from-ga",
];
const DIMS = {
  "event:page": zipf(PAGES, 1.05),
  "visit:entry_page": zipf(["/", "/blog/privacy-first-analytics", "/pricing", "/docs", "/blog/counting-without-cookies", "/blog", "/docs/getting-started", "/blog/hyperloglog-explained", "/about", "/changelog", "/blog/2026-in-review", "/docs/api", "/careers"], 1.1),
  "visit:exit_page": zipf(["/", "/pricing", "/docs/getting-started", "/blog", "/signup", "/docs", "/blog/privacy-first-analytics", "/contact", "/about", "/login", "/docs/api", "/changelog"], 0.9),
  "visit:source": [
    [null, 34], ["google.com", 28], ["news.ycombinator.com", 11], ["duckduckgo.com", 6], ["github.com", 5],
    ["reddit.com", 3.5], ["bing.com", 3], ["lobste.rs", 2], ["mastodon.social", 1.6], ["linkedin.com", 1.4],
    ["ecosia.org", 1], ["t.co", 0.9], ["startpage.com", 0.6], ["kagi.com", 0.5], ["producthunt.com", 0.4],
    ["(other)", 0.3],
  ],
  "visit:utm_medium": [["social", 5], ["email", 3], ["newsletter", 2], ["cpc", 1]],
  "visit:utm_source": [["newsletter", 4], ["twitter", 3], ["hn", 2], ["mastodon", 1.5], ["producthunt", 1]],
  "visit:utm_campaign": [["winter-launch", 5], ["weekly-digest", 3], ["docs-refresh", 1]],
  "visit:browser": [["Chrome", 52], ["Safari", 21], ["Firefox", 11], ["Edge", 8], ["Samsung Internet", 4], ["Opera", 2], ["Vivaldi", 1], ["Other", 1]],
  "visit:os": [["Windows", 34], ["macOS", 24], ["iOS", 18], ["Android", 15], ["Linux", 7], ["ChromeOS", 1], ["Other", 1]],
  "visit:device": [["desktop", 61], ["mobile", 34], ["tablet", 5]],
  "visit:country": [
    ["US", 26], ["DE", 11], ["GB", 8], ["FR", 6.5], ["IN", 6], ["CA", 4], ["NL", 3.6], ["BR", 3], ["JP", 2.6],
    ["AU", 2.4], ["ES", 2.2], ["SE", 2], ["IT", 2], ["PL", 1.8], ["CH", 1.5], ["AT", 1.2], ["BE", 1.1],
    ["DK", 1], ["FI", 0.9], ["NO", 0.9], ["IE", 0.8], ["PT", 0.7], ["CZ", 0.7], ["MX", 0.6], ["AR", 0.5],
    ["ZA", 0.5], ["KR", 0.5], ["SG", 0.4], ["NZ", 0.4], ["UA", 0.4], ["TR", 0.3], ["ID", 0.3], ["NG", 0.2],
    ["EG", 0.2], ["CN", 0.2], ["RU", 0.2], ["XK", 0.05], [null, 0.6],
  ],
  "event:goal": [["Visit /pricing", 9], ["Signup", 3], ["Download PDF", 1.5]],
  "event:name": [["pageview", 100], ["Signup", 3], ["Outbound Link: Click", 6], ["File Download", 1.5]],
  "event:props:plan": [["free", 6], ["pro", 2.5], ["team", 1]],
  "event:props:author": [["ana", 4], ["bo", 3], ["chidi", 2]],
};
for (const list of Object.values(DIMS)) {
  const sum = list.reduce((a, [, w]) => a + w, 0);
  for (const row of list) row[1] /= sum;
}
const EVENT_DIMS = new Set(["event:goal", "event:name"]);
const isEventDim = (d) => EVENT_DIMS.has(d) || d.startsWith("event:props:");

const METRICS = ["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration", "events", "conversion_rate", "percentage"];
const VISIT_METRICS = new Set(["visits", "views_per_visit", "bounce_rate", "visit_duration"]);

function sites(now) {
  const today = iso(now);
  return {
    "example.com": { first: addDays(today, -420), scale: 30, sessions: true, events: true, props: ["plan", "author"] },
    "blog.example.org": { first: addDays(today, -60), scale: 4, sessions: true, events: true, props: [] },
    "new.example.net": { first: today, scale: 1.2, sessions: false, events: false, props: [] },
  };
}

// Visitors in one UTC hour: a daily curve peaking mid-afternoon UTC,
// quieter weekends, slow growth, noise; nothing before the site's first
// day or after now, and the open hour counted up to now.
function hourVisitors(site, cfg, date, hour, now) {
  const start = dateMs(date) + hour * 3600000;
  if (date < cfg.first || start > now) return 0;
  const curve = 0.25 + Math.exp(-(((hour - 14.5) / 4.5) ** 2));
  const weekday = [0.7, 1, 1.05, 1.05, 1, 0.95, 0.72][new Date(start).getUTCDay()];
  const growth = 1 + (dateMs(date) - dateMs(cfg.first)) / (400 * DAY);
  let v = cfg.scale * curve * weekday * growth * (0.65 + 0.7 * rand(site, date, hour));
  if (start + 3600000 > now) v *= (now - start) / 3600000;
  return v;
}

// One filter's share: the filtered value's part of its dimension.
function filterShare([op, dim, values]) {
  const list = DIMS[dim] || [];
  const share = values.reduce((a, v) => a + (list.find(([x]) => x === v)?.[1] || 0), 0);
  return op === "is_not" ? 1 - share : share;
}

// The metrics of a slice of traffic with `v` (fractional) visitor-hours.
function metricsFor(metrics, v, key, multiDay) {
  const visitors = Math.round(v * (multiDay ? 0.82 : 0.93));
  const visits = Math.round(v * 1.12);
  const pageviews = Math.round(visits * (1.7 + 0.9 * rand("pv", key)));
  return metrics.map((m) => {
    switch (m) {
      case "visitors":
        return visitors;
      case "visits":
        return visits;
      case "pageviews":
        return pageviews;
      case "events":
        return Math.round(pageviews * 1.1);
      case "views_per_visit":
        return visits ? Math.round((pageviews / visits) * 100) / 100 : 0;
      case "bounce_rate":
        return visits ? Math.round(38 + 22 * rand("br", key)) : 0;
      case "visit_duration":
        return visits ? Math.round(50 + 200 * rand("vd", key)) : 0;
      case "conversion_rate":
        return Math.round(100 * (2 + 12 * rand("cr", key))) / 100;
      case "percentage":
        return null;
    }
  });
}

class Refusal extends Error {}

function answer(q, now) {
  const allowed = new Set(["site_id", "metrics", "date_range", "dimensions", "filters", "order_by", "include", "pagination"]);
  for (const k of Object.keys(q)) if (!allowed.has(k)) throw new Refusal(`Unknown key \`${k}\` in the query.`);
  const all = sites(now);
  const cfg = all[q.site_id];
  if (!cfg) throw new Refusal(`footfall has no data for site \`${q.site_id}\`.`);
  if (!Array.isArray(q.metrics) || !q.metrics.length) throw new Refusal("`metrics` must be a non-empty list.");
  for (const m of q.metrics) if (!METRICS.includes(m)) throw new Refusal(`Unknown metric \`${m}\`.`);
  const range = q.date_range;
  if (!Array.isArray(range) || range.length !== 2 || !range.every((d) => /^\d{4}-\d{2}-\d{2}$/.test(d)) || range[0] > range[1]) {
    throw new Refusal("`date_range` must be two dates, [\"YYYY-MM-DD\", \"YYYY-MM-DD\"], the first not after the second (this fixture only takes explicit ranges).");
  }
  const dims = q.dimensions || [];
  if (dims.length > 1) throw new Refusal("This fixture breaks down by one dimension at a time.");
  const dim = dims[0];
  const filters = q.filters || [];
  for (const f of filters) {
    if (!Array.isArray(f) || !["is", "is_not"].includes(f[0]) || typeof f[1] !== "string" || !Array.isArray(f[2])) {
      throw new Refusal(`Malformed filter ${JSON.stringify(f)}.`);
    }
  }
  if (!cfg.sessions) {
    const m = q.metrics.find((x) => VISIT_METRICS.has(x));
    if (m) throw new Refusal(`Metric \`${m}\` needs visits, and this server keeps none (it runs with --sessions off).`);
    if (dim === "visit:entry_page" || dim === "visit:exit_page") {
      throw new Refusal("Entry and exit pages need visits, and this server keeps none (it runs with --sessions off).");
    }
  }
  if (!cfg.events && dim && isEventDim(dim)) throw new Refusal("No custom events have been recorded for this site.");
  if (dim === "visit:exit_page" && filters.some((f) => f[1] === "visit:source")) {
    throw new Refusal(
      "Exit pages cannot be shown with a filter on visit:source: footfall counts exits by page only, so it cannot tell which source's visits ended where.",
    );
  }
  if (q.metrics.includes("conversion_rate") && dim !== "event:goal" && !filters.some((f) => f[1] === "event:goal")) {
    throw new Refusal("Metric `conversion_rate` needs a goal: break down by event:goal or filter on one.");
  }

  const share = filters.reduce((a, f) => a * filterShare(f), 1);
  const multiDay = range[0] !== range[1];
  const hours = [];
  for (let d = range[0]; d <= range[1]; d = addDays(d, 1)) {
    for (let hr = 0; hr < 24; hr++) hours.push([d, hr, hourVisitors(q.site_id, cfg, d, hr, now) * share]);
  }
  const key = `${q.site_id}|${range}|${JSON.stringify(filters)}`;
  let results;
  if (!dim) {
    results = [{ metrics: metricsFor(q.metrics, hours.reduce((a, [, , v]) => a + v, 0), key, multiDay), dimensions: [] }];
  } else if (dim === "time:hour" || dim === "time:day") {
    const buckets = new Map();
    for (const [d, hr, v] of hours) {
      const k = dim === "time:hour" ? `${d} ${String(hr).padStart(2, "0")}:00:00` : d;
      buckets.set(k, (buckets.get(k) || 0) + v);
    }
    results = [...buckets]
      .map(([k, v]) => ({ metrics: metricsFor(q.metrics, v, `${key}|${k}`, dim === "time:day"), dimensions: [k] }))
      .filter((r) => r.metrics[0] > 0);
  } else {
    const list = DIMS[dim];
    if (!list) {
      if (dim.startsWith("event:props:")) return { results: [], meta: {}, query: q };
      throw new Refusal(`Unknown dimension \`${dim}\`.`);
    }
    const total = hours.reduce((a, [, , v]) => a + v, 0);
    results = list
      .filter(([value]) => !filters.some((f) => f[1] === dim && f[0] === "is" && !f[2].includes(value)))
      .map(([value, w]) => {
        // A filter on this very dimension already took its share.
        const own = filters.some((f) => f[1] === dim) ? 1 : w;
        const v = total * own * (0.85 + 0.3 * rand(dim, value, range));
        return { metrics: metricsFor(q.metrics, v, `${key}|${value}`, multiDay), dimensions: [value] };
      })
      .filter((r) => r.metrics[0] > 0);
    const order = q.order_by?.[0];
    const by = order ? q.metrics.indexOf(order[0]) : 0;
    const sign = order && order[1] === "asc" ? 1 : -1;
    results.sort((a, b) => sign * (a.metrics[Math.max(0, by)] - b.metrics[Math.max(0, by)]));
    const { limit = 10000, offset = 0 } = q.pagination || {};
    results = results.slice(offset, offset + limit);
  }
  return { results, meta: {}, query: { ...q, date_range: [`${range[0]}T00:00:00Z`, `${range[1]}T23:59:59Z`] } };
}

// ---------------------------------------------------------------- server

function json(res, status, body) {
  res.writeHead(status, { "content-type": "application/json", "content-security-policy": CSP, "cache-control": "no-store" });
  res.end(JSON.stringify(body));
}

function serveStatic(req, res) {
  const manifest = JSON.parse(readFileSync(join(DIST, "manifest.json"), "utf8"));
  const path = decodeURIComponent(new URL(req.url, "http://x").pathname).replace(/^\/+/, "") || manifest.index;
  const file = manifest.files.find((f) => f.path === normalize(path));
  if (!file) {
    res.writeHead(404, { "content-type": "text/plain", "content-security-policy": CSP });
    res.end("not found\n");
    return;
  }
  const gzip = /\bgzip\b/.test(req.headers["accept-encoding"] || "");
  res.writeHead(200, {
    "content-type": file.content_type,
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": file.immutable ? "public, max-age=31536000, immutable" : "no-cache",
    ...(gzip ? { "content-encoding": "gzip" } : {}),
    vary: "accept-encoding",
  });
  res.end(readFileSync(join(DIST, gzip ? file.gzip : file.path)));
}

export function startFixtureServer({ port = 8089, now: fixedNow = null, delay = 0, log = () => {} } = {}) {
  const clock = () => (fixedNow ? Date.parse(fixedNow) : Date.now());
  const server = createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    const later = (f) => setTimeout(f, delay);
    log(`${req.method} ${req.url}`);
    if (url.pathname === "/api/footfall/sites" && req.method === "GET") {
      const now = clock();
      const list = Object.entries(sites(now)).map(([site, c]) => ({ site, first: c.first, last: iso(now), props: c.props }));
      return later(() => json(res, 200, { sites: list }));
    }
    if (url.pathname === "/api/v1/stats/realtime/visitors" && req.method === "GET") {
      const now = clock();
      const cfg = sites(now)[url.searchParams.get("site_id")];
      if (!cfg) return json(res, 400, { error: "Unknown site." });
      const d = new Date(now);
      const v = hourVisitors(url.searchParams.get("site_id"), { ...cfg }, iso(now), d.getUTCHours(), Math.floor(now / 3600000) * 3600000 + 3599999);
      return later(() => json(res, 200, Math.round(v / 9 + 3 * rand(url.searchParams.get("site_id"), Math.floor(now / 60000)))));
    }
    if (url.pathname === "/api/v2/query") {
      if (req.method !== "POST") return json(res, 405, { error: "Use POST." });
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        let q;
        try {
          q = JSON.parse(body);
        } catch {
          return json(res, 400, { error: "The body is not JSON." });
        }
        try {
          const out = answer(q, clock());
          later(() => json(res, 200, out));
        } catch (e) {
          if (!(e instanceof Refusal)) throw e;
          later(() => json(res, 400, { error: e.message }));
        }
      });
      return;
    }
    if (url.pathname.startsWith("/api/")) return json(res, 404, { error: "Not found." });
    serveStatic(req, res);
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, dflt) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : dflt;
  };
  const server = await startFixtureServer({
    port: Number(arg("port", 8089)),
    now: arg("now", null),
    delay: Number(arg("delay", 0)),
    log: process.argv.includes("--verbose") ? console.log : () => {},
  });
  console.log(`fixture server on http://127.0.0.1:${server.address().port}/`);
}

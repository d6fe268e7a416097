#!/usr/bin/env node
// Loads the dashboard from a REAL footfall (`serve` or `dashboard`) in
// Debian's headless Chromium (driven by playwright-core from
// scripts/dashboard-build, as dev/check.mjs does) and checks that what it
// shows is what the same server's Stats API answers: the top row, the top
// lists, the current visitors. Then it goes through a period, the graph's
// metric, a filter (which this version's API refuses: the page must show
// footfall's sentence in place of numbers, and the numbers again once the
// chip is removed), and takes full-page screenshots at 1280×800 and
// 390×844 in the light scheme.
//
//   node dashboard/ui/dev/real-check.mjs --url http://127.0.0.1:8081/ \
//     [--site example.com] [--out /tmp/dashboard-real-shots] \
//     [--auth "Bearer secret"] [--shot-view "period=30d&compare=1"]
//
// --shot-view is the view of the screenshots, as the page's URL says it
// (default period=today). tests/e2e/dashboard_browser.rs runs this against a
// server it has just fed; it prints `ok`/`FAIL` lines and exits 1 on any
// failure. Unlike check.mjs, nothing is canned and no clock is fixed: the
// numbers are whatever the server holds, compared with its own answers.

import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const URL_ARG = arg("url");
if (!URL_ARG) {
  console.error("usage: real-check.mjs --url http://127.0.0.1:PORT/ [--site S] [--out DIR] [--auth 'Bearer …'] [--shot-view period=today]");
  process.exit(2);
}
const BASE = URL_ARG.endsWith("/") ? URL_ARG : `${URL_ARG}/`;
const SITE = arg("site", "example.com");
const OUT = arg("out", "/tmp/dashboard-real-shots");
const AUTH = arg("auth", null);
const SHOT_VIEW = arg("shot-view", "period=today");
const { chromium } = createRequire(join(here, "../../../scripts/dashboard-build/package.json"))("playwright-core");

mkdirSync(OUT, { recursive: true });
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});

let passed = 0;
let failed = 0;
function check(ok, what) {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  return ok;
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const show = (x) => JSON.stringify(x);

// A page whose console errors and CSP violations are recorded. Chromium
// logs every 4xx answer to a fetch as a console error; the 400s of
// api/v2/query are counted apart (the filter provokes them on purpose),
// and every 4xx/5xx answer is kept with its request for the report.
async function openPage({ width, height, scheme }) {
  const context = await browser.newContext({
    viewport: { width, height },
    colorScheme: scheme,
    deviceScaleFactor: 1,
    extraHTTPHeaders: AUTH ? { authorization: AUTH } : {},
  });
  const page = await context.newPage();
  const log = { errors: [], refusals: 0, csp: [], failures: [] };
  page.on("console", (m) => {
    if (m.type() !== "error" && m.type() !== "warning") return;
    const url = m.location().url || "";
    if (/status of 400/.test(m.text()) && url.includes("/api/v2/query")) log.refusals++;
    else log.errors.push(`${m.type()}: ${m.text()} ${url}`);
    if (/Content.Security.Policy/i.test(m.text())) log.csp.push(m.text());
  });
  page.on("pageerror", (e) => log.errors.push(`pageerror: ${e.message}`));
  page.on("response", (r) => {
    if (r.status() >= 400) log.failures.push(`${r.status()} ${r.url()} ${r.request().postData() || ""}`);
  });
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  return { context, page, log };
}

// The view is on screen: the top row answered (numbers or footfall's
// sentence), nothing is loading any more (cards, graph, map).
async function ready(page) {
  await page.waitForFunction(() => {
    const top = document.querySelector("#toprow");
    return top && !top.classList.contains("loading") && top.children.length > 0 && !document.querySelector(".loading");
  });
}

async function finish({ context, page, log }, name) {
  const csp = await page.evaluate(() => window.__csp);
  check(log.errors.length === 0, `${name}: no console errors${log.errors.length ? `: ${log.errors.join(" | ")}` : ""}`);
  check(csp.length === 0 && log.csp.length === 0, `${name}: no CSP violations${csp.length ? `: ${csp.join(" | ")}` : ""}`);
  await context.close();
}

// The page's own formatting (src/util.js fmtMetric and fmtMetricExact,
// src/state.js displayValue), run in the page so that Chromium's Intl, not
// Node's, writes "1.2k" and the countries' names.
function formatInPage({ cells, labels }) {
  const exactFormat = new Intl.NumberFormat("en");
  const compactFormat = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
  const fmtCompact = (n) => {
    if (n == null || Number.isNaN(n)) return "–";
    if (Math.abs(n) < 1000) return exactFormat.format(Math.round(n));
    return compactFormat.format(n).replace("K", "k");
  };
  const fmtDuration = (seconds) => {
    if (seconds == null || Number.isNaN(seconds)) return "–";
    const s = Math.round(seconds);
    if (s < 60) return `${s}s`;
    const pad = (x) => String(x).padStart(2, "0");
    if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
    return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  };
  const fmtMetric = (metric, value) => {
    if (value == null || Number.isNaN(value)) return "–";
    switch (metric) {
      case "bounce_rate":
      case "conversion_rate":
      case "percentage":
      case "exit_rate":
        return `${Math.round(value * 10) / 10}%`;
      case "visit_duration":
      case "time_on_page":
        return fmtDuration(value);
      case "views_per_visit":
        return (Math.round(value * 100) / 100).toFixed(2);
      default:
        return fmtCompact(value);
    }
  };
  const fmtExact = (metric, value) =>
    ["visitors", "visits", "pageviews", "events"].includes(metric) ? (value == null ? "–" : exactFormat.format(value)) : fmtMetric(metric, value);
  const none = { "visit:source": "Direct / None", "visit:country": "Unknown" };
  const regions = new Intl.DisplayNames(["en"], { type: "region", fallback: "code" });
  const label = (dim, value) => {
    if (value == null || value === "") return none[dim] || "(none)";
    if (dim === "visit:country" && /^[A-Z]{2}$/.test(value)) return regions.of(value);
    if (dim === "visit:device") return value.charAt(0).toUpperCase() + value.slice(1);
    return String(value);
  };
  return {
    cells: cells.map(([m, v]) => [fmtMetric(m, Number(v)), fmtExact(m, Number(v))]),
    labels: labels.map(([d, v]) => label(d, v)),
  };
}

const format = (page, cells, labels = []) => page.evaluate(formatInPage, { cells, labels });

// POST api/v2/query from the page's own origin, as the page does.
async function query(page, body) {
  return page.evaluate(async (body) => {
    const r = await fetch("api/v2/query", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      cache: "no-store",
    });
    const text = await r.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {}
    return { status: r.status, json, text };
  }, body);
}

const DAY_MS = 86400000;
const isoDate = (ms) => new Date(ms).toISOString().slice(0, 10);
// The page's range for a period, with the page's own clock.
async function rangeOf(page, period) {
  const today = await page.evaluate(() => new Date().toISOString().slice(0, 10));
  const t = Date.parse(`${today}T00:00:00Z`);
  const back = { today: 0, "7d": 6, "30d": 29 }[period];
  if (back == null) throw new Error(`no range known for period ${period}`);
  return [isoDate(t - back * DAY_MS), today];
}

const TOP = ["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration"];

// Each number of the top row is the API's total for the range, as the
// page formats it; the title holds it written out in full.
async function checkTopRow(page, range, name) {
  const shown = await page.$$eval("#toprow .stat", (els) =>
    els.map((e) => ({ metric: e.dataset.metric, value: e.querySelector(".stat-value").textContent, title: e.title })),
  );
  check(same(shown.map((s) => s.metric), TOP), `${name}: the six numbers of the top row (${shown.map((s) => s.metric).join(", ")})`);
  const answer = await query(page, { site_id: SITE, metrics: TOP, date_range: range });
  if (!check(answer.status === 200, `${name}: the API answers the totals of ${show(range)} (${answer.status})`)) {
    console.log(`     ${answer.text}`);
    return null;
  }
  const values = answer.json.results[0] ? answer.json.results[0].metrics : TOP.map(() => 0);
  const { cells } = await format(page, TOP.map((m, i) => [m, values[i]]));
  for (const [i, m] of TOP.entries()) {
    const s = shown.find((x) => x.metric === m);
    if (!s) continue;
    const [short, exact] = cells[i];
    check(
      s.value === short && s.title.includes(`: ${exact}`),
      `${name}: ${m} shows ${show(s.value)}, the API ${values[i]} (${show(short)}, title ${show(s.title.split(".")[0])})`,
    );
  }
  return Object.fromEntries(TOP.map((m, i) => [m, values[i]]));
}

// A card's rows (label and every number) are the API's breakdown, in its
// order, asked for exactly as the page asks for it (src/panels.js).
// Dimensions whose refusal a card showed as the API's own sentence (the
// countries of a server without --geoip-db): their 400s are not errors.
const accepted = new Set();

async function checkCard(page, { card, tab, dim, metrics, limit = 11, refusal }, range, name) {
  const panel = `#cards .panel:nth-child(${card})`;
  const selected = await page.$eval(`${panel} .tab[aria-selected="true"]`, (e) => e.textContent);
  if (selected !== tab) {
    await page.click(`${panel} .tab:text-is("${tab}")`);
    await page.waitForFunction((p) => !document.querySelector(`${p} .loading`), panel);
    await page.waitForFunction((p) => document.querySelector(`${p} .card-body .list, ${p} .card-body .msg`), panel);
  }
  const rows = await page.$$eval(`${panel} .card-body .list li .row`, (els) =>
    els.map((e) => [e.querySelector(".label").textContent, ...[...e.querySelectorAll(".num")].map((n) => n.textContent)]),
  );
  const titles = await page.$$eval(`${panel} .card-body .list li .row`, (els) =>
    els.map((e) => [...e.querySelectorAll(".num")].map((n) => n.title)),
  );
  const answer = await query(page, {
    site_id: SITE,
    metrics,
    date_range: range,
    dimensions: [dim],
    order_by: [[metrics[0], "desc"]],
    pagination: { limit, offset: 0 },
  });
  const said = answer.json && answer.json.error;
  if (answer.status === 400 && refusal && refusal.test(said || "")) {
    // Refused for a reason this server is entitled to: the card says so.
    accepted.add(dim);
    const msg = await page.$$eval(`${panel} .card-body .msg.refused`, (els) => els.map((e) => e.textContent));
    check(same(msg, [said]), `${name}: ${tab} shows the API's refusal ${show(said)}${same(msg, [said]) ? "" : `, not ${show(msg)}`}`);
    return false;
  }
  if (!check(answer.status === 200, `${name}: the API answers ${dim} by ${metrics.join(", ")} (${answer.status})`)) {
    console.log(`     ${answer.text}`);
    return false;
  }
  const results = answer.json.results.slice(0, 10);
  const f = await format(
    page,
    results.flatMap((r) => metrics.map((m, i) => [m, r.metrics[i]])),
    results.map((r) => [dim, r.dimensions[0]]),
  );
  const want = results.map((r, j) => [f.labels[j], ...metrics.map((_, i) => f.cells[j * metrics.length + i][0])]);
  const wantTitles = results.map((r, j) => metrics.map((_, i) => f.cells[j * metrics.length + i][1]));
  check(rows.length > 0 || results.length === 0, `${name}: ${tab} has rows (${rows.length})`);
  check(same(rows, want), `${name}: ${tab} shows the API's ${dim}${same(rows, want) ? ` (${rows.length} rows)` : `: page ${show(rows)} vs API ${show(want)}`}`);
  check(same(titles, wantTitles), `${name}: ${tab}'s exact numbers in the titles${same(titles, wantTitles) ? "" : `: ${show(titles)} vs ${show(wantTitles)}`}`);
  return true;
}

const CARDS = [
  { card: 1, tab: "Sources", dim: "visit:source", metrics: ["visitors"] },
  { card: 2, tab: "Top pages", dim: "event:page", metrics: ["visitors"] },
  // A server without --geoip-db writes no countries table, and says so.
  { card: 3, tab: "Countries", dim: "visit:country", metrics: ["visitors"], limit: 300, refusal: /--geoip-db/ },
  { card: 4, tab: "Browser", dim: "visit:browser", metrics: ["visitors"] },
  { card: 5, tab: "Goals", dim: "event:goal", metrics: ["visitors", "events", "conversion_rate"] },
];

const search = (page) => page.evaluate(() => decodeURIComponent(location.search));

try {
  const p = await openPage({ width: 1280, height: 800, scheme: "light" });
  const { page } = p;

  // Today, as a newcomer first sees it.
  let range = await rangeOf(page, "today");
  await page.goto(`${BASE}?site=${encodeURIComponent(SITE)}&period=today`);
  await ready(page);
  check((await page.inputValue("#site")) === SITE, `today: the site picker shows ${SITE}`);
  check((await page.inputValue("#period")) === "today", "today: the period picker shows today");
  const totals = await checkTopRow(page, range, "today");
  check(totals && totals.visitors > 0, `today: something was counted (${totals && totals.visitors} visitors)`);
  check(await page.isVisible("#graph canvas"), "today: the graph is drawn");
  const answered = {};
  for (const c of CARDS) answered[c.dim] = await checkCard(page, c, range, "today");
  // Back to the map, the Locations card's first look.
  await page.click('#cards .panel:nth-child(3) .tab:text-is("Map")');
  await ready(page);
  if (answered["visit:country"]) {
    const painted = await page.$$eval(".map svg path[data-cc]", (els) => [els.length, els.filter((e) => /\bc[1-9]\b/.test(e.getAttribute("class") || "")).length]);
    check(painted[0] > 100 && painted[1] > 0, `today: the world map is drawn, ${painted[1]} countries coloured`);
  }

  // The current visitors: the live ring, as the API says.
  const live = await page.evaluate(async (site) => {
    const r = await fetch(`api/v1/stats/realtime/visitors?site_id=${encodeURIComponent(site)}`, { cache: "no-store" });
    return { status: r.status, text: await r.text() };
  }, SITE);
  if (live.status === 200) {
    await page.waitForSelector("#live:not([hidden])");
    const count = await page.textContent("#live-count");
    check(count === new Intl.NumberFormat("en").format(Number(live.text)), `today: ${count} current visitors, the API ${live.text}`);
  } else {
    check(await page.isHidden("#live"), `today: no current visitors shown (the API answers ${live.status})`);
  }

  // Last 7 days, through the period picker.
  await page.selectOption("#period", "7d");
  await page.waitForFunction(() => location.search.includes("period=7d"));
  await ready(page);
  range = await rangeOf(page, "7d");
  await checkTopRow(page, range, "7 days");
  await checkCard(page, CARDS[1], range, "7 days");
  check(/Today, still counting/.test(await page.textContent("#graph-legend")), "7 days: today is marked as still counting");

  // The graph's metric: another number of the top row.
  const graphAnswer = page.waitForResponse(
    (r) => r.url().includes("/api/v2/query") && /"metrics":\["pageviews"\].*"time:day"/.test(r.request().postData() || ""),
  );
  await page.click('#toprow .stat[data-metric="pageviews"]');
  const graphReply = await graphAnswer;
  await page.waitForFunction(() => location.search.includes("metric=pageviews"));
  await page.waitForFunction(() => !document.querySelector("#graph-card").classList.contains("loading"));
  check(graphReply.status() === 200, `metric switch: the graph's pageviews by day answered ${graphReply.status()}`);
  check(
    (await page.getAttribute('#toprow .stat[data-metric="pageviews"]', "aria-pressed")) === "true" &&
      (await page.getAttribute('#toprow .stat[data-metric="visitors"]', "aria-pressed")) === "false",
    "metric switch: pageviews pressed, visitors not",
  );
  check((await page.isVisible("#graph canvas")) && (await page.isHidden("#graph-msg")), "metric switch: the graph is drawn");

  // A filter: a row of Top pages. This version answers 400 to any
  // filtered query; the page must say so in place of the numbers.
  const refusalsBefore = p.log.refusals;
  const row = await page.$("#cards .panel:nth-child(2) .card-body button.row");
  const rowLabel = row ? await row.$eval(".label", (e) => e.textContent) : null;
  check(row != null, `filter: a clickable row in Top pages (${rowLabel})`);
  if (row) {
    await row.click();
    await page.waitForSelector(".chip");
    await ready(page);
    check((await page.textContent(".chip")).includes(rowLabel), `filter: a chip for ${rowLabel}`);
    check((await search(page)).includes(`f=event:page=${rowLabel}`), "filter: in the URL");
    const sentence = (await page.textContent("#toprow")) || "";
    check(/filters are not answered yet/.test(sentence), `filter: footfall's sentence in the top row ("${sentence.slice(0, 60)}…")`);
    check((await page.$$("#toprow .stat")).length === 0, "filter: no numbers in the top row");
    check(
      (await page.isHidden("#graph")) && /filters are not answered yet/.test(await page.textContent("#graph-msg")),
      "filter: the sentence in place of the graph",
    );
    const cardMsgs = await page.$$eval("#cards .panel .card-body .msg.refused", (els) => els.map((e) => e.textContent));
    check(
      cardMsgs.length === CARDS.length && cardMsgs.every((t) => /filters are not answered yet/.test(t)),
      `filter: the sentence in each card (${cardMsgs.length} of ${CARDS.length})`,
    );
    check((await page.$$("#cards .card-body .list")).length === 0, "filter: no lists under the filter");
    check(p.log.refusals > refusalsBefore, `filter: answered 400 by the API (${p.log.refusals - refusalsBefore} times)`);
    await page.screenshot({ path: join(OUT, "dashboard-filtered.png"), fullPage: true });

    // Removing the chip brings the numbers back.
    await page.click(".chip-x");
    await page.waitForFunction(() => document.querySelector("#filters").hidden);
    await ready(page);
    check(!(await search(page)).includes("f="), "filter removed: not in the URL");
    await checkTopRow(page, range, "filter removed");
    check((await page.isVisible("#graph canvas")) && (await page.isHidden("#graph-msg")), "filter removed: the graph again");
    check(
      (await page.getAttribute('#toprow .stat[data-metric="pageviews"]', "aria-pressed")) === "true",
      "filter removed: still pageviews on the graph",
    );
    await checkCard(page, CARDS[1], range, "filter removed");
  }
  const unexpected = p.log.failures.filter(
    (f) =>
      !(f.startsWith("400 ") && f.includes("/api/v2/query") && (f.includes('"filters"') || [...accepted].some((d) => f.includes(`"dimensions":["${d}"]`)))),
  );
  check(unexpected.length === 0, `no query refused but the filtered ones${accepted.size ? ` and ${[...accepted].join(", ")}` : ""}${unexpected.length ? `: ${unexpected.join(" | ")}` : ""}`);
  await finish(p, "interactions");

  // The screenshots: desktop and phone, light, the whole page.
  for (const [w, h] of [
    [1280, 800],
    [390, 844],
  ]) {
    const name = `dashboard-${w}`;
    const s = await openPage({ width: w, height: h, scheme: "light" });
    await s.page.goto(`${BASE}?site=${encodeURIComponent(SITE)}&${SHOT_VIEW}`);
    await ready(s.page);
    await s.page.waitForSelector("#graph canvas");
    check((await s.page.$$("#toprow .stat")).length === 6, `${name}: six numbers in the top row`);
    const overflow = await s.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `${name}: nothing wider than the window (${overflow}px over)`);
    await s.page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
    await finish(s, name);
  }
} catch (e) {
  check(false, `the check stopped: ${e.stack || e}`);
} finally {
  await browser.close();
}

console.log(`screenshots in ${OUT}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);

#!/usr/bin/env node
// Loads the built dashboard from the fixture server in Debian's headless
// Chromium (driven by playwright-core from scripts/dashboard-build), checks
// that it shows its numbers with no console error and no CSP violation,
// goes through the main interactions, and takes screenshots at 1280×800
// and 390×844 in the light and dark schemes.
//
//   node dashboard/ui/dev/check.mjs [--out /tmp/dashboard-shots] [--now 2026-12-08T14:37:00Z]
//
// A development aid: footfall's real browser tests run against the Rust
// server. The browser's clock and the fixture's are fixed to --now, so
// the screenshots are the same from run to run.

import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startFixtureServer } from "./fixture-server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const OUT = arg("out", "/tmp/dashboard-shots");
const NOW = arg("now", "2026-12-08T14:37:00Z");
const { chromium } = createRequire(join(here, "../../../scripts/dashboard-build/package.json"))("playwright-core");

mkdirSync(OUT, { recursive: true });
const server = await startFixtureServer({ port: 0, now: NOW });
const base = `http://127.0.0.1:${server.address().port}/`;
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
}

// A page whose console errors and CSP violations are recorded. The API's
// refusals are 400s by design, and Chromium logs every 4xx answer to a
// fetch as a console error, so those (and only those) are counted apart.
async function openPage({ width, height, scheme }) {
  const context = await browser.newContext({ viewport: { width, height }, colorScheme: scheme, deviceScaleFactor: 1 });
  const page = await context.newPage();
  await page.clock.setFixedTime(new Date(NOW));
  const log = { errors: [], refusals: 0, csp: [] };
  page.on("console", (m) => {
    if (m.type() !== "error" && m.type() !== "warning") return;
    const url = m.location().url || "";
    if (/status of 400/.test(m.text()) && url.includes("/api/v2/query")) log.refusals++;
    else log.errors.push(`${m.type()}: ${m.text()} ${url}`);
    if (/Content.Security.Policy/i.test(m.text())) log.csp.push(m.text());
  });
  page.on("pageerror", (e) => log.errors.push(`pageerror: ${e.message}`));
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  return { context, page, log };
}

async function ready(page) {
  await page.waitForSelector("#toprow .stat");
  await page.waitForSelector("#graph canvas");
  await page.waitForFunction(() => document.querySelectorAll(".card-body .row").length >= 10);
  await page.waitForFunction(() => !document.querySelector(".loading"));
  await page.waitForSelector(".map svg path.c5");
}

async function finish({ context, page, log }, name) {
  const csp = await page.evaluate(() => window.__csp);
  check(log.errors.length === 0, `${name}: no console errors${log.errors.length ? `: ${log.errors.join(" | ")}` : ""}`);
  check(csp.length === 0 && log.csp.length === 0, `${name}: no CSP violations${csp.length ? `: ${csp.join(" | ")}` : ""}`);
  await context.close();
}

const statLabels = (page) => page.$$eval("#toprow .stat-label", (els) => els.map((e) => e.textContent));

try {
  // The four looks: phone and desktop, light and dark.
  for (const [w, h] of [
    [1280, 800],
    [390, 844],
  ]) {
    for (const scheme of ["light", "dark"]) {
      const name = `${w === 1280 ? "desktop" : "phone"}-${scheme}`;
      const p = await openPage({ width: w, height: h, scheme });
      await p.page.goto(`${base}?site=example.com&period=7d&compare=1`);
      await ready(p.page);
      check((await statLabels(p.page)).length === 6, `${name}: six numbers in the top row`);
      check((await p.page.$$(".change")).length === 6, `${name}: each with its change`);
      const overflow = await p.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      check(overflow <= 0, `${name}: nothing wider than the window (${overflow}px over)`);
      await p.page.screenshot({ path: join(OUT, `${name}.png`) });
      await p.page.screenshot({ path: join(OUT, `${name}-full.png`), fullPage: true });
      await finish(p, name);
    }
  }

  // The interactions, once, at desktop width.
  const p = await openPage({ width: 1280, height: 800, scheme: "light" });
  const { page } = p;
  await page.goto(`${base}?site=example.com&period=30d`);
  await ready(page);

  await page.click('#toprow .stat[data-metric="pageviews"]');
  await page.waitForFunction(() => location.search.includes("metric=pageviews"));
  check(
    (await page.getAttribute('#toprow .stat[data-metric="pageviews"]', "aria-pressed")) === "true",
    "metric switch: pageviews pressed and in the URL",
  );

  await page.selectOption("#period", "today");
  await page.waitForFunction(() => location.search.includes("period=today"));
  await ready(page);
  check((await page.textContent("#graph-legend")).includes("This hour, still counting"), "today: the open hour is marked");
  await page.mouse.move(700, 330);
  await page.waitForTimeout(100);
  await page.screenshot({ path: join(OUT, "today-tooltip.png") });

  await page.click('#cards .panel:first-child button.row:has-text("google.com")');
  await page.waitForSelector(".chip");
  check((await page.textContent(".chip")).includes("google.com"), "filter: a chip for the clicked source");
  check(decodeURIComponent(await page.evaluate(() => location.search)).includes("f=visit:source=google.com"), "filter: in the URL");
  await page.click('.tab:has-text("Exit pages")');
  await page.waitForSelector(".panel .msg.refused");
  const refusal = await page.textContent(".panel .msg.refused");
  check(/cannot/.test(refusal), `refused combination: the API's sentence shown ("${refusal.slice(0, 60)}…")`);
  await page.screenshot({ path: join(OUT, "filter-refused.png"), fullPage: true });
  check(p.log.refusals >= 1, "refused combination: answered 400 by the API");

  await page.click(".chip-x");
  await page.waitForFunction(() => document.querySelector("#filters").hidden);
  check(!decodeURIComponent(await page.evaluate(() => location.search)).includes("f="), "filter removed");

  await page.selectOption("#period", "30d");
  await ready(page);
  await page.click('.tab:has-text("Top pages")');
  await page.waitForFunction(() => document.querySelectorAll("#cards .panel:nth-child(2) .row").length === 10);
  await page.click("#cards .panel:nth-child(2) .more");
  await page.waitForFunction(() => document.querySelectorAll("#details .row").length > 10);
  check((await page.$$("#details .row")).length > 10, "details: more than ten rows");
  await page.screenshot({ path: join(OUT, "details.png") });
  await page.keyboard.press("Escape");
  check(!(await page.evaluate(() => document.querySelector("#details").open)), "details: Escape closes it");

  await page.selectOption("#period", "custom");
  await page.fill("#from", "2026-11-01");
  await page.fill("#to", "2026-11-30");
  await page.click('#custom button[type="submit"]');
  await page.waitForFunction(() => location.search.includes("period=custom"));
  await ready(page);
  check((await page.textContent("#range-label")).includes("1 Nov"), "custom range: applied");

  await page.goBack();
  await page.waitForFunction(() => !location.search.includes("period=custom"));
  check((await page.inputValue("#period")) === "30d", "back button: the previous period again");

  // A site whose server keeps no visits: only the numbers it can answer.
  await page.selectOption("#site", "new.example.net");
  await page.waitForFunction(() => document.querySelectorAll("#toprow .stat").length === 2);
  const labels = await statLabels(page);
  check(labels.join() === "Unique visitors,Total pageviews", `visits off: only ${labels.join(", ")}`);
  await page.waitForFunction(() => document.querySelectorAll(".msg.refused").length >= 2);
  await page.screenshot({ path: join(OUT, "visits-off.png"), fullPage: true });
  await finish(p, "interactions");

  // The 30 s refresh, on a fake clock: the realtime count is asked again
  // for any range, and the whole view when its range includes today.
  {
    const r = await openPage({ width: 1280, height: 800, scheme: "light" });
    await r.page.clock.install({ time: new Date(NOW) });
    const seen = { realtime: 0, query: 0 };
    r.page.on("request", (q) => {
      if (q.url().includes("/realtime/visitors")) seen.realtime++;
      if (q.url().includes("/api/v2/query")) seen.query++;
    });
    await r.page.goto(`${base}?site=example.com&period=today`);
    await ready(r.page);
    const before = { ...seen };
    await r.page.clock.runFor(30_000);
    await r.page.waitForFunction(() => !document.querySelector(".loading"));
    await r.page.waitForTimeout(300);
    check(seen.realtime > before.realtime, `refresh: current visitors asked again (${before.realtime} → ${seen.realtime})`);
    check(seen.query > before.query, `refresh: today's view asked again (${before.query} → ${seen.query} queries)`);
    await r.page.selectOption("#period", "lastmonth");
    await ready(r.page);
    const past = { ...seen };
    await r.page.clock.runFor(30_000);
    await r.page.waitForTimeout(300);
    check(seen.query === past.query && seen.realtime > past.realtime, "refresh: last month's view is not asked again, the live count is");
    await finish(r, "refresh");
  }
} finally {
  await browser.close();
  server.close();
}

console.log(`screenshots in ${OUT}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);

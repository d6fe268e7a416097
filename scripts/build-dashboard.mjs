#!/usr/bin/env node
// Builds footfall's dashboard as served: dashboard/ui/dist/, committed, so
// that the Rust side can embed it and nothing is built at run time.
//
//   npm ci --prefix scripts/dashboard-build --ignore-scripts   (once: pinned inputs)
//   node scripts/build-dashboard.mjs            writes dashboard/ui/dist/
//   node scripts/build-dashboard.mjs --check    exits 1 if what is there is not
//                                               what it would write
//
// What it writes:
//   index.html              the page, naming the assets below by their hashed names
//   app.<hash>.js           uPlot (as published, minified) then the app's sources
//                           (dashboard/ui/src/, in SOURCES order, in one IIFE)
//                           minified by terser
//   app.<hash>.css          uPlot's stylesheet then dashboard/ui/app.css, whitespace
//                           and comments stripped
//   map.<hash>.svg          the world, projected (Natural Earth projection) from
//                           world-atlas's countries-110m with d3-geo: one
//                           <path data-cc="FR"> per country, ISO 3166-1 alpha-2
//   favicon.<hash>.svg      the icon
//   licenses/…              the licences of what the page carries (uPlot,
//                           world-atlas) and Natural Earth's notice
//   *.gz                    each served file gzipped at level 9, for the server
//                           to send as it is to a client that accepts gzip
//   manifest.json           each served file: content type, size, sha256, its .gz,
//                           and whether its name is content-hashed (cache forever)
//
// Run it after any change under dashboard/ui/ (but dist/) and commit what
// it writes. The first load (page, script, stylesheet, map, icon) must stay
// under 150 kB gzipped; the build fails past it.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync, gzipSync } from "node:zlib";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const ui = join(root, "dashboard/ui");
const dist = join(ui, "dist");
const buildDir = join(root, "scripts/dashboard-build");
const BUDGET = 150_000;

// The app's sources, in the order they are put into the one IIFE: helpers
// first, then what uses them, app.js (which starts the page) last.
const SOURCES = [
  "util.js",
  "dates.js",
  "api.js",
  "state.js",
  "toprow.js",
  "chart.js",
  "map.js",
  "panels.js",
  "filters.js",
  "app.js",
];

const req = createRequire(join(buildDir, "package.json"));
let terser, topojson, d3;
try {
  terser = req("terser");
  topojson = req("topojson-client");
  d3 = req("d3-geo");
} catch (e) {
  console.error(
    "scripts/build-dashboard.mjs: its inputs are not installed; run\n" +
      "  npm ci --prefix scripts/dashboard-build --ignore-scripts",
  );
  process.exit(2);
}
const pkgFile = (name, file) => join(buildDir, "node_modules", name, file);
const version = (name) => JSON.parse(readFileSync(pkgFile(name, "package.json"), "utf8")).version;

// world-atlas names countries by ISO 3166-1 numeric code; footfall's
// `visit:country` is the alpha-2 code. This table covers every country in
// countries-110m (the build fails on one it does not know, e.g. after
// switching to the 50m file: add its row then).
const ALPHA2 = {
  "004": "AF", "008": "AL", "012": "DZ", "024": "AO", "031": "AZ", "032": "AR", "036": "AU",
  "040": "AT", "044": "BS", "050": "BD", "051": "AM", "056": "BE", "064": "BT", "068": "BO",
  "070": "BA", "072": "BW", "076": "BR", "084": "BZ", "090": "SB", "096": "BN", "100": "BG",
  "104": "MM", "108": "BI", "112": "BY", "116": "KH", "120": "CM", "124": "CA", "140": "CF",
  "144": "LK", "148": "TD", "152": "CL", "156": "CN", "158": "TW", "170": "CO", "178": "CG",
  "180": "CD", "188": "CR", "191": "HR", "192": "CU", "196": "CY", "203": "CZ", "204": "BJ",
  "208": "DK", "214": "DO", "218": "EC", "222": "SV", "226": "GQ", "231": "ET", "232": "ER",
  "233": "EE", "238": "FK", "242": "FJ", "246": "FI", "250": "FR", "260": "TF", "262": "DJ",
  "266": "GA", "268": "GE", "270": "GM", "275": "PS", "276": "DE", "288": "GH", "300": "GR",
  "304": "GL", "320": "GT", "324": "GN", "328": "GY", "332": "HT", "340": "HN", "348": "HU",
  "352": "IS", "356": "IN", "360": "ID", "364": "IR", "368": "IQ", "372": "IE", "376": "IL",
  "380": "IT", "384": "CI", "388": "JM", "392": "JP", "398": "KZ", "400": "JO", "404": "KE",
  "408": "KP", "410": "KR", "414": "KW", "417": "KG", "418": "LA", "422": "LB", "426": "LS",
  "428": "LV", "430": "LR", "434": "LY", "440": "LT", "442": "LU", "450": "MG", "454": "MW",
  "458": "MY", "466": "ML", "478": "MR", "484": "MX", "496": "MN", "498": "MD", "499": "ME",
  "504": "MA", "508": "MZ", "512": "OM", "516": "NA", "524": "NP", "528": "NL", "540": "NC",
  "548": "VU", "554": "NZ", "558": "NI", "562": "NE", "566": "NG", "578": "NO", "586": "PK",
  "591": "PA", "598": "PG", "600": "PY", "604": "PE", "608": "PH", "616": "PL", "620": "PT",
  "624": "GW", "626": "TL", "630": "PR", "634": "QA", "642": "RO", "643": "RU", "646": "RW",
  "682": "SA", "686": "SN", "688": "RS", "694": "SL", "703": "SK", "704": "VN", "705": "SI",
  "706": "SO", "710": "ZA", "716": "ZW", "724": "ES", "728": "SS", "729": "SD", "732": "EH",
  "740": "SR", "748": "SZ", "752": "SE", "756": "CH", "760": "SY", "762": "TJ", "764": "TH",
  "768": "TG", "780": "TT", "784": "AE", "788": "TN", "792": "TR", "795": "TM", "800": "UG",
  "804": "UA", "807": "MK", "818": "EG", "826": "GB", "834": "TZ", "840": "US", "854": "BF",
  "858": "UY", "860": "UZ", "862": "VE", "887": "YE", "894": "ZM",
};
// Shapes world-atlas gives no numeric code. Kosovo has the user-assigned
// XK that GeoIP databases use; the other two have no code a visitor could
// be counted under, so they are drawn without one (never coloured).
const BY_NAME = { Kosovo: "XK", "N. Cyprus": null, Somaliland: null };
// Antarctica (010) is left off: no visitors, and a third of the height.
const LEFT_OFF = new Set(["010"]);

async function buildJs() {
  const source = SOURCES.map((f) => `// ${f}\n${readFileSync(join(ui, "src", f), "utf8")}`).join("\n");
  const wrapped = `(() => {\n"use strict";\n${source}\n})();\n`;
  // ES2020 is what the sources are written in; terser's safe transforms
  // only. The app declares no global: everything is inside the IIFE.
  const { code } = await terser.minify(wrapped, {
    ecma: 2020,
    compress: { passes: 2 },
    mangle: true,
    format: { comments: false },
  });
  const uplot = readFileSync(pkgFile("uplot", "dist/uPlot.iife.min.js"), "utf8").trim();
  return `${uplot}\n/*! footfall dashboard: see licenses/NOTICES.txt */\n${code}\n`;
}

// A plain whitespace-and-comment strip: the stylesheet has no strings or
// url()s that this could change, and a dependency would buy a few bytes.
function minifyCss(css) {
  return css
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/\s+/g, " ")
    .replace(/\s*([{};,])\s*/g, "$1")
    .replace(/;}/g, "}")
    .trim();
}

function buildCss() {
  const uplot = readFileSync(pkgFile("uplot", "dist/uPlot.min.css"), "utf8");
  return `${minifyCss(uplot)}\n${minifyCss(readFileSync(join(ui, "app.css"), "utf8"))}\n`;
}

function buildMap() {
  const topo = JSON.parse(readFileSync(pkgFile("world-atlas", "countries-110m.json"), "utf8"));
  const all = topojson.feature(topo, topo.objects.countries).features;
  const features = all.filter((f) => !LEFT_OFF.has(f.id));
  const width = 960;
  const projection = d3.geoNaturalEarth1().fitWidth(width, { type: "FeatureCollection", features });
  // One decimal of a 960-wide picture is finer than any screen shows it.
  const path = d3.geoPath(projection).digits(1);
  const [[, y0], [, y1]] = path.bounds({ type: "FeatureCollection", features });
  const height = Math.ceil(y1 - Math.min(0, y0));
  const paths = features.map((f) => {
    const name = f.properties.name;
    let cc;
    if (f.id !== undefined) cc = ALPHA2[f.id];
    else if (name in BY_NAME) cc = BY_NAME[name];
    if (cc === undefined) {
      throw new Error(`world-atlas country ${JSON.stringify(f.id)} (${name}) has no alpha-2 code in ALPHA2 or BY_NAME`);
    }
    return `<path${cc ? ` data-cc="${cc}"` : ""} d="${relativePath(path(f))}"/>`;
  });
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" class="world">` +
    `${paths.join("")}</svg>\n`
  );
}

// d3 writes absolute moves and lines ("M953.9,299.6L954.7,299.1…Z"); the
// same outline in relative steps of tenths ("M953.9,299.6l.8-.5…z") is a
// third smaller, gzipped too. Points are kept in integer tenths so steps
// add up exactly; a step of zero is dropped.
function relativePath(d) {
  const tenth = (n) => {
    const s = (Math.abs(n) / 10).toString().replace(/^0\./, ".");
    return n < 0 ? `-${s}` : s;
  };
  const pair = (x, y) => `${tenth(x)}${y < 0 ? "" : ","}${tenth(y)}`;
  let out = "";
  let px = 0;
  let py = 0;
  for (const [, cmd, args] of d.matchAll(/([MLZ])([^MLZ]*)/g)) {
    if (cmd === "Z") {
      out += "z";
      continue;
    }
    const [x, y] = args.split(",").map((v) => Math.round(Number(v) * 10));
    if (cmd === "M") {
      // Absolute: a shape's start does not depend on the one before.
      out += `M${pair(x, y)}`;
      out += "l";
    } else if (x !== px || y !== py) {
      const step = pair(x - px, y - py);
      out += out.endsWith("l") || step.startsWith("-") ? step : `,${step}`;
    }
    px = x;
    py = y;
  }
  // A move straight followed by another command leaves an empty "l".
  return out.replace(/l(?=[zM]|$)/g, "");
}

function licenses() {
  const uplot = readFileSync(pkgFile("uplot", "LICENSE"), "utf8").trim();
  const atlas = readFileSync(pkgFile("world-atlas", "LICENSE"), "utf8").trim();
  const naturalEarth = [
    "The world map (map.*.svg) is projected from world-atlas " + version("world-atlas") + "'s",
    "countries-110m.json, a redistribution of Natural Earth's 1:110m Admin 0",
    "countries (vector data, version 4.1.0), by scripts/build-dashboard.mjs with",
    "d3-geo " + version("d3-geo") + " and topojson-client " + version("topojson-client") + ".",
    "",
    "Natural Earth: Free vector and raster map data @ naturalearthdata.com.",
    "All versions of Natural Earth raster and vector map data found on the",
    "Natural Earth website are in the public domain. No permission is needed",
    "to use Natural Earth.",
    "",
    "Country borders are Natural Earth's, drawn as they are there; footfall",
    "takes no position on any of them.",
  ].join("\n");
  const files = {
    "licenses/uPlot.LICENSE.txt": `uPlot ${version("uplot")} (https://github.com/leeoniya/uPlot), bundled in app.*.js and app.*.css\n\n${uplot}\n`,
    "licenses/world-atlas.LICENSE.txt": `world-atlas ${version("world-atlas")} (https://github.com/topojson/world-atlas), the source of map.*.svg\n\n${atlas}\n`,
    "licenses/natural-earth.NOTICE.txt": `${naturalEarth}\n`,
  };
  files["licenses/NOTICES.txt"] =
    "Third-party software and data in footfall's dashboard\n" +
    "=====================================================\n\n" +
    Object.values(files).join("\n----------------------------------------------------------------------\n\n");
  return files;
}

const hash8 = (text) => createHash("sha256").update(text).digest("hex").slice(0, 8);
const sha256 = (text) => createHash("sha256").update(text).digest("hex");

const TYPES = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
  txt: "text/plain; charset=utf-8",
};

async function build() {
  const served = new Map(); // path in dist → { text, immutable }
  const hashed = (stem, ext, text) => {
    const name = `${stem}.${hash8(text)}.${ext}`;
    served.set(name, { text, immutable: true });
    return name;
  };
  const js = hashed("app", "js", await buildJs());
  const css = hashed("app", "css", buildCss());
  const map = hashed("map", "svg", buildMap());
  const favicon = hashed("favicon", "svg", readFileSync(join(ui, "favicon.svg"), "utf8"));
  for (const [name, text] of Object.entries(licenses())) served.set(name, { text, immutable: false });

  // Relative URLs, so the page also works under a reverse proxy's prefix.
  const names = { "app.js": js, "app.css": css, "map.svg": map, "favicon.svg": favicon, licenses: "licenses/NOTICES.txt" };
  const html = readFileSync(join(ui, "index.html"), "utf8").replace(/\{\{([\w.]+)\}\}/g, (m, key) => {
    if (!(key in names)) throw new Error(`index.html names an unknown asset ${m}`);
    return `./${names[key]}`;
  });
  served.set("index.html", { text: html, immutable: false });

  const files = new Map();
  const manifest = [];
  const sizes = [];
  for (const [name, { text, immutable }] of [...served].sort(([a], [b]) => a.localeCompare(b))) {
    const bytes = Buffer.from(text);
    const gz = gzipSync(bytes, { level: 9 });
    files.set(name, bytes);
    files.set(`${name}.gz`, gz);
    manifest.push({
      path: name,
      content_type: TYPES[name.split(".").pop()],
      bytes: bytes.length,
      sha256: sha256(bytes),
      gzip: `${name}.gz`,
      immutable,
    });
    sizes.push({ name, bytes: bytes.length, gz: gz.length });
  }
  // No gzip sizes in the manifest: they depend on the zlib that made them,
  // and the manifest must be the same on every machine (see --check).
  files.set(
    "manifest.json",
    Buffer.from(
      JSON.stringify(
        {
          generated_by: "scripts/build-dashboard.mjs: do not edit; run `node scripts/build-dashboard.mjs`",
          index: "index.html",
          files: manifest,
        },
        null,
        2,
      ) + "\n",
    ),
  );
  // The table the Rust side embeds (dashboard/src/assets.rs includes it):
  // every served file with its type, caching and gzipped copy, so the
  // binary serves exactly what this build wrote.
  const rust = [
    "// Written by scripts/build-dashboard.mjs: do not edit; run `node scripts/build-dashboard.mjs`.",
    "// (path, content type, immutable, bytes, gzipped bytes)",
    "&[",
    ...manifest.map(
      (f) =>
        `    (${JSON.stringify(f.path)}, ${JSON.stringify(f.content_type)}, ${f.immutable}, ` +
        `include_bytes!(${JSON.stringify(f.path)}), include_bytes!(${JSON.stringify(f.gzip)})),`,
    ),
    "]",
    "",
  ].join("\n");
  files.set("assets.rs", Buffer.from(rust));
  const firstLoad = sizes.filter((s) => !s.name.startsWith("licenses/"));
  return { files, sizes, firstLoad };
}

function listDist(dir = dist) {
  let out = [];
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out = out.concat(listDist(p));
    else out.push(relative(dist, p));
  }
  return out;
}

// A .gz in dist/ is current if it unpacks to the file: another zlib may
// pack the same bytes differently, and that is no reason to rebuild.
function isCurrent(name, want) {
  let have;
  try {
    have = readFileSync(join(dist, name));
  } catch {
    return false;
  }
  if (name.endsWith(".gz")) {
    try {
      return gunzipSync(have).equals(gunzipSync(want));
    } catch {
      return false;
    }
  }
  return have.equals(want);
}

const { files, sizes, firstLoad } = await build();
const present = listDist();
const total = firstLoad.reduce((a, s) => a + s.gz, 0);

if (process.argv.includes("--check")) {
  const stale = [...files].filter(([name, want]) => !isCurrent(name, want)).map(([name]) => name);
  const extra = present.filter((name) => !files.has(name));
  if (stale.length || extra.length) {
    for (const f of stale) console.error(`stale or missing: dashboard/ui/dist/${f}`);
    for (const f of extra) console.error(`not built by this script: dashboard/ui/dist/${f}`);
    console.error(
      "dashboard/ui/dist/ is not what the dashboard's sources build: " +
        "run `node scripts/build-dashboard.mjs` and commit what it writes",
    );
    process.exit(1);
  }
  console.log(`dashboard/ui/dist/ is up to date (${files.size} files)`);
} else {
  for (const name of present) if (!files.has(name)) rmSync(join(dist, name));
  for (const [name, bytes] of files) {
    mkdirSync(dirname(join(dist, name)), { recursive: true });
    writeFileSync(join(dist, name), bytes);
  }
  console.log(`wrote ${files.size} files to dashboard/ui/dist/`);
  for (const s of sizes) {
    console.log(`  ${s.name.padEnd(36)} ${String(s.bytes).padStart(7)} B   gzip ${String(s.gz).padStart(6)} B`);
  }
}
const kb = (n) => (n / 1000).toFixed(1);
console.log(
  `first load gzipped (${firstLoad.map((s) => s.name.split(".")[0]).join(", ")}): ` +
    `${total} B = ${kb(total)} kB (budget ${kb(BUDGET)} kB)`,
);
if (total > BUDGET) {
  console.error(`over budget by ${total - BUDGET} B`);
  process.exit(1);
}

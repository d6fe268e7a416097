#!/usr/bin/env node
// Builds footfall's tracker as served: /script.js and the 32 variants at
// Plausible's paths (/js/script.<ext>….js), minified with terser, into
// collector/src/tracker/dist/, which is committed and embedded in the binary
// by collector/src/scripts.rs. Nothing is built at run time.
//
//   npm ci --prefix scripts/tracker-build --ignore-scripts   (once: terser, pinned)
//   node scripts/build-tracker.mjs            writes collector/src/tracker/dist/
//   node scripts/build-tracker.mjs --check    exits 1 if what is there is not
//                                             what it would write
//
// Run it after any change to collector/src/tracker.js or
// collector/src/tracker/*.js, and commit what it writes.

import { readFileSync, readdirSync, writeFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "collector/src");
const dist = join(src, "tracker/dist");

// The extensions a variant's path may name, in the order their fragments
// are put and their bits are numbered (scripts.rs's EXTENSIONS, whose
// test checks every file name below against its own): `hash` before
// anything reads it, and the tagged-events rule for a link before the
// outbound and download rules it overrides. `manual` adds nothing: it
// takes the automatic views away.
const EXTENSIONS = [
  ["hash", "hash.js"],
  ["manual", null],
  ["tagged-events", "tagged-events.js"],
  ["outbound-links", "outbound-links.js"],
  ["file-downloads", "file-downloads.js"],
];
const MANUAL = 1 << 1;
// The extensions that watch clicks, and so need links.js.
const LINKS = (1 << 2) | (1 << 3) | (1 << 4);

let terser;
try {
  terser = createRequire(join(root, "scripts/tracker-build/package.json"))("terser");
} catch (e) {
  console.error(
    "scripts/build-tracker.mjs: terser is not installed; run\n" +
      "  npm ci --prefix scripts/tracker-build --ignore-scripts\n" +
      "(scripts/test.sh does it too)",
  );
  process.exit(2);
}

const read = (path) => readFileSync(join(src, path), "utf8");

// A variant's file name: its extensions in EXTENSIONS order.
function name(mask) {
  return ["script", ...EXTENSIONS.filter((_, i) => mask & (1 << i)).map(([n]) => n), "js"].join(".");
}

// The source of a variant: the core with the fragments at its `@variants`
// line, and without its automatic views (from `@auto` to `@end auto`) if
// manual.
function compose(mask) {
  const lines = read("tracker.js").split("\n");
  if (lines.at(-1) === "") lines.pop();
  let out = "", auto = false;
  for (const raw of lines) {
    const line = raw.replace(/\r$/, "");
    const t = line.trim();
    if (t === "// @variants") {
      if (mask & LINKS) out += read("tracker/links.js");
      EXTENSIONS.forEach(([, file], i) => {
        if (mask & (1 << i) && file) out += read(join("tracker", file));
      });
    } else if (t.startsWith("// @auto")) {
      auto = true;
    } else if (t === "// @end auto") {
      auto = false;
    } else if (!(auto && mask & MANUAL)) {
      out += line + "\n";
    }
  }
  return out;
}

// terser's defaults: its safe transforms only (no `unsafe*` option), so
// the same behaviour in fewer bytes, and local names mangled (the tracker
// is one function: it declares no global). ES2015 is what the sources
// already need (arrow functions, spread).
const OPTIONS = {
  ecma: 2015,
  compress: {},
  mangle: true,
  format: { comments: false },
};

async function build() {
  const files = new Map();
  const table = [];
  for (let mask = 0; mask < 1 << EXTENSIONS.length; mask++) {
    const { code } = await terser.minify(compose(mask), OPTIONS);
    files.set(name(mask), code + "\n");
    table.push(`    (${JSON.stringify(name(mask))}, include_str!(${JSON.stringify(name(mask))})),`);
  }
  const version = JSON.parse(
    readFileSync(join(root, "scripts/tracker-build/node_modules/terser/package.json"), "utf8"),
  ).version;
  files.set(
    "variants.rs",
    "// Written by scripts/build-tracker.mjs (terser " +
      version +
      "): do not edit; run\n" +
      "// `node scripts/build-tracker.mjs`. Each variant's file name and its text,\n" +
      "// indexed by its extensions' bits.\n" +
      "[\n" +
      table.join("\n") +
      "\n]\n",
  );
  return files;
}

const files = await build();
const present = (() => {
  try {
    return readdirSync(dist);
  } catch {
    return [];
  }
})();

if (process.argv.includes("--check")) {
  const stale = [...files].filter(([f, text]) => {
    try {
      return readFileSync(join(dist, f), "utf8") !== text;
    } catch {
      return true;
    }
  });
  const extra = present.filter((f) => !files.has(f));
  if (stale.length || extra.length) {
    for (const [f] of stale) console.error(`stale or missing: collector/src/tracker/dist/${f}`);
    for (const f of extra) console.error(`not built by this script: collector/src/tracker/dist/${f}`);
    console.error(
      "collector/src/tracker/dist/ is not what the tracker's sources build: " +
        "run `node scripts/build-tracker.mjs` and commit what it writes",
    );
    process.exit(1);
  }
  console.log(`collector/src/tracker/dist/ is up to date (${files.size} files)`);
} else {
  mkdirSync(dist, { recursive: true });
  for (const f of present) if (!files.has(f)) rmSync(join(dist, f));
  for (const [f, text] of files) writeFileSync(join(dist, f), text);
  console.log(`wrote ${files.size} files to collector/src/tracker/dist/`);
}

#!/usr/bin/env bash
# Runs every footfall test on a fresh machine: installs what the tests need
# (Debian's Chromium for the tracker's browser test, Plausible's npm tracker
# for the browser test that points it at footfall, terser for the test that
# the built tracker is up to date, a Python virtual
# environment for the interop suite), checks formatting and lints, runs the
# Rust tests (unit, property, end-to-end, browser), then the interop suite
# against pyarrow, DuckDB, Apache DataSketches for Python, Polars and Spark
# SQL (PySpark, which needs a Java runtime: Debian's OpenJDK 17).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
# shellcheck source=scripts/apt-install.sh
. scripts/apt-install.sh

packages=()
command -v "${CHROMIUM:-chromium}" >/dev/null 2>&1 || packages+=(chromium)
# PySpark 4 runs on Java 17 or newer.
java_major() { java -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n 1; }
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ] 2>/dev/null; then
  packages+=(openjdk-17-jre-headless)
fi
# Debian's own python3 needs python3-venv for `python3 -m venv`.
python3 -c 'import ensurepip' >/dev/null 2>&1 || packages+=(python3-venv)
# tests/interop/test_deploy.py: `systemd-analyze verify` on deploy/'s unit,
# `nginx -t` on its server block, with a certificate made by openssl.
command -v systemd-analyze >/dev/null 2>&1 || packages+=(systemd)
PATH="$PATH:/usr/sbin" command -v nginx >/dev/null 2>&1 || packages+=(nginx)
command -v openssl >/dev/null 2>&1 || packages+=(openssl)
# Time-dependent end-to-end tests move the server's clock with libfaketime.
command -v faketime >/dev/null 2>&1 || packages+=(faketime)
if [ ${#packages[@]} -gt 0 ]; then
  step "installing Debian packages: ${packages[*]}"
  apt_install "${packages[@]}"
fi

venv=tests/interop/.venv
if [ ! -x "$venv/bin/pip" ]; then
  step "creating $venv"
  rm -rf "$venv" # a half-made one from an interrupted run
  python3 -m venv "$venv"
fi
step "installing the interop suite's Python packages (pinned)"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/requirements.txt

# npm packages, each pinned by its folder's package-lock.json and
# reinstalled only when that lock file changes: Plausible's official
# tracker (@plausible-analytics/tracker) for the browser test that points it
# at footfall, and terser, with which a test checks that
# collector/src/tracker/dist/ is what scripts/build-tracker.mjs builds
# (and dashboard/ui/dist/ what scripts/build-dashboard.mjs builds).
npm_ci() { # folder, what it is for
  if ! cmp -s "$1/package-lock.json" "$1/node_modules/.installed-lock.json"; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "scripts/test.sh: npm not found; it installs $1 (Node.js with npm is needed)" >&2
      exit 1
    fi
    step "installing $2 (npm ci, pinned)"
    npm ci --prefix "$1" --ignore-scripts --no-audit --no-fund --loglevel=error
    cp "$1/package-lock.json" "$1/node_modules/.installed-lock.json"
  fi
}
npm_ci tests/e2e/plausible "Plausible's tracker for the browser test"
npm_ci scripts/tracker-build "terser, which builds the tracker"
npm_ci scripts/dashboard-build "uPlot, the world map's data and terser, from which a test checks the dashboard's dist/"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Rust tests: unit, property, end-to-end, browser"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

step "interop tests: pyarrow, DuckDB, datasketches, Polars, Spark SQL, deploy/"
cargo build --locked --bin footfall
FOOTFALL_BIN="$PWD/target/debug/footfall" "$venv/bin/python" -m pytest tests/interop -q

"""Every fenced code block in README.md, run (or compared) as a reader would.

Each block is one test (`test_block[README.md:LINE:lang]`), run in the
README's order, since later blocks use what earlier ones made (the server,
the installed `footfall`). By info string:

- `sh`: `bash -euo pipefail` on the block's text. `sql`: DuckDB in this
  process (`duckdb.connect()`), each statement executed and fetched.
  `python`: this venv's python (pyarrow, duckdb, polars, datasketches,
  pyspark) as a subprocess. `html` (the tracker tag): put verbatim in a
  page at `http://<data-domain>/`, loaded in headless Chromium, with the
  tag's src host (stats.example.com over https, or 127.0.0.1:8080) made
  to reach a footfall of this test's by Chromium's own flags (see
  run_html), not by editing the tag; the view must be counted. `ini` /
  `nginx`: must be an exact run of lines of deploy/footfall.service /
  deploy/nginx.conf. `text`: output, not run.
  A block without an info string, or with another one, fails.
- A block that is only `./scripts/test.sh` is the suite this file is part
  of: not run (it would recurse), but it must exist, be executable and run
  tests/interop.
- `<!-- readme-test: needs-network -->` on the line before a block: not
  run (DuckDB's community extension is a download this machine cannot
  make), and exactly the blocks with `INSTALL datasketches FROM community`
  must carry it, so nothing else can hide behind the marker.
- Query blocks must find rows: a SELECT returning no rows (or one row of
  zeros and nulls), a `footfall report` printing `(no views in this
  range)`, `[]`, a bare CSV header or zero totals, a Polars frame of
  shape (0, …), a Spark `show()` with no rows, a lone `0`: each fails.
  The data is of TODAY (UTC), so a README whose queries name fixed dates
  prints nothing and fails here, which is the bug this test exists for
  (pasted examples with November dates printed 0 rows).

The environment, the same for every block:
- cwd: a fresh folder under the repo's `target/` holding `footfall-data`
  of today for sites `example.com` and `localhost` (countries too), made
  by the real server (FOOTFALL_BIN serve, browser beacons, SIGTERM), so
  the README's relative `footfall-data/...` paths resolve. Being under the
  repo, `cargo run` there finds the workspace by cargo's own upward search
  while `./footfall-data` still lands in the temporary folder; a block
  with `cargo install` runs in the repo root (its `--path .`).
- CARGO_TARGET_DIR is the repo's `target/` (cargo install reuses the
  release build of `cargo run --release`), CARGO_INSTALL_ROOT a temporary
  folder whose `bin/` is first on PATH, so `footfall` in later blocks is
  the one the README installed and ~/.cargo/bin is never touched.
- A block that runs forever (`cargo run ... -- serve`, `footfall serve`)
  must be alone in its block. It runs in the background with
  FOOTFALL_LISTEN=127.0.0.1:0 (8080 may be busy here), the port read from
  its `listening addr=` log line (FOOTFALL_DASHBOARD_LISTEN too, where
  the binary has that listener), and stays up while the blocks after it
  name 127.0.0.1:8080 / localhost:8080; before
  any other sh, sql or python block (the README stops it, then queries),
  or the next server block, or at the end, it gets SIGINT (Ctrl-C) and
  must exit 0. The first one is the README's "Try it": headless
  Chromium opens `http://localhost:PORT/`, and the page's own tracker must
  count a view under site `localhost` (checked with `footfall report`
  after the stop). A `*.mmdb` file a server block names is given the
  test's GeoIP database under that name.
- The one text substitution: in `sh` blocks, `127.0.0.1:8080` and
  `localhost:8080` become the running server's address. A block with a
  `# HTTP/1.1 NNN ...` comment must print that status line.

README_TEST_FILE=PATH runs all this on another markdown file (a draft).
README_TEST_FAST=1 makes `cargo run --release --` and `footfall` both mean
FOOTFALL_BIN (the debug build), through a `cargo` shim on PATH, and `cargo
install` a link to it: a release build takes 10+ minutes on a 2-core
machine, too slow to iterate on. The default, which CI runs, is the real
commands: what a reader types must build and run.
"""

import http.client
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import duckdb
import pytest

from conftest import FOOTFALL, GEO_DB

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# README_TEST_FILE: another markdown file, to try this test on a draft.
README = os.environ.get("README_TEST_FILE") or os.path.join(ROOT, "README.md")
FAST = os.environ.get("README_TEST_FAST") == "1"
NEEDS_NETWORK = "<!-- readme-test: needs-network -->"
EXTENSION = "INSTALL datasketches FROM community"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0"
# Headless Chromium's own User-Agent says HeadlessChrome, a bot to footfall.
CHROME_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/142.0.0.0 Safari/537.36")
COPIES = {"ini": os.path.join(ROOT, "deploy", "footfall.service"),
          "nginx": os.path.join(ROOT, "deploy", "nginx.conf")}
KINDS = {"sh", "sql", "python", "html", "text", "ini", "nginx"}
DEFAULT_ADDRS = ("127.0.0.1:8080", "localhost:8080")
# Generous: the first `cargo run --release` builds the release binary.
BUILD_TIMEOUT = 300 if FAST else 3600
RUN_TIMEOUT = 900


try:
    SERVE_HELP = subprocess.run([FOOTFALL, "serve", "--help"], capture_output=True, text=True).stdout
except OSError:  # not built: the seeding fails, saying so
    SERVE_HELP = ""
# The operator listener (/metrics) has a default port of its own: 0 here too.
OPERATOR = ["--dashboard-listen", "127.0.0.1:0"] if "--dashboard-listen" in SERVE_HELP else []
# The README's "Test it" block: the suite this test is part of.
SUITE = "./scripts/test.sh"


# --- Reading the README ------------------------------------------------------

class Block:
    def __init__(self, line, lang, text, marked):
        self.line, self.lang, self.text, self.marked = line, lang, text, marked

    @property
    def first(self):
        return next((l for l in self.text.splitlines() if l.strip()), "")

    def __repr__(self):
        return f"{os.path.basename(README)}:{self.line}:{self.lang or '(none)'}"


def parse_blocks(text):
    """Fenced blocks (``` or ~~~, indented or not): the line of the opening
    fence, its info string's first word, the text dedented by the fence's
    indent, and whether the previous non-blank line is the marker."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^(\s*)(`{3,}|~{3,})\s*([^`\s]*)", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3)
        prev = next((l.strip() for l in reversed(lines[:i]) if l.strip()), "")
        body, j = [], i + 1
        while j < len(lines) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j].lstrip())
            j += 1
        blocks.append(Block(i + 1, lang, "\n".join(body) + "\n", prev == NEEDS_NETWORK))
        i = j + 1
    return blocks


def read_readme():
    with open(README, encoding="utf-8") as f:
        return f.read()


BLOCKS = parse_blocks(read_readme())


def commands(text):
    """The block's shell lines without comments and blank lines, with
    backslash continuations joined."""
    joined = re.sub(r"\\\n", " ", text)
    return [l.strip() for l in joined.splitlines() if l.strip() and not l.strip().startswith("#")]


def is_server(cmd):
    return bool(re.search(r"(^|[\s;&|(])(cargo run\b.*--\s+serve|footfall serve)\b", cmd))


def describe(block, extra=""):
    return f"{block!r} `{block.first}`\n{extra}"


def check(ok, block, extra):
    """Fails the test with the block's place, first line and `extra`
    (its output), without a traceback of this file."""
    if not ok:
        pytest.fail(describe(block, extra), pytrace=False)


# --- The environment -----------------------------------------------------------

def wait_listening(proc, log, timeout):
    """Reads `proc`'s stderr into `log` (a list, drained on a thread from
    then on) until the `listening addr=` line; returns the address."""
    found = {}
    ready = threading.Event()

    def drain():
        for line in proc.stderr:
            log.append(line)
            m = re.search(r"listening.*\baddr=(\S+)", line)
            if m and not ready.is_set():
                found["addr"] = m.group(1)
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    ready.wait(timeout)
    return found.get("addr")


def metrics_addr(log, addr):
    """Where /metrics is: the operator listener's `at=` when the binary has
    one (logged right after `listening`), else the collector's address."""
    if not OPERATOR:
        return addr
    deadline = time.time() + 10
    while time.time() < deadline:
        for line in list(log):
            m = re.search(r"operator endpoints.*\bat=(\S+)", line)
            if m:
                return m.group(1)
        time.sleep(0.1)
    raise AssertionError("no `operator endpoints ... at=` log line:\n" + "".join(log))


def seed(data_dir):
    """Today's data for example.com and localhost from the real server."""
    proc = subprocess.Popen(
        [FOOTFALL, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir,
         "--geoip-db", GEO_DB, "--trusted-proxy", "127.0.0.1/32", *OPERATOR],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = []
    addr = wait_listening(proc, log, 60)
    assert addr, "footfall did not start:\n" + "".join(log)
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    beacons = []
    for i, (page, ref) in enumerate([("/pricing", "https://news.ycombinator.com/"), ("/", None),
                                     ("/docs", "https://www.google.com/search?q=x"),
                                     ("/pricing", "https://example.com/"),
                                     ("/?utm_source=newsletter&utm_medium=email&utm_campaign=fall", None)]):
        beacons.append(({"n": "pageview", "u": f"https://example.com{page}", "d": "example.com", "r": ref},
                        f"203.0.113.{i + 1}"))
    for i, page in enumerate(["/", "/", "/about"]):
        beacons.append(({"n": "pageview", "u": f"http://localhost:8080{page}", "d": "localhost"},
                        f"198.51.100.{i + 1}"))
    for body, address in beacons:
        conn.request("POST", "/api/event", body=json.dumps(body),
                     headers={"Content-Type": "text/plain", "User-Agent": UA, "X-Forwarded-For": address})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 202 and resp.getheader("X-Footfall-Dropped") is None, (body, resp.status)
    conn.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, "".join(log)


def report_views(data_dir, site):
    out = subprocess.run([FOOTFALL, "report", "--data-dir", data_dir, "--site", site, "--format", "json"],
                         check=True, capture_output=True, text=True).stdout
    rows = json.loads(out)
    return rows[0]["views"] if rows else 0


CARGO_SHIM = """#!/usr/bin/env bash
# README_TEST_FAST: `cargo run --release -- ARGS` runs FOOTFALL_BIN ARGS and
# `cargo install` copies it; anything else is the real cargo.
if [ "${1:-}" = run ] && [ "${2:-}" = --release ] && [ "${3:-}" = -- ]; then
  shift 3; exec "$FOOTFALL_BIN" "$@"
fi
if [ "${1:-}" = install ]; then
  mkdir -p "$CARGO_INSTALL_ROOT/bin" && ln -sf "$FOOTFALL_BIN" "$CARGO_INSTALL_ROOT/bin/footfall"; exit
fi
exec "$REAL_CARGO" "$@"
"""


class Env:
    """The shared state of one README run: folders, environment, server."""

    def __init__(self):
        os.makedirs(os.path.join(ROOT, "target"), exist_ok=True)
        self.work = tempfile.mkdtemp(prefix="readme-test-", dir=os.path.join(ROOT, "target"))
        self.scratch = tempfile.mkdtemp(prefix="readme-test-")
        self.install_root = os.path.join(self.scratch, "cargo-root")
        os.makedirs(os.path.join(self.install_root, "bin"))
        path = os.path.join(self.install_root, "bin") + os.pathsep + os.environ.get("PATH", "")
        self.env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(ROOT, "target"),
                        CARGO_INSTALL_ROOT=self.install_root, FOOTFALL_BIN=os.path.abspath(FOOTFALL))
        # Only these stay as they were: no FOOTFALL_* setting of the caller's.
        for k in list(self.env):
            if k.startswith("FOOTFALL_") and k != "FOOTFALL_BIN":
                del self.env[k]
        if FAST:
            shim = os.path.join(self.scratch, "shim")
            os.makedirs(shim)
            with open(os.path.join(shim, "cargo"), "w") as f:
                f.write(CARGO_SHIM)
            os.chmod(os.path.join(shim, "cargo"), 0o755)
            self.env["REAL_CARGO"] = shutil.which("cargo") or "cargo"
            path = shim + os.pathsep + path
        self.env["PATH"] = path
        self.data = os.path.join(self.work, "footfall-data")
        seed(self.data)
        self.seeded_localhost = report_views(self.data, "localhost")
        self.server = None  # (block, process, address, log, try_it)
        self.servers_seen = 0
        self.stop_failures = []

    def script(self, text):
        fd, path = tempfile.mkstemp(suffix=".sh", dir=self.scratch)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def start_server(self, block):
        self.stop_server()
        for name in re.findall(r"(\S+\.mmdb)\b", block.text):
            target = os.path.join(self.work, name)
            if not os.path.exists(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy(GEO_DB, target)
        env = dict(self.env, FOOTFALL_LISTEN="127.0.0.1:0")
        if OPERATOR:
            env["FOOTFALL_DASHBOARD_LISTEN"] = "127.0.0.1:0"
        proc = subprocess.Popen(["bash", "-euo", "pipefail", self.script(block.text)], cwd=self.work, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        log = []
        addr = wait_listening(proc, log, BUILD_TIMEOUT)
        if not addr:
            self.kill(proc)
            pytest.fail(describe(block, "no `listening addr=` log line; exit code "
                                 f"{proc.returncode}; stderr:\n" + "".join(log[-60:])), pytrace=False)
        self.servers_seen += 1
        self.server = (block, proc, addr, log, self.servers_seen == 1)
        return addr, metrics_addr(log, addr), log

    @staticmethod
    def kill(proc):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def stop_server(self):
        """SIGINT to the server's process group, as Ctrl-C sends it; must
        exit 0. Returns a problem or None (also kept in stop_failures)."""
        if self.server is None:
            return None
        block, proc, addr, log, try_it = self.server
        self.server = None
        os.killpg(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill(proc)
            code = "none: still running 60 s after SIGINT"
        problem = None
        if code != 0:
            problem = describe(block, f"exit code after SIGINT: {code}\nstderr:\n" + "".join(log[-40:]))
        elif try_it:
            views = report_views(self.data, "localhost")
            if views <= self.seeded_localhost:
                problem = describe(block, f"Chromium opened http://localhost:{addr.rsplit(':', 1)[1]}/ but "
                                   f"site localhost has {views} views, as many as seeded")
        if problem:
            self.stop_failures.append(problem)
        return problem

    def close(self):
        if self.server:
            self.kill(self.server[1])
            self.server = None
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def env():
    e = Env()
    yield e
    e.close()


# --- Checks ----------------------------------------------------------------------

def chromium():
    name = os.environ.get("CHROMIUM", "chromium")
    assert shutil.which(name), f"{name} is not installed (scripts/test.sh installs Debian's chromium)"
    return name


def open_in_chromium(url, scratch, extra=()):
    profile = tempfile.mkdtemp(dir=scratch)
    return subprocess.run(
        [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--user-agent={CHROME_UA}",
         "--disable-blink-features=AutomationControlled", "--window-size=1280,800",
         "--virtual-time-budget=5000", *extra, "--dump-dom", url],
        capture_output=True, text=True, timeout=120)


def metric(addr, name):
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf"^{re.escape(name)} (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def wait_metric(addr, name, above, seconds=15):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if metric(addr, name) > above:
            return True
        time.sleep(0.2)
    return False


def empty_outputs(out):
    """The signs of a query that found nothing, in `out`."""
    found = []
    lines = out.splitlines()
    for i, line in enumerate(lines):
        s = line.strip()
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if s == "(no views in this range)":
            found.append("a `footfall report` table with no rows")
        elif s == "[]":
            found.append("an empty JSON array")
        elif re.fullmatch(r"[a-z_]+(,[a-z_]+)*,(views|entries),visitors", s) and "," not in nxt:
            found.append(f"a CSV header with no rows after it: {s}")
        elif re.search(r"(^|\s|,)0[\s,]+0$", s) or re.search(r'"(views|entries)": 0\b', s):
            found.append(f"zero totals: {s}")
        elif s.startswith("shape: (0,"):
            found.append("a Polars frame of no rows")
        elif re.fullmatch(r"\+[-+]+\+", s) and re.fullmatch(r"\+[-+]+\+", nxt) and i > 0 \
                and lines[i - 1].strip().startswith("|"):
            found.append("a Spark show() with no rows")
        elif s in ("0", "0.0", "None", "Empty DataFrame"):
            found.append(f"a lone `{s}`")
    return found


def run_sh(env, block):
    text = block.text
    if any(a in text for a in DEFAULT_ADDRS):
        if env.server is None:
            check(False, block, "names 127.0.0.1:8080 but no server block ran before it")
        for a in DEFAULT_ADDRS:
            text = text.replace(a, env.server[2])
    cwd = ROOT if re.search(r"\bcargo install\b", text) else env.work
    p = subprocess.run(["bash", "-euo", "pipefail", env.script(text)], cwd=cwd, env=env.env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=BUILD_TIMEOUT if "cargo" in text else RUN_TIMEOUT)
    where = f"cwd {cwd}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr[-6000:]}"
    check(p.returncode == 0, block, f"exit code {p.returncode}\n{where}")
    for status in re.findall(r"^\s*#\s*(HTTP/1\.1 \d{3}\b.*)$", block.text, re.M):
        check(status.strip() in p.stdout, block, f"expected `{status.strip()}` in its output\n{where}")
    if re.search(r"(footfall|--)\s+report\b", text):
        empty = empty_outputs(p.stdout)
        check(p.stdout.strip() and not empty, block, f"a query that found nothing: {empty}\n{where}")


def run_sql(env, block):
    con = duckdb.connect()
    old = os.getcwd()
    os.chdir(env.work)
    try:
        for st in con.extract_statements(block.text):
            try:
                res = con.execute(st)
                rows = res.fetchall() if res.description else []
            except duckdb.Error as e:
                check(False, block, f"statement:\n{st.query}\nfailed: {e}")
            if st.type == duckdb.StatementType.SELECT:
                nothing = not rows or all(v in (None, 0) for r in rows for v in r)
                check(not nothing, block, f"statement:\n{st.query}\nfound nothing: {rows}")
    finally:
        os.chdir(old)
        con.close()


def run_python(env, block):
    p = subprocess.run([sys.executable, env.script(block.text)], cwd=env.work, env=env.env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    where = f"stdout:\n{p.stdout}\nstderr:\n{p.stderr[-6000:]}"
    check(p.returncode == 0, block, f"exit code {p.returncode}\n{where}")
    empty = empty_outputs(p.stdout)
    check(p.stdout.strip() and not empty, block, f"a query that found nothing: {empty}\n{where}")


def run_server(env, block):
    cmds = commands(block.text)
    check(len(cmds) == 1, block, f"a server command must be alone in its block, found {cmds}")
    addr, maddr, log = env.start_server(block)
    if env.server[4]:  # the "Try it": the page at / counts itself
        before = metric(maddr, "footfall_views_total")
        port = addr.rsplit(":", 1)[1]
        try:
            urllib.request.urlopen(f"http://{addr}/", timeout=10).close()
        except urllib.error.HTTPError as e:
            check(False, block, f"GET http://{addr}/ answered {e.code}: no page to try it on")
        b = open_in_chromium(f"http://localhost:{port}/", env.scratch)
        check(wait_metric(maddr, "footfall_views_total", before), block,
              f"Chromium opened http://localhost:{port}/ and no view was counted\n"
              f"chromium exit {b.returncode}; DOM:\n{b.stdout[:3000]}\nserver log:\n" + "".join(log[-20:]))


def lines_run(needle, hay):
    n, h = needle.rstrip("\n").splitlines(), hay.splitlines()
    return any(h[i:i + len(n)] == n for i in range(len(h) - len(n) + 1))


class TagServer(http.server.BaseHTTPRequestHandler):
    """What Chromium reaches for the html block: requests for the tag's
    collector (by its host, `collector`) are forwarded to the real footfall
    (`upstream`); anything else gets the page (`page`) at `/`."""
    page, upstream, collector = b"", "", ""

    def handle_one(self):
        m = re.match(r"^https?://([^/]+)", self.path)  # absolute form, as to a proxy
        host = m.group(1) if m else self.headers.get("Host", "")
        path = re.sub(r"^https?://[^/]+", "", self.path) or "/"
        if host.rsplit(":", 1)[0] == self.collector.rsplit(":", 1)[0] or host == self.collector:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else None
            conn = http.client.HTTPConnection(*self.upstream.rsplit(":", 1), timeout=30)
            keep = ("user-agent", "content-type", "origin", "referer")
            conn.request(self.command, path, body=body,
                         headers={k: v for k, v in self.headers.items() if k.lower() in keep})
            resp = conn.getresponse()
            status, headers, data = resp.status, resp.getheaders(), resp.read()
            conn.close()
        elif path == "/":
            status, headers, data = 200, [("Content-Type", "text/html; charset=utf-8")], self.page
        else:
            status, headers, data = 404, [], b""
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("connection", "transfer-encoding", "content-length", "keep-alive"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_OPTIONS = handle_one

    def log_message(self, *args):
        pass


def tls_context(scratch):
    import ssl
    cert, key = os.path.join(scratch, "tag-cert.pem"), os.path.join(scratch, "tag-key.pem")
    openssl = shutil.which("openssl")
    assert openssl, "openssl is not installed (scripts/test.sh installs it)"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=collector", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def run_html(env, block):
    """The tag, verbatim, on a page of the site it names (`http://SITE/`),
    in headless Chromium. Its src's host is made to reach a footfall of
    this test's: a host name through `--host-resolver-rules` (to a TLS
    forwarder, certificate errors ignored, when src is https); an address
    (`127.0.0.1:8080`) through `--proxy-server`, as Chromium cannot remap
    an address. The view must be counted."""
    m = re.search(r'data-domain="([^",]+)', block.text)
    src = re.search(r'\bsrc="(https?)://([^/"]+)/script\.js"', block.text)
    check(m and src, block, "a tracker tag names data-domain and an absolute src ending /script.js")
    site, scheme, collector = m.group(1), src.group(1), src.group(2)
    data = os.path.join(env.scratch, f"html-data-{block.line}")
    proc = subprocess.Popen([FOOTFALL, "serve", "--listen", "127.0.0.1:0", "--data-dir", data,
                             "--site", site, *OPERATOR],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = []
    addr = wait_listening(proc, log, 60)
    assert addr, "".join(log)
    maddr = metrics_addr(log, addr)
    handler = type("Tag", (TagServer,), {
        "page": f"<!doctype html><html><head>{block.text}</head><body>readme</body></html>".encode(),
        "upstream": addr, "collector": collector})
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)]
    port = lambda srv: srv.server_address[1]
    if re.fullmatch(r"[\d.]+(:\d+)?|\[[0-9a-f:]+\](:\d+)?", collector):
        flags = [f"--proxy-server=http://127.0.0.1:{port(servers[0])}",
                 "--proxy-bypass-list=<-loopback>"]  # loopback through the proxy too
    else:
        fwd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if scheme == "https":
            fwd.socket = tls_context(env.scratch).wrap_socket(fwd.socket, server_side=True)
        servers.append(fwd)
        flags = [f"--host-resolver-rules=MAP {site} 127.0.0.1:{port(servers[0])}, "
                 f"MAP {collector.rsplit(':', 1)[0]} 127.0.0.1:{port(fwd)}",
                 "--ignore-certificate-errors"]
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        before = metric(maddr, "footfall_views_total")
        b = open_in_chromium(f"http://{site}/", env.scratch, flags)
        counted = wait_metric(maddr, "footfall_views_total", before)
        check(counted, block, f"the tag on http://{site}/ counted no view; footfall's log:\n"
              + "".join(log[-10:]) + f"\nchromium exit {b.returncode}; "
              f"DOM:\n{b.stdout[:2000]}\nstderr:\n{b.stderr[-2000:]}")
    finally:
        for srv in servers:
            srv.shutdown()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


# --- The tests ---------------------------------------------------------------------

def test_readme_has_blocks():
    assert len(BLOCKS) >= 5, f"found {len(BLOCKS)} fenced blocks in README.md"


def test_every_block_names_a_known_kind():
    bad = [f"{b!r} `{b.first}`" for b in BLOCKS if b.lang not in KINDS]
    assert bad == [], f"blocks whose info string is not one of {sorted(KINDS)}"


def test_only_the_extension_blocks_are_marked_needs_network():
    marked = [repr(b) for b in BLOCKS if b.marked]
    extension = [repr(b) for b in BLOCKS if EXTENSION in b.text]
    assert marked == extension, f"marked {NEEDS_NETWORK}: {marked}; containing `{EXTENSION}`: {extension}"


@pytest.mark.parametrize("block", BLOCKS, ids=repr)
def test_block(env, block):
    if block.marked or block.lang == "text":
        # needs-network: checked by the marker test above; text: output.
        return
    if block.lang in COPIES:
        with open(COPIES[block.lang], encoding="utf-8") as f:
            src = f.read()
        check(lines_run(block.text, src), block,
              f"is not an exact run of lines of {os.path.relpath(COPIES[block.lang], ROOT)}")
        return
    if block.lang == "sh" and commands(block.text) == [SUITE]:
        # "Test it": the script that runs this very file; running it here
        # would recurse. That it exists and runs this suite is checked.
        script = os.path.join(ROOT, SUITE)
        check(os.access(script, os.X_OK), block, f"{SUITE} is not an executable file")
        with open(script, encoding="utf-8") as f:
            check("pytest tests/interop" in f.read(), block, f"{SUITE} does not run tests/interop")
        return
    server = block.lang == "sh" and any(is_server(c) for c in commands(block.text))
    if env.server and block.lang in ("sh", "sql", "python") and not server \
            and not any(a in block.text for a in DEFAULT_ADDRS):
        # The README stops a server (Ctrl-C) before it reads the files. A
        # bad stop is the server block's fault: the last test reports it.
        env.stop_server()
    if server:
        run_server(env, block)
    elif block.lang == "sh":
        run_sh(env, block)
    elif block.lang == "sql":
        run_sql(env, block)
    elif block.lang == "python":
        run_python(env, block)
    elif block.lang == "html":
        run_html(env, block)
    else:
        check(False, block, "unknown kind (see test_every_block_names_a_known_kind)")


def test_servers_stop_cleanly_on_sigint(env):
    """Runs after every block: the last server's stop, and the result of
    each earlier one's (each server block's Ctrl-C, and the Try-it view)."""
    env.stop_server()
    if env.stop_failures:
        pytest.fail("\n\n".join(env.stop_failures), pytrace=False)

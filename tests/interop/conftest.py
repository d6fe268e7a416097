"""The interop suite's one server run, shared by every test file.

Runs the real server on a free loopback port (with the test GeoIP database),
sends known traffic, stops it with SIGTERM, and hands the tests the data
folder, the truth (what was sent) and `footfall report`'s view of it.
"""

import glob
import http.client
import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections import defaultdict

import pyarrow as pa
import pytest

FOOTFALL = os.environ.get("FOOTFALL_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "target", "debug", "footfall"
)
GEO_DB = os.path.join(os.path.dirname(__file__), "..", "data", "geo-geolite2.mmdb")
SITE = "example.com"
VISITORS = 900
BEACONS = 3000

# Addresses of the test database's networks, and the country of each.
PLACES = [("203.0.113.{}", "DE"), ("198.51.100.{}", "FR"), ("2001:db8::{:x}", "BR"), ("100.65.0.{}", None)]
REFERRERS = [(None, None), ("https://www.google.com/search?q=x", "google.com"), (f"https://{SITE}/prev", None)]
CAMPAIGNS = [{}, {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "fall"}]

# The documented schema of every table (README "Output").
S, TS, I64, BIN = pa.string(), pa.timestamp("us", tz="UTC"), pa.int64(), pa.binary()
VISIT_COUNTS = [("visits", I64, False), ("bounces", I64, False), ("pageviews", I64, False),
                ("duration_s", I64, False)]
SCHEMAS = {
    "pages": [("page", S, False), ("views", I64, False), ("entries", I64, False), ("exits", I64, False),
              ("engaged_ms", I64, False), ("engagements", I64, False), ("scroll_sum", I64, False),
              ("scrolls", I64, False)],
    "sources": [("referrer", S, True), ("utm_source", S, True), ("utm_medium", S, True),
                ("utm_campaign", S, True), ("entries", I64, False)] + VISIT_COUNTS,
    "devices": [("browser", S, False), ("os", S, False), ("device", S, False), ("views", I64, False)],
    "countries": [("country", S, True), ("views", I64, False)],
    "visits": [("entry_page", S, False)] + VISIT_COUNTS,
}
# The custom events' tables (test_events.py runs a server that counts them).
EVENT_SCHEMAS = {
    "events": [("name", S, False), ("page", S, False), ("events", I64, False)],
    "event_props": [("name", S, False), ("key", S, False), ("value", S, False), ("events", I64, False)],
}


def dims_and_count(table):
    """The table's dimension columns (its strings) and its first count
    (`pages`: views; `visits`: visits)."""
    dims = [name for name, kind, _ in SCHEMAS[table] if kind == S]
    count = next(name for name, kind, _ in SCHEMAS[table] if kind == I64)
    return dims, count


def start_server(data_dir, *extra, env=None, log=None):
    """Starts `footfall serve` on free loopback ports; returns the process
    and its beacon listener's host and port. With `log` (a list), every
    line of its log is appended to it."""
    proc = subprocess.Popen(
        [FOOTFALL, "serve", "--listen", "127.0.0.1:0", "--dashboard-listen", "127.0.0.1:0", "--data-dir", data_dir,
         "--trusted-proxy", "127.0.0.1/32", "--site", SITE, "--geoip-db", GEO_DB, *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=env,
    )
    lines = log if log is not None else []
    for line in proc.stderr:
        lines.append(line)
        m = re.search(r" addr=(\S+)", line)
        if m:
            host, port = m.group(1).rsplit(":", 1)
            # Keep draining the log so the server never blocks on a full pipe.
            threading.Thread(target=lambda: [lines.append(l) for l in proc.stderr], daemon=True).start()
            return proc, host, int(port)
    raise RuntimeError("footfall did not start:\n" + "".join(lines))


def operator_address(log):
    """The operator listener's host and port, from a server's log (its line
    comes after the beacon listener's, so it is waited for)."""
    deadline = time.time() + 30
    while time.time() < deadline:
        for line in list(log):
            m = re.search(r"operator endpoints listening.* at=(\S+)", line)
            if m:
                host, port = m.group(1).rsplit(":", 1)
                return host, int(port)
        time.sleep(0.05)
    raise RuntimeError("no operator listener in the log:\n" + "".join(log))


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    """One server run for the whole suite: its data folder and the truth."""
    return serve_and_send(str(tmp_path_factory.mktemp("data")))


def serve_and_send(data_dir):
    """Runs footfall on `data_dir`, sends known traffic, stops it with
    SIGTERM, and returns the folder, the files of `pages`, what was sent
    (the truth) and what `footfall report` says of the pages."""
    proc, host, port = start_server(data_dir)
    rng = random.Random(20261125)
    truth_views = defaultdict(int)
    truth_visitors = defaultdict(set)
    truth_sources = defaultdict(int)
    truth_countries = defaultdict(int)
    truth_devices = defaultdict(int)
    # Each visitor's pages in order: all sent within minutes, so one visit
    # each (the stop ends them).
    pages_of = defaultdict(list)
    conn = http.client.HTTPConnection(host, port, timeout=30)
    for i in range(BEACONS):
        v = rng.randrange(VISITORS)
        # Long-tailed pages: the top ones pass 400 visitors, so their
        # sketches leave DataSketches' list/set modes for the HLL array.
        page = f"/p/{int(40 ** rng.random()) - 1}"
        address, country = PLACES[v % len(PLACES)]
        referrer, referrer_host = REFERRERS[rng.randrange(len(REFERRERS))]
        campaign = CAMPAIGNS[rng.randrange(len(CAMPAIGNS))]
        query = "&".join(f"{k}={val}" for k, val in campaign.items())
        width = rng.choice([None, 390, 1440])
        beacon = {"n": "pageview", "u": f"https://{SITE}{page}?q={i}&{query}", "d": SITE, "r": referrer}
        if width:
            beacon["w"] = width
        conn.request("POST", "/api/event", body=json.dumps(beacon), headers={
            "Content-Type": "text/plain",
            # One visitor, one browser: unique by its version.
            "User-Agent": f"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
            "X-Forwarded-For": address.format(v % 250 + 1),
        })
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 202
        assert resp.getheader("X-Footfall-Dropped") is None
        truth_views[page] += 1
        truth_visitors[page].add(v)
        pages_of[v].append(page)
        if referrer_host is not None or referrer is None:
            key = (referrer_host, campaign.get("utm_source"), campaign.get("utm_medium"), campaign.get("utm_campaign"))
            truth_sources[key] += 1
        truth_countries[country] += 1
        truth_devices[("Firefox", "Windows", "mobile" if width == 390 else "desktop")] += 1
    conn.close()
    # What the visits must sum to: per entry page (visits, bounces,
    # pageviews), and exits per page.
    truth_visits = defaultdict(lambda: [0, 0, 0])
    truth_exits = defaultdict(int)
    for pages in pages_of.values():
        t = truth_visits[pages[0]]
        t[0] += 1
        t[1] += len(pages) < 2
        t[2] += len(pages)
        truth_exits[pages[-1]] += 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    report = json.loads(subprocess.run(
        [FOOTFALL, "report", "--data-dir", data_dir, "--site", SITE, "--by", "page", "--format", "json"],
        check=True, capture_output=True, text=True,
    ).stdout)
    totals = json.loads(subprocess.run(
        [FOOTFALL, "report", "--data-dir", data_dir, "--site", SITE, "--format", "json"],
        check=True, capture_output=True, text=True,
    ).stdout)
    return {
        "dir": data_dir,
        "files": sorted(glob.glob(os.path.join(data_dir, "pages", "**", "*.parquet"), recursive=True)),
        "views": truth_views,
        "visitors": {p: len(s) for p, s in truth_visitors.items()},
        "all_visitors": len(set().union(*truth_visitors.values())),
        "report": {r["page"]: r for r in report},
        "totals": totals,
        "sources": dict(truth_sources),
        "countries": dict(truth_countries),
        "devices": dict(truth_devices),
        "visits": {page: v for page, (v, _, _) in truth_visits.items()},
        "visit_counts": {page: tuple(t) for page, t in truth_visits.items()},
        "exits": dict(truth_exits),
    }


def report(run, by):
    out = subprocess.run(
        [FOOTFALL, "report", "--data-dir", run["dir"], "--site", SITE, "--by", by, "--format", "json"],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


@pytest.fixture(scope="session")
def spark():
    """One local Spark for the suite (Spark SQL reads footfall's folders)."""
    from pyspark.sql import SparkSession

    with pytest.MonkeyPatch.context() as mp:
        # Loopback only: without it Spark binds to the host's outward address.
        mp.setenv("SPARK_LOCAL_IP", "127.0.0.1")
        session = (
            SparkSession.builder.master("local[2]").appName("footfall-interop")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.memory", "512m")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "2")
            # Spark's `timestamp` is an instant shown in the session's zone:
            # pin it, so `hour` reads back the same on any machine.
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("ERROR")
        try:
            yield session
        finally:
            session.stop()

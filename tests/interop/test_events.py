"""Interop: custom events and their allowed properties, read by the engines
an analyst already has.

A server of its own (with `--event-prop plan`) gets 300 visitors' pageviews
and known custom events; then pyarrow reads the `events` and `event_props`
tables in their documented schema, DuckDB sums them to what was sent, and
Apache DataSketches for Python unions their sketches to the distinct
visitors that converted, as `footfall report --by event` says.
"""

import glob
import http.client
import json
import random
import signal
from collections import defaultdict

import datasketches
import duckdb
import pyarrow.parquet as pq
import pytest

from conftest import EVENT_SCHEMAS, SITE, report, start_server

VISITORS = 300
PLANS = ["free", "pro", "team"]


@pytest.fixture(scope="module")
def events_run(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("events"))
    proc, host, port = start_server(data_dir, "--event-prop", "plan")
    rng = random.Random(20261207)
    sent = defaultdict(int)
    converted = defaultdict(set)
    plans = defaultdict(int)
    conn = http.client.HTTPConnection(host, port, timeout=30)

    def post(v, beacon):
        conn.request("POST", "/api/event", body=json.dumps(beacon), headers={
            "Content-Type": "text/plain",
            "User-Agent": f"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
            "X-Forwarded-For": f"203.0.113.{v % 250 + 1}",
        })
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 202

    for v in range(VISITORS):
        post(v, {"n": "pageview", "u": f"https://{SITE}/pricing", "d": SITE})
        for _ in range(rng.randrange(3)):
            name = rng.choice(["Signup", "Outbound Link: Click"])
            props = {"plan": rng.choice(PLANS), "secret": f"tok_{v}"} if name == "Signup" else {
                "url": "https://other.example/away?x=1"}
            post(v, {"n": name, "u": f"https://{SITE}/pricing", "d": SITE, "p": props})
            sent[name] += 1
            converted[name].add(v)
            if name == "Signup":
                plans[props["plan"]] += 1
    conn.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    run = {"dir": data_dir, "sent": sent, "converted": converted, "plans": plans}
    run["report"] = {r["event"]: r for r in report(run, "event")}
    return run


def test_pyarrow_reads_both_tables_in_their_documented_schema(events_run):
    for table in ("events", "event_props"):
        files = glob.glob(f"{events_run['dir']}/{table}/**/*.parquet", recursive=True)
        assert files, table
        schema = pq.read_schema(files[0])
        want = ["site", "hour"] + [name for name, _, _ in EVENT_SCHEMAS[table]] + ["visitors"]
        assert schema.names == want
        for name, kind, nullable in EVENT_SCHEMAS[table]:
            assert schema.field(name).type == kind and schema.field(name).nullable == nullable
        assert schema.metadata[b"footfall.schema_version"] == b"3"


def test_duckdb_sums_events_and_allowed_values_to_what_was_sent(events_run):
    d = events_run["dir"]
    # A connection of its own: a fetchone() leaves its result open.
    db = duckdb.connect()
    rows = db.execute(
        f"SELECT name, sum(events) FROM read_parquet('{d}/events/**/*.parquet', hive_partitioning = true) "
        "WHERE site = ? GROUP BY name", [SITE]).fetchall()
    assert {name: int(n) for name, n in rows} == dict(events_run["sent"])
    rows = db.execute(
        f"SELECT key, value, sum(events) FROM read_parquet('{d}/event_props/**/*.parquet', hive_partitioning = true) "
        "WHERE site = ? AND name = 'Signup' GROUP BY key, value", [SITE]).fetchall()
    assert {(k, v): int(n) for k, v, n in rows} == {("plan", p): n for p, n in events_run["plans"].items()}
    (urls,) = db.execute(
        f"SELECT list(DISTINCT value) FROM read_parquet('{d}/event_props/**/*.parquet') WHERE key = 'url'").fetchone()
    assert urls == ["other.example/away"]
    # No other key than the allowed one and the automatic url.
    (keys,) = db.execute(
        f"SELECT list(DISTINCT key ORDER BY key) FROM read_parquet('{d}/event_props/**/*.parquet')").fetchone()
    assert keys == ["plan", "url"]


def test_datasketches_unions_give_the_visitors_who_converted(events_run):
    unions = defaultdict(lambda: datasketches.hll_union(12))
    for path in glob.glob(f"{events_run['dir']}/events/**/*.parquet", recursive=True):
        t = pq.read_table(path, columns=["site", "name", "visitors"])
        for site, name, blob in zip(*(t.column(c).to_pylist() for c in ("site", "name", "visitors"))):
            if site == SITE:
                unions[name].update(datasketches.hll_sketch.deserialize(blob))
    for name, who in events_run["converted"].items():
        estimate = unions[name].get_estimate()
        assert estimate == pytest.approx(len(who), rel=0.05), name
        assert events_run["report"][name]["visitors"] == round(estimate), name
        rate = round(1000 * estimate / VISITORS) / 10
        assert events_run["report"][name]["conversion_rate"] == pytest.approx(rate, abs=0.15), name

"""footfall on S3: three collectors behind a round-robin balancer write to
one bucket and share one salt per day through another; the store stops
under load and comes back; a collector is killed and restarted.

The S3 server is moto in server mode on loopback (honours conditional puts
and ListObjectsV2). The readers are the real ones: pyarrow's S3FileSystem,
Polars' object-store reader, Apache DataSketches and `footfall report`.
"""

import json
import re
import os
import signal
import socket
import subprocess
import threading
import time
import http.client

import boto3
import datasketches
import polars as pl
import pyarrow.dataset as ds
import pyarrow.fs
import pytest

from conftest import FOOTFALL, SITE, operator_address, start_server

VENV_BIN = os.path.dirname(os.path.realpath(os.sys.executable))
CHROME = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/120.0.0.0 Safari/537.36")
ACCESS, SECRET, REGION = "footfall-test", "footfall-test-secret", "us-east-1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """moto_server on a free loopback port, with a data and a salt bucket."""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [os.path.join(VENV_BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.endpoint = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                assert time.time() < deadline, "moto_server did not start"
                time.sleep(0.1)
        self.s3 = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS,
                               aws_secret_access_key=SECRET, region_name=REGION)
        for bucket in ("analytics", "private"):
            self.s3.create_bucket(Bucket=bucket)

    def env(self):
        """What a collector or reader on this machine is given."""
        return dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION=REGION,
                    AWS_ENDPOINT_URL=self.endpoint, AWS_ALLOW_HTTP="true")

    def objects(self, bucket, prefix=""):
        """Every object of a bucket: key → bytes."""
        out = {}
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for o in page.get("Contents", []):
                out[o["Key"]] = self.s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        return out

    def stop(self):
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture
def moto():
    m = Moto()
    try:
        yield m
    finally:
        m.stop()


class Collector:
    """One `footfall serve` writing to the bucket, its state on local disk."""

    def __init__(self, moto, state_dir, *extra, env=None, data="s3://analytics/footfall",
                 salts=("--salt-store", "s3://private/salts")):
        self.log = []
        self.state_dir = str(state_dir)
        self.proc, host, port = start_server(
            data, "--state-dir", self.state_dir, *salts, *extra, env=env or moto.env(), log=self.log)
        self.conn = http.client.HTTPConnection(host, port, timeout=60)
        self.operator = operator_address(self.log)

    def view(self, visitor, page):
        """Sends one view; returns the X-Footfall-Dropped reason, if any."""
        self.conn.request("POST", "/api/event", body=json.dumps(
            {"n": "pageview", "u": f"https://{SITE}{page}", "d": SITE}), headers={
            "Content-Type": "text/plain", "User-Agent": CHROME,
            "X-Forwarded-For": f"10.{visitor // 65536 % 256}.{visitor // 256 % 256}.{visitor % 256}"})
        resp = self.conn.getresponse()
        resp.read()
        assert resp.status == 202, resp.status
        return resp.getheader("X-Footfall-Dropped")

    def health(self):
        conn = http.client.HTTPConnection(*self.operator, timeout=60)
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        return resp.status, resp.read().decode()

    def metric(self, name):
        conn = http.client.HTTPConnection(*self.operator, timeout=60)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def stop(self, sig=signal.SIGTERM):
        self.conn.close()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=120)
        assert sig != signal.SIGTERM or code == 0, "".join(self.log[-20:])


def footfall(moto, *args):
    out = subprocess.run([FOOTFALL, *args], env=moto.env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def report_totals(moto):
    return json.loads(footfall(moto, "report", "--data-dir", "s3://analytics/footfall", "--site", SITE,
                               "--format", "json"))[0]


def pyarrow_pages(moto, prefix="analytics/footfall"):
    """(views, visitors) of the pages table, read by pyarrow straight from
    the bucket and unioned by Apache DataSketches."""
    fs = pyarrow.fs.S3FileSystem(endpoint_override=f"127.0.0.1:{moto.port}", scheme="http",
                                 access_key=ACCESS, secret_key=SECRET, region=REGION)
    table = ds.dataset(f"{prefix}/pages", filesystem=fs, format="parquet",
                       partitioning="hive").to_table(columns=["views", "visitors"])
    union = datasketches.hll_union(12)
    for blob in table.column("visitors").to_pylist():
        union.update(datasketches.hll_sketch.deserialize(blob))
    # Settled as footfall's readers settle it (docs/numbers.md): the union
    # put twice through a fresh one, so the composite estimator is used
    # however the rows happened to be sliced.
    sketch = union.get_result(datasketches.tgt_hll_type.HLL_8)
    settled = datasketches.hll_union(12)
    settled.update(sketch)
    settled.update(sketch)
    return sum(table.column("views").to_pylist()), settled.get_estimate()


def round_robin(collectors, visitors, views_each):
    """Each visitor's views over the collectors in turn, as a round-robin
    balancer spreads them: a visitor's views land on different ones."""
    n = 0
    for v in range(visitors):
        for _ in range(views_each):
            assert collectors[n % len(collectors)].view(v, f"/p/{v % 50}") is None
            n += 1
    for c in collectors:
        c.stop()
    return n


def test_three_collectors_count_each_visitor_once_and_every_reader_agrees(moto, tmp_path):
    visitors = 3000
    # The control: a salt each, as without --salt-store. Every visitor
    # reaches two of the three, and is counted by both.
    apart = [Collector(moto, tmp_path / f"apart-{i}", data="s3://analytics/apart", salts=()) for i in range(3)]
    round_robin(apart, visitors, 2)
    _, counted_apart = pyarrow_pages(moto, "analytics/apart")
    sigma = 1.04 / 64  # lg_k 12
    assert abs(counted_apart - 2 * visitors) < 3 * sigma * 2 * visitors, counted_apart

    collectors = [Collector(moto, tmp_path / f"state-{i}") for i in range(3)]
    sent = round_robin(collectors, visitors, 2)

    views, estimate = pyarrow_pages(moto)
    assert views == sent
    assert abs(estimate - visitors) < 3 * sigma * visitors, f"{estimate} visitors, not {visitors}"
    print(f"3 collectors, {visitors} visitors each on two of them: {counted_apart:.0f} with a salt each, "
          f"{estimate:.0f} with one shared salt")

    storage = {"aws_access_key_id": ACCESS, "aws_secret_access_key": SECRET, "aws_region": REGION,
               "aws_endpoint_url": moto.endpoint, "aws_allow_http": "true"}
    polars_views = (pl.scan_parquet("s3://analytics/footfall/pages/**/*.parquet", storage_options=storage,
                                    hive_partitioning=True)
                    .select(pl.col("views").sum()).collect().item())
    assert polars_views == sent

    totals = report_totals(moto)
    assert totals["views"] == sent
    assert abs(totals["visitors"] - estimate) <= 0.5, (totals["visitors"], estimate)

    # What the bucket holds: table partitions and the lg_k record, each
    # file written once (one per collector and table), no salt.
    data = moto.objects("analytics", "footfall/")
    tops = {key.split("/")[1] for key in data}
    assert tops <= {"pages", "sources", "devices", "countries", "visits", "_state"}, tops
    assert [k for k in data if k.split("/")[1] == "_state"] == ["footfall/_state/lg_k"]
    pages = [k for k in data if k.startswith("footfall/pages/")]
    assert len(pages) == 3, pages
    salts = moto.objects("private")
    assert len(salts) == 1 and all(k.startswith("salts/salts/") for k in salts), list(salts)
    salt_hex = next(iter(salts.values())).strip()
    assert len(salt_hex) == 32
    # The privacy scan, over the bucket and each collector's state: no
    # salt, no address, no User-Agent.
    local = {}
    for c in collectors:
        for root, _, files in os.walk(c.state_dir):
            for f in files:
                with open(os.path.join(root, f), "rb") as fh:
                    local[os.path.join(root, f)] = fh.read()
        assert not any(os.path.basename(p).startswith("salt") for p in local), list(local)
    secret = bytes.fromhex(salt_hex.decode())
    for where, blob in list(data.items()) + list(local.items()):
        for needle in (salt_hex, secret, b"10.0.", b"Chrome/120", b"X11"):
            assert needle not in blob, f"{needle!r} in {where}"
        assert b"salt" not in where.encode()
    for c in collectors:
        assert salt_hex.decode() not in "".join(c.log)


def test_a_store_that_stops_under_load_loses_and_doubles_nothing(moto, tmp_path):
    c = Collector(moto, tmp_path / "state", "--flush-interval", "2s", "--checkpoint-interval", "1s")
    sent = 0

    def send(n):
        nonlocal sent
        for _ in range(n):
            assert c.view(sent, f"/p/{sent % 7}") is None
            sent += 1

    send(200)
    deadline = time.time() + 30
    while not moto.objects("analytics", "footfall/pages/"):
        assert time.time() < deadline, "no file written while the store was up"
        time.sleep(0.2)

    # The store stops answering (its process is stopped: connections hang,
    # as with a network partition) for 30 s while beacons keep coming.
    moto.proc.send_signal(signal.SIGSTOP)
    stopped = time.time()
    unhealthy = None
    while time.time() - stopped < 30:
        send(10)
        if unhealthy is None:
            status, why = c.health()
            if status == 503:
                unhealthy = why
        time.sleep(0.5)
    assert unhealthy is not None and "cannot write aggregates" in unhealthy, unhealthy
    assert c.metric("footfall_write_errors_total") > 0
    moto.proc.send_signal(signal.SIGCONT)

    deadline = time.time() + 90
    while c.health()[0] != 200:
        assert time.time() < deadline, c.health()
        time.sleep(0.5)
    send(100)
    c.stop()
    views, _ = pyarrow_pages(moto)
    assert views == sent, f"{views} in the bucket, {sent} answered 202"
    assert report_totals(moto)["views"] == sent


def test_a_collector_killed_and_restarted_loses_at_most_its_checkpoint_interval(moto, tmp_path):
    state = tmp_path / "state"
    c = Collector(moto, state, "--checkpoint-interval", "1s")
    for v in range(300):
        assert c.view(v, "/") is None
    # Past one checkpoint interval: everything sent is in the checkpoint.
    time.sleep(3)
    c.stop(signal.SIGKILL)
    again = Collector(moto, state)
    assert any("restored unwritten aggregates" in line for line in again.log), "".join(again.log)
    again.stop()
    assert report_totals(moto)["views"] == 300
    assert pyarrow_pages(moto)[0] == 300


def test_a_salt_store_inside_the_data_and_a_remote_data_dir_without_state_are_refused(moto, tmp_path):
    env = moto.env()
    inside = subprocess.run(
        [FOOTFALL, "serve", "--listen", "127.0.0.1:0", "--dashboard-listen", "off",
         "--data-dir", "s3://analytics/footfall", "--state-dir", str(tmp_path / "s"),
         "--salt-store", "s3://analytics/footfall/salts"],
        env=env, capture_output=True, text=True, timeout=60)
    assert inside.returncode != 0
    assert "inside the data dir" in inside.stderr, inside.stderr
    no_state = subprocess.run(
        [FOOTFALL, "serve", "--listen", "127.0.0.1:0", "--data-dir", "s3://analytics/footfall"],
        env=env, capture_output=True, text=True, timeout=60)
    assert no_state.returncode != 0 and "--state-dir" in no_state.stderr, no_state.stderr
    assert moto.objects("analytics") == {}, "a refused start writes nothing"


def libfaketime():
    """Debian's libfaketime (scripts/test.sh installs it)."""
    for root in ["/usr/lib"] + [os.path.join("/usr/lib", d) for d in os.listdir("/usr/lib")]:
        path = os.path.join(root, "faketime", "libfaketime.so.1")
        if os.path.exists(path):
            return path
    raise AssertionError("libfaketime.so.1 not found (Debian's faketime; scripts/test.sh installs it)")


def test_a_salt_store_unreachable_at_midnight_drops_counts_and_recovers(moto, tmp_path):
    """The store stops before the next day's salt could be fetched (an hour
    before midnight): at midnight the collector has no salt, does not make
    one of its own, answers 202 with no-salt and says so on /healthz; when
    the store is back it fetches the day's salt and counts again. Under
    libfaketime at 40 times the speed, so the hour takes 90 s."""
    env = dict(moto.env(), LD_PRELOAD=libfaketime(), FAKETIME="@2026-12-03 22:58:00 x40", FAKETIME_NO_CACHE="1")
    c = Collector(moto, tmp_path / "state", env=env)
    log = c.log
    moto.proc.send_signal(signal.SIGSTOP)

    before = 0
    deadline = time.time() + 240
    while True:
        assert time.time() < deadline, "midnight never came:\n" + "".join(log[-20:])
        dropped = c.view(before, "/late")
        if dropped == "no-salt":
            break
        assert dropped is None, dropped
        before += 1
        time.sleep(0.2)
    for v in range(20):
        assert c.view(10_000 + v, "/dropped") == "no-salt"
    status, why = c.health()
    assert status == 503 and "no salt for today" in why, (status, why)
    assert c.metric('footfall_beacons_dropped_total{reason="no-salt"}') == 21

    moto.proc.send_signal(signal.SIGCONT)
    deadline = time.time() + 60
    while c.view(20_000, "/probe") == "no-salt":
        assert time.time() < deadline, "the salt never came back:\n" + "".join(log[-20:])
        time.sleep(0.2)
    for v in range(30):
        assert c.view(30_000 + v, "/back") is None
    c.stop()

    def views(day):
        rows = json.loads(footfall(moto, "report", "--data-dir", "s3://analytics/footfall", "--site", SITE,
                                   "--from", day, "--to", day, "--by", "page", "--format", "json"))
        return {r["page"]: r["views"] for r in rows}

    assert views("2026-12-03") == {"/late": before}
    assert views("2026-12-04") == {"/probe": 1, "/back": 30}
    # One shared salt a day in the private store, the finished one gone
    # only after its grace, and never one on the local disk.
    assert not any("salt" in f for f in os.listdir(tmp_path / "state"))
    salts = sorted(moto.objects("private"))
    assert salts and all(k.startswith("salts/salts/2026-12-0") for k in salts), salts


def test_footfall_dashboard_reads_the_bucket_as_report_does(moto, tmp_path):
    c = Collector(moto, tmp_path / "state")
    for v in range(40):
        assert c.view(v, f"/p/{v % 4}") is None
    c.stop()
    proc = subprocess.Popen(
        [FOOTFALL, "dashboard", "--listen", "127.0.0.1:0", "--data-dir", "s3://analytics/footfall"],
        env=moto.env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        at = None
        for line in proc.stderr:
            m = re.search(r" at=(\S+)", line)
            if m:
                at = m.group(1)
                break
        assert at, "footfall dashboard did not start"
        host, port = at.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request("POST", "/api/v2/query", body=json.dumps(
            {"site_id": SITE, "date_range": "day", "metrics": ["pageviews", "visitors"]}))
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        assert resp.status == 200, answer
        totals = report_totals(moto)
        assert answer["results"][0]["metrics"] == [totals["views"], totals["visitors"]] == [40, 40]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0

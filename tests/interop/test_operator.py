"""The operator's /metrics, read by Prometheus' own text parser.

`prometheus_client`'s parser is the reference implementation of the format
Prometheus scrapes; footfall's renderer is hand-written, so a reader nobody
here wrote checks it. The server runs with its operator listener on a free
loopback port; the beacon listener's /metrics must be gone.
"""

import http.client
import json
import re
import signal
import subprocess
import tempfile
import threading

from prometheus_client.parser import text_string_to_metric_families

from conftest import FOOTFALL

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0"


def start(data_dir):
    proc = subprocess.Popen(
        [FOOTFALL, "serve", "--listen", "127.0.0.1:0", "--dashboard-listen", "127.0.0.1:0",
         "--data-dir", data_dir, "--site", "example.com"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    public = operator = None
    for line in proc.stderr:
        m = re.search(r" addr=(\S+)", line)
        if m:
            public = m.group(1)
        m = re.search(r"operator.* at=(\S+)", line)
        if m:
            operator = m.group(1)
            break
    assert public and operator, "footfall did not say where it listens"
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return proc, public, operator


def get(addr, path, method="GET", body=None, headers=None):
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    return r.status, r.read().decode()


def test_prometheus_parses_the_operator_metrics():
    with tempfile.TemporaryDirectory() as tmp:
        proc, public, operator = start(tmp)
        try:
            for i in range(5):
                body = json.dumps({"n": "pageview", "u": f"https://example.com/p{i}", "d": "example.com"})
                status, _ = get(public, "/api/event", "POST", body, {"User-Agent": UA})
                assert status == 202
            get(public, "/api/event", "POST", json.dumps({"u": "https://x.org/", "d": "x.org"}), {"User-Agent": UA})
            assert get(public, "/metrics")[0] == 404
            status, text = get(operator, "/metrics")
            assert status == 200
            families = {f.name: f for f in text_string_to_metric_families(text)}
            # The parser drops `_total` from counter family names.
            views = families["footfall_views"]
            assert views.type == "counter"
            assert [s.value for s in views.samples if s.name == "footfall_views_total"] == [5.0]
            dropped = {s.labels["reason"]: s.value for s in families["footfall_beacons_dropped"].samples
                       if s.name == "footfall_beacons_dropped_total"}
            assert dropped["unknown-site"] == 1.0
            assert set(dropped) >= {"bot", "excluded", "rate-limit", "url-not-on-site"}
            assert families["footfall_open_buckets"].type == "gauge"
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0

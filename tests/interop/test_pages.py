"""Interop: footfall's Parquet read by engines nobody here wrote.

On the suite's one server run (conftest.py: the real server, known traffic,
SIGTERM), checks every table with pyarrow and DuckDB, and the `pages`
sketches with Apache DataSketches for Python, against the truth and against
`footfall report`.
"""

import glob
import os
from collections import defaultdict

import datasketches
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import BIN, S, SCHEMAS, SITE, TS, dims_and_count, report


@pytest.mark.parametrize("table", sorted(SCHEMAS))
def test_every_table_reads_with_pyarrow_and_sums_in_duckdb(run, table):
    files = sorted(glob.glob(os.path.join(run["dir"], table, "**", "*.parquet"), recursive=True))
    assert files, f"serve wrote {table} files"
    fields = [pa.field("site", S, nullable=False), pa.field("hour", TS, nullable=False)]
    fields += [pa.field(name, kind, nullable=nullable) for name, kind, nullable in SCHEMAS[table]]
    fields.append(pa.field("visitors", BIN, nullable=False))
    for f in files:
        assert pq.read_table(f).schema.remove_metadata() == pa.schema(fields)
        assert pq.read_metadata(f).metadata[b"footfall.table"] == table.encode()
    dims, count = dims_and_count(table)
    rows = duckdb.sql(f"""
        SELECT {", ".join(dims)}, sum({count})::BIGINT
        FROM read_parquet('{run["dir"]}/{table}/**/*.parquet', hive_partitioning = true)
        WHERE site = '{SITE}' GROUP BY ALL
    """).fetchall()
    got = {tuple(r[:-1]) if len(dims) > 1 else r[0]: r[-1] for r in rows}
    truth = run["views"] if table == "pages" else run[table]
    assert got == dict(truth)


def test_pyarrow_reads_the_documented_schema(run):
    assert run["files"], "serve wrote pages files"
    expected = pa.schema([
        pa.field("site", pa.string(), nullable=False),
        pa.field("hour", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("page", pa.string(), nullable=False),
        pa.field("views", pa.int64(), nullable=False),
        pa.field("entries", pa.int64(), nullable=False),
        pa.field("exits", pa.int64(), nullable=False),
        pa.field("engaged_ms", pa.int64(), nullable=False),
        pa.field("engagements", pa.int64(), nullable=False),
        pa.field("scroll_sum", pa.int64(), nullable=False),
        pa.field("scrolls", pa.int64(), nullable=False),
        pa.field("visitors", pa.binary(), nullable=False),
    ])
    for f in run["files"]:
        table = pq.read_table(f)
        assert table.schema.remove_metadata() == expected
        meta = pq.read_metadata(f).metadata
        assert meta[b"footfall.schema_version"] == b"3"
        assert meta[b"footfall.hll.lg_k"] == b"12"
        assert meta[b"footfall.hll.type"] == b"HLL_4"
        assert meta[b"footfall.uniqueness_window"] == b"day"
        assert pq.ParquetFile(f).metadata.row_group(0).column(0).compression == "ZSTD"


def test_duckdb_views_per_page_match_truth_and_report(run):
    rows = duckdb.sql(f"""
        SELECT page, sum(views)::BIGINT AS views, min(date) AS first_day
        FROM read_parquet('{run["dir"]}/pages/**/*.parquet', hive_partitioning = true)
        WHERE site = '{SITE}'
        GROUP BY page
    """).fetchall()
    got = {page: views for page, views, _ in rows}
    assert got == dict(run["views"])
    assert got == {p: r["views"] for p, r in run["report"].items()}
    # The hive partition column is a real date.
    assert all(str(day).count("-") == 2 for _, _, day in rows)


def test_datasketches_unions_match_report_and_truth(run):
    table = pa.concat_tables(pq.read_table(f) for f in run["files"])
    unions = defaultdict(lambda: datasketches.hll_union(12))
    site_union = datasketches.hll_union(12)
    for page, blob in zip(table.column("page").to_pylist(), table.column("visitors").to_pylist()):
        sketch = datasketches.hll_sketch.deserialize(blob)
        assert sketch.lg_config_k == 12
        assert sketch.tgt_type == datasketches.tgt_hll_type.HLL_4
        unions[page].update(sketch)
        site_union.update(sketch)
    assert set(unions) == set(run["report"])
    modes = set()
    for page, union in unions.items():
        estimate = union.get_estimate()
        reported = run["report"][page]["visitors"]
        # Same sketches, same union algorithm: the same number within 0.1 %
        # (the implementations' composite estimators differ in the last
        # digits), plus the report's rounding to a whole visitor.
        assert abs(estimate - reported) <= 0.5 + 0.001 * reported, (page, estimate, reported)
        truth = run["visitors"][page]
        if truth < 100:
            assert round(estimate) == truth, (page, estimate, truth)
        else:
            assert abs(estimate - truth) <= 3 * 1.04 / 64 * truth, (page, estimate, truth)
        modes.add(truth > 400)
    assert modes == {True, False}, "both small (list/set) and large (HLL) sketches were checked"
    total = site_union.get_estimate()
    assert abs(total - run["totals"][0]["visitors"]) <= 0.5 + 0.001 * total
    assert abs(total - run["all_visitors"]) <= 3 * 1.04 / 64 * run["all_visitors"]


# Each `footfall report --by` dimension: its table, column and count.
DIMENSIONS = {
    "referrer": ("sources", "referrer", "entries"),
    "utm_source": ("sources", "utm_source", "entries"),
    "utm_campaign": ("sources", "utm_campaign", "entries"),
    "browser": ("devices", "browser", "views"),
    "device": ("devices", "device", "views"),
    "country": ("countries", "country", "views"),
    "day": ("pages", "CAST(date AS VARCHAR)", "views"),
    "entry_page": ("visits", "entry_page", "visits"),
}
# The visit numbers each adds (test_visits.py checks their values).
SOURCE_METRICS = {"visits", "bounce_rate", "visit_duration"}
METRICS = {
    "referrer": SOURCE_METRICS, "utm_source": SOURCE_METRICS, "utm_campaign": SOURCE_METRICS,
    "day": {"visits", "views_per_visit", "bounce_rate", "visit_duration"},
    "entry_page": {"bounce_rate", "visit_duration"},
}


@pytest.mark.parametrize("by", sorted(DIMENSIONS))
def test_report_by_every_dimension_matches_duckdb_and_datasketches(run, by):
    table, column, count = DIMENSIONS[by]
    rows = report(run, by)
    keys = {by, count, "visitors"} | METRICS.get(by, set())
    assert all(set(r) == keys for r in rows), rows[0]
    got = {r[by]: r for r in rows}
    sums = duckdb.sql(f"""
        SELECT {column} AS k, sum({count})::BIGINT AS n, list(visitors) AS sketches
        FROM read_parquet('{run["dir"]}/{table}/**/*.parquet', hive_partitioning = true)
        WHERE site = '{SITE}' GROUP BY k
    """).fetchall()
    assert {k: n for k, n, _ in sums} == {k: r[count] for k, r in got.items()}
    for k, _, sketches in sums:
        union = datasketches.hll_union(12)
        for blob in sketches:
            union.update(datasketches.hll_sketch.deserialize(blob))
        estimate = union.get_estimate()
        assert abs(estimate - got[k]["visitors"]) <= 0.5 + 0.001 * estimate, (k, estimate, got[k])


def test_report_by_hour_is_a_time_series_pyarrow_agrees_with(run):
    rows = report(run, "hour")
    keys = [r["hour"] for r in rows]
    assert keys == sorted(keys), "in time order"
    table = pa.concat_tables(pq.read_table(f) for f in run["files"])
    views = defaultdict(int)
    for hour, n in zip(table.column("hour").to_pylist(), table.column("views").to_pylist()):
        views[hour.strftime("%Y-%m-%dT%H:00:00Z")] += n
    assert {r["hour"]: r["views"] for r in rows} == dict(views)

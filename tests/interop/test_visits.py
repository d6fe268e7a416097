"""Interop: the visit numbers, read by the engines an analyst already has.

On the suite's one server run (conftest.py: 900 visitors, one visit each,
ended by the stop), DuckDB, pyarrow with Apache DataSketches and Spark SQL
read the `visits` table and the visit columns of `pages` and `sources`,
and get exactly what was sent and what `footfall report` says: bounce rate,
views per visit and exits are ratios of summed Int64 columns, so any engine
computes them alike.
"""

from collections import defaultdict

import datasketches
import duckdb
import pyarrow.parquet as pq
import pytest

from conftest import SITE, report


def glob(run, table):
    return f"{run['dir']}/{table}/**/*.parquet"


def test_duckdb_sums_the_visits_table_to_what_was_sent(run):
    rows = duckdb.execute(
        f"""
        SELECT entry_page, sum(visits), sum(bounces), sum(pageviews)
        FROM read_parquet('{glob(run, "visits")}', hive_partitioning = true)
        WHERE site = ? GROUP BY entry_page
        """,
        [SITE],
    ).fetchall()
    got = {page: (int(v), int(b), int(p)) for page, v, b, p in rows}
    assert got == run["visit_counts"]
    # Every view belongs to one visit, and every visit ended on a page.
    assert sum(p for _, _, p in got.values()) == sum(run["views"].values())
    exits = duckdb.execute(
        f"""
        SELECT page, sum(exits) FROM read_parquet('{glob(run, "pages")}', hive_partitioning = true)
        WHERE site = ? GROUP BY page HAVING sum(exits) > 0
        """,
        [SITE],
    ).fetchall()
    assert {page: int(n) for page, n in exits} == run["exits"]


def test_duckdb_bounce_rate_and_views_per_visit_match_report(run):
    ours = {r["entry_page"]: r for r in report(run, "entry_page")}
    rows = duckdb.execute(
        f"""
        SELECT entry_page, round(100.0 * sum(bounces) / sum(visits), 1), sum(visits)
        FROM read_parquet('{glob(run, "visits")}', hive_partitioning = true)
        WHERE site = ? GROUP BY entry_page
        """,
        [SITE],
    ).fetchall()
    assert len(rows) == len(ours) > 5
    for page, bounce_rate, visits in rows:
        assert ours[page]["bounce_rate"] == pytest.approx(bounce_rate, abs=0.05), page
        assert ours[page]["visits"] == visits
    (views_per_visit,) = duckdb.execute(
        f"""
        SELECT round(sum(pageviews) / sum(visits), 2)
        FROM read_parquet('{glob(run, "visits")}', hive_partitioning = true) WHERE site = ?
        """,
        [SITE],
    ).fetchone()
    assert run["totals"][0]["views_per_visit"] == pytest.approx(views_per_visit, abs=0.005)
    assert run["totals"][0]["visits"] == sum(run["visits"].values())


def test_datasketches_counts_the_visitors_who_entered_on_each_page(run):
    # One visit a visitor here, so an entry page's visitors are its visits.
    unions = defaultdict(lambda: datasketches.hll_union(12))
    for path in sorted(__import__("glob").glob(glob(run, "visits"), recursive=True)):
        t = pq.read_table(path, columns=["site", "entry_page", "visitors"])
        for site, page, blob in zip(*(t.column(c).to_pylist() for c in ("site", "entry_page", "visitors"))):
            if site == SITE:
                unions[page].update(datasketches.hll_sketch.deserialize(blob))
    ours = {r["entry_page"]: r for r in report(run, "entry_page")}
    assert set(unions) == set(run["visits"])
    for page, union in unions.items():
        truth = run["visits"][page]
        assert abs(union.get_estimate() - truth) <= max(1, 0.05 * truth), page
        assert ours[page]["visitors"] == pytest.approx(union.get_estimate(), abs=1 + 0.001 * truth)


def test_spark_sql_reads_visit_numbers_by_source(spark, run):
    spark.read.parquet(f"{run['dir']}/sources").createOrReplaceTempView("visit_sources")
    got = {
        r[0]: (r[1], r[2])
        for r in spark.sql(
            f"""
            SELECT referrer, sum(visits), round(100.0 * sum(bounces) / sum(visits), 1)
            FROM visit_sources WHERE site = '{SITE}' GROUP BY referrer HAVING sum(visits) > 0
            """
        ).collect()
    }
    ours = {r["referrer"]: r for r in report(run, "referrer") if r["visits"]}
    assert set(got) == set(ours)
    for referrer, (visits, bounce_rate) in got.items():
        assert ours[referrer]["visits"] == visits
        assert ours[referrer]["bounce_rate"] == pytest.approx(float(bounce_rate), abs=0.05)
    # All visits are in `sources` too, by the source of their first view.
    assert sum(v for v, _ in got.values()) == sum(run["visits"].values())

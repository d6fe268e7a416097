"""Interop: the same Parquet read by Polars and by Spark SQL.

On the suite's one server run (conftest.py), Polars scans every table with
hive partitioning and finds the documented schema and the truth's sums;
Spark SQL reads the folders, finds the same schema, and its own HLL
functions (Apache DataSketches for Java) union footfall's HLL_4 sketches,
in the README's recipe, to what `footfall report` says.
"""

from collections import defaultdict

import datasketches
import polars as pl
import pyarrow.parquet as pq
import pytest

from conftest import SCHEMAS, SITE, dims_and_count, report

TABLES = sorted(SCHEMAS)


def close(estimate, reported):
    """Two implementations' estimates of the same union: equal within 0.1 %
    (their composite estimators differ in the last digits), plus rounding
    to a whole visitor on each side (Spark's and the report's)."""
    return abs(estimate - reported) <= 1 + 0.001 * reported


def truth_of(run, table):
    return dict(run["views"] if table == "pages" else run[table])


# --- Polars ------------------------------------------------------------------

POLARS_TYPES = {"string": pl.String, "int64": pl.Int64}


def scan(run, table):
    return pl.scan_parquet(f"{run['dir']}/{table}/**/*.parquet", hive_partitioning=True)


@pytest.mark.parametrize("table", TABLES)
def test_polars_scans_every_table_with_the_documented_schema_and_sums(run, table):
    lf = scan(run, table)
    expected = {"site": pl.String(), "hour": pl.Datetime("us", "UTC")}
    expected |= {name: POLARS_TYPES[str(kind)]() for name, kind, _ in SCHEMAS[table]}
    expected |= {"visitors": pl.Binary(), "date": pl.Date()}
    assert lf.collect_schema() == pl.Schema(expected)
    # The hive column is the UTC date of every row's hour.
    assert lf.select((pl.col("hour").dt.date() == pl.col("date")).all()).collect().item() is True
    dims, count = dims_and_count(table)
    sums = lf.filter(pl.col("site") == SITE).group_by(dims).agg(pl.col(count).sum()).collect()
    assert sums.schema[count] == pl.Int64
    got = {(row[:-1] if len(dims) > 1 else row[0]): row[-1] for row in sums.iter_rows()}
    assert got == truth_of(run, table)


def test_polars_views_and_sketches_per_page_match_report(run):
    per_page = (
        scan(run, "pages").filter(pl.col("site") == SITE)
        .group_by("page").agg(pl.col("views").sum(), pl.col("visitors"))
        .collect()
    )
    assert {p: v for p, v, _ in per_page.iter_rows()} == {p: r["views"] for p, r in run["report"].items()}
    # The Binary column holds the sketches byte for byte: they union to the report's number.
    for page, _, blobs in per_page.iter_rows():
        union = datasketches.hll_union(12)
        for blob in blobs:
            union.update(datasketches.hll_sketch.deserialize(blob))
        reported = run["report"][page]["visitors"]
        assert abs(union.get_estimate() - reported) <= 0.5 + 0.001 * reported, (page, union.get_estimate(), reported)


# --- Spark SQL ---------------------------------------------------------------

SPARK_TYPES = {"string": "string", "int64": "bigint"}




@pytest.mark.parametrize("table", TABLES)
def test_spark_reads_every_table_with_the_documented_schema(spark, run, table):
    df = spark.read.parquet(f"{run['dir']}/{table}")
    expected = [("site", "string"), ("hour", "timestamp")]
    expected += [(name, SPARK_TYPES[str(kind)]) for name, kind, _ in SCHEMAS[table]]
    expected += [("visitors", "binary"), ("date", "date")]  # `date`: hive partition discovery
    assert [(f.name, f.dataType.simpleString()) for f in df.schema.fields] == expected
    if table == "pages":
        # `hour` (UTC-adjusted Parquet timestamp) is the same instant in
        # Spark as in pyarrow, and the folder's date is its UTC date.
        df.createOrReplaceTempView("pages_schema")
        micros = {r[0] for r in spark.sql("SELECT unix_micros(hour) FROM pages_schema").collect()}
        arrow = set()
        for f in run["files"]:
            arrow |= set(pq.read_table(f, columns=["hour"]).column("hour").cast("int64").to_pylist())
        assert micros == arrow
        assert spark.sql("SELECT bool_and(to_date(hour) = date) FROM pages_schema").collect()[0][0] is True


def test_spark_sql_views_and_visitors_per_page_match_report(spark, run):
    # The recipe of README "Querying" (there with a date range, ORDER BY and LIMIT).
    spark.read.parquet(f"{run['dir']}/pages").createOrReplaceTempView("pages")
    rows = spark.sql(f"""
        SELECT page, sum(views) AS views, hll_sketch_estimate(hll_union_agg(visitors)) AS visitors
        FROM pages WHERE site = '{SITE}' GROUP BY page
    """).collect()
    assert {r["page"]: r["views"] for r in rows} == dict(run["views"])
    assert {r["page"]: r["views"] for r in rows} == {p: r["views"] for p, r in run["report"].items()}
    sizes = set()
    for r in rows:
        reported = run["report"][r["page"]]["visitors"]
        assert close(r["visitors"], reported), (r["page"], r["visitors"], reported)
        truth = run["visitors"][r["page"]]
        if truth < 100:
            assert r["visitors"] == truth, (r["page"], r["visitors"], truth)
        sizes.add(truth > 400)
    assert sizes == {True, False}, "both small (list/set) and large (HLL) sketches were unioned"
    # All sketches of the site at once: a real union of many sketches, not one per group.
    (total,) = spark.sql(f"""
        SELECT hll_sketch_estimate(hll_union_agg(visitors)) FROM pages WHERE site = '{SITE}'
    """).collect()[0]
    assert close(total, run["totals"][0]["visitors"]), (total, run["totals"])


def test_spark_sql_entries_by_referrer_match_report(spark, run):
    # The SQL-only way to name a folder, as in the `spark-sql` shell.
    spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW sources USING parquet OPTIONS (path '{run['dir']}/sources')")
    rows = spark.sql(f"""
        SELECT referrer, sum(entries) AS entries, hll_sketch_estimate(hll_union_agg(visitors)) AS visitors
        FROM sources WHERE site = '{SITE}' GROUP BY referrer
    """).collect()
    got = {r["referrer"]: r for r in rows}
    truth = defaultdict(int)
    for (referrer, *_), n in run["sources"].items():
        truth[referrer] += n
    assert None in got, "direct traffic is a null referrer"
    assert {k: r["entries"] for k, r in got.items()} == dict(truth)
    reported = {r["referrer"]: r for r in report(run, "referrer")}
    assert {k: r["entries"] for k, r in got.items()} == {k: r["entries"] for k, r in reported.items()}
    for k, r in got.items():
        assert close(r["visitors"], reported[k]["visitors"]), (k, r["visitors"], reported[k])

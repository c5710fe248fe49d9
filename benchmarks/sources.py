"""Reading a day from each data source (issue 17): rows per second on the 10x world.

    python benchmarks/sources.py [--scale 10] [--repeats 3] [--pg-url postgresql+psycopg2://postgres@127.0.0.1:5432/test]

Exports the default world times ``--scale`` (users, items and weekly interactions, the advertisers'
seed lists and the crowd's ratings) for its first 7 days as parquet and as CSV (``adrel_pipeline.export``), loads the parquet directory into PostgreSQL
(``load_directory``, in a schema of its own, dropped afterwards; skipped when no server answers) and
writes it once more with all interactions in one ``interactions.parquet``, then
reads every day from each source, ``--repeats`` times on a fresh source each: users, items and seed
lists once (read and checked), then the days' interactions (read, typed, checked against the users
and items), then the labels (read, typed, checked against the ads).
Prints the median wall time per step and the interactions' rows per second. Without Dagster.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adrel_pipeline.export import DEFAULT_FIRST_DAY, DEFAULT_LAST_DAY, export_world
from adrel_pipeline.sources import FileSource, PostgresSource, load_directory
from adrel_pipeline.world import WorldSpec

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def read_all(make_source, repeats: int) -> dict:
    tables, days, labels, rows, ratings = [], [], [], 0, 0
    for _ in range(repeats):
        source = make_source()
        _, t = timed(lambda s=source: (s.users(), s.items(), s.seed_lists()))
        tables.append(t)
        start = time.perf_counter()
        rows = sum(source.interactions(day).height for day in source.days())
        days.append(time.perf_counter() - start)
        got, t = timed(source.labels)
        ratings = 0 if got is None else got.height
        labels.append(t)
    median, label_s = statistics.median(days), statistics.median(labels)
    return {"users+items s": statistics.median(tables), "days s": median, "rows": rows, "rows/s": rows / median,
            "labels s": label_s, "ratings": ratings, "ratings/s": ratings / label_s if ratings else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()
    base = WorldSpec()
    spec = WorldSpec(num_users=base.num_users * args.scale, num_items=base.num_items * args.scale,
                     num_interactions=base.num_interactions * args.scale)
    print(f"world x{args.scale}: {spec.num_users} users, {spec.num_items} items, "
          f"{spec.num_interactions} interactions / 7 days ({DEFAULT_FIRST_DAY}..{DEFAULT_LAST_DAY})")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("parquet", "csv"):
            _, t = timed(lambda f=fmt: export_world(spec, Path(tmp) / f, fmt=f))
            print(f"export {fmt}: {t:.1f} s")
            results[f"files ({fmt}, a file per day)"] = read_all(lambda f=fmt: FileSource(Path(tmp) / f), args.repeats)
        # The other layout: one interactions file, each day a filtered scan of it.
        one = Path(tmp) / "one"
        one.mkdir()
        for name in ("users.parquet", "items.parquet", "adrel.yaml"):
            (one / name).write_bytes((Path(tmp) / "parquet" / name).read_bytes())
        pl.concat([pl.read_parquet(p) for p in sorted((Path(tmp) / "parquet" / "interactions").iterdir())]
                  ).write_parquet(one / "interactions.parquet")
        results["files (parquet, one file)"] = read_all(lambda: FileSource(one), args.repeats)
        try:
            import sqlalchemy as sa

            engine = sa.create_engine(args.pg_url)
            with engine.begin() as conn:
                schema = f"adrel_bench_{uuid.uuid4().hex[:8]}"
                conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        except Exception as err:  # noqa: BLE001 - no server: the file sources' figures still stand
            print(f"PostgreSQL skipped: {' '.join(str(err).split())[:200]}")
        else:
            tables = {k: f"{schema}.{k}" for k in ("users", "items", "interactions", "seed_lists", "labels")}
            try:
                _, t = timed(lambda: load_directory(Path(tmp) / "parquet", args.pg_url, tables))
                print(f"load_directory into PostgreSQL: {t:.1f} s")
                results["PostgreSQL"] = read_all(lambda: PostgresSource(args.pg_url, tables), args.repeats)
            finally:
                with engine.begin() as conn:
                    conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
                engine.dispose()
    print(f"\nmedian of {args.repeats}:\n")
    print("| source | users + items + seed lists (s) | 7 days of interactions (s) | rows | rows/s "
          "| labels (s) | ratings | ratings/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['users+items s']:.2f} | {r['days s']:.2f} | {r['rows']:,} | {r['rows/s']:,.0f} "
              f"| {r['labels s']:.2f} | {r['ratings']:,} | {r['ratings/s']:,.0f} |")


if __name__ == "__main__":
    main()

"""The deployment's synthetic world as a directory source (issue 17's contract, :mod:`.sources`).

    python -m adrel_pipeline.export --to DIR [--first-day 2026-01-01] [--last-day 2026-01-07]
                                    [--format parquet|csv] [--force]

Writes the world of ``$ADREL_WORLD`` (default: the default world): ``users``, ``items`` (without the
generator's latent truth), ``interactions/<YYYY-MM-DD>`` for each day, its advertisers'
``seed_lists``, the crowd's ``labels`` (one row per rating) of each day, and ``adrel.yaml`` declaring
the synthetic features, so that ``ADREL_SOURCE=DIR`` rebuilds the same feature columns. The days
default to the week ``make run`` reads. The directory appears whole or not at all: everything is
written beside it first, then renamed into place.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import yaml

from adrel_pipeline.graph.features import synthetic_features
from adrel_pipeline.sources.base import features_to_config
from adrel_pipeline.sources.contract import (
    CONFIG_FILE,
    INTERACTION_SCHEMA,
    INTERACTIONS,
    ITEMS,
    LABELS,
    SEED_LISTS,
    USERS,
)
from adrel_pipeline.world import WorldSpec, deployment_world, generate_day, generate_items, generate_users
from adrel_pipeline.world.oracle import TRUTH_COLUMNS

DEFAULT_FIRST_DAY = dt.date(2026, 1, 1)  # the make run week (Makefile FIRST_DAY..RUN_DAY)
DEFAULT_LAST_DAY = dt.date(2026, 1, 7)
FORMATS = ("parquet", "csv")


def _write(df: pl.DataFrame, path: Path) -> None:
    if path.suffix == ".csv":
        df.write_csv(path)
    else:
        df.write_parquet(path)


def seed_lists(spec: WorldSpec, users: pl.DataFrame) -> pl.DataFrame:
    """Every advertiser's seed list as the world draws it, in one table (the contract's ``seed_lists``)."""
    from adrel_pipeline.world.advertisers import advertiser_ids, generate_seed_list

    return pl.concat([generate_seed_list(spec, users, key).select(pl.lit(key).alias("advertiser_id"), pl.all())
                      for key in advertiser_ids(spec)])


def export_world(spec: WorldSpec, target: str | Path, first_day: dt.date = DEFAULT_FIRST_DAY,
                 last_day: dt.date = DEFAULT_LAST_DAY, fmt: str = "parquet", force: bool = False,
                 progress: Callable[[str], None] | None = None) -> Path:
    """Writes ``spec``'s world over ``first_day..last_day`` to ``target`` as a directory source;
    returns ``target``. A non-empty ``target`` is an error unless ``force`` (then it is replaced)."""
    say = progress or (lambda _line: None)
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: must be one of {FORMATS}")
    if last_day < first_day:
        raise ValueError(f"last day {last_day} is before first day {first_day}")
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ValueError(f"{target} is not empty: choose an empty or new directory, or pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target (same file system), so that the final rename is atomic.
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        users, items = generate_users(spec), generate_items(spec)
        # The generator's latent truth: what a real platform never observes, so never exported.
        _write(users.drop(TRUTH_COLUMNS[USERS]), tmp / f"{USERS}.{fmt}")
        _write(items.drop(TRUTH_COLUMNS[ITEMS]), tmp / f"{ITEMS}.{fmt}")
        say(f"users: {users.height}, items: {items.height} ({int(items['is_ad'].sum())} ads)")
        (tmp / INTERACTIONS).mkdir()
        days = [first_day + dt.timedelta(days=i) for i in range((last_day - first_day).days + 1)]
        total = 0
        for day in days:
            df = generate_day(spec, users, items, day).select(list(INTERACTION_SCHEMA))
            _write(df, tmp / INTERACTIONS / f"{day.isoformat()}.{fmt}")
            total += df.height
        say(f"interactions: {total} over {len(days)} days ({first_day}..{last_day})")
        seeds = seed_lists(spec, users)
        _write(seeds, tmp / f"{SEED_LISTS}.{fmt}")
        say(f"seed lists: {seeds['advertiser_id'].n_unique()} advertisers, {seeds.height} seed users")
        from adrel_pipeline.contextual.own_labels import simulated_ratings
        from adrel_pipeline.contextual.spec import LabelSpec

        ratings = simulated_ratings(spec, users, items, days, LabelSpec(seed=spec.seed))
        _write(ratings, tmp / f"{LABELS}.{fmt}")
        say(f"labels: {ratings.height} ratings of {ratings.select('context_id', 'item_id').n_unique()} pairs")
        header = (f"# The synthetic world {spec.fingerprint} exported by python -m adrel_pipeline.export: its\n"
                  f"# features, cross and vocabularies, so that a file source encodes them as the world does.\n")
        (tmp / CONFIG_FILE).write_text(header + yaml.safe_dump(features_to_config(synthetic_features()),
                                                               sort_keys=False))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"wrote {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adrel_pipeline.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--to", required=True, type=Path, help="the directory to write (new or empty)")
    parser.add_argument("--first-day", type=dt.date.fromisoformat, default=DEFAULT_FIRST_DAY)
    parser.add_argument("--last-day", type=dt.date.fromisoformat, default=DEFAULT_LAST_DAY)
    parser.add_argument("--format", choices=FORMATS, default="parquet")
    parser.add_argument("--force", action="store_true", help="replace a non-empty target directory")
    args = parser.parse_args(argv)
    spec = deployment_world()
    start = time.perf_counter()
    print(f"world {spec.fingerprint} ({spec.num_users} users, {spec.num_items} items) -> {args.to} ({args.format})")
    try:
        export_world(spec, args.to, args.first_day, args.last_day, args.format, args.force, progress=print)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

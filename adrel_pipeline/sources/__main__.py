"""``python -m adrel_pipeline.sources``: what ``$ADREL_SOURCE`` holds, for ``make run-source``."""

from __future__ import annotations

import argparse
import sys

from adrel_pipeline.sources.contract import PIPELINE_TABLES, SEED_LISTS
from adrel_pipeline.sources.env import source_from_env


def main(argv: list[str] | None = None) -> int:
    """``python -m adrel_pipeline.sources --tables | --advertiser-range``: which optional tables
    ``$ADREL_SOURCE`` has (``seed_lists``, ``labels``), or its advertisers as a partition range
    (``first...last``), for ``make run-source``."""

    parser = argparse.ArgumentParser(prog="python -m adrel_pipeline.sources", description=main.__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--tables", action="store_true")
    what.add_argument("--advertiser-range", action="store_true")
    args = parser.parse_args(argv)
    try:
        source = source_from_env()
        if args.tables:
            print(" ".join(t for t in PIPELINE_TABLES if source.has(t)))
            return 0
        seeds = source.seed_lists()
        if seeds is None:
            raise ValueError(f"{source.name}: no {SEED_LISTS} table")
        ids = sorted(seeds["advertiser_id"].unique())
        print(f"{ids[0]}...{ids[-1]}")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

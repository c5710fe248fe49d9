"""Monitoring profiles: feature coverage and value histograms of the signals, score histograms,
and trim rates, per surface and content type (and model), with fixed bins so that two days
compare (PSI, coverage drops, trim-rate changes).

A profile is a flat dict of plain values, stored as a materialization's metadata: the next day
reads it back and :func:`compare` measures the drift.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from adrel_pipeline.evaluation.calibration import SCORE_EDGES, coverage, histogram, psi
from adrel_pipeline.world.contexts import SIGNALS

SEGMENT_COLUMNS = ("surface", "content_type")
# Fixed bins of the continuous signals (cosines and their noisy relatives fall well inside).
SIGNAL_EDGES = np.linspace(-1.5, 2.5, 11)


def _segments(frame: pl.DataFrame):
    for (surface, content_type), rows in sorted(frame.partition_by(list(SEGMENT_COLUMNS), as_dict=True).items()):
        yield f"{surface}/{content_type}", rows


def signal_profile(frame: pl.DataFrame) -> dict:
    """``coverage/<signal>/<surface>/<content_type>`` (share present) and ``hist/<signal>/...``."""
    out: dict = {}
    for segment, rows in _segments(frame):
        for signal, share in coverage(rows, SIGNALS).items():
            out[f"coverage/{signal}/{segment}"] = share
            out[f"hist/{signal}/{segment}"] = histogram(rows[signal].cast(pl.Float64).fill_null(np.nan).to_numpy(),
                                                        SIGNAL_EDGES)
    return out


def score_profile(frame: pl.DataFrame, scores: Mapping[str, np.ndarray]) -> dict:
    """``hist/score/<model>/<surface>/<content_type>``, the score histogram of each model."""
    out: dict = {}
    frame = frame.select(SEGMENT_COLUMNS).with_columns(row=pl.int_range(pl.len()))
    for segment, rows in _segments(frame):
        index = rows["row"].to_numpy()
        for model, values in scores.items():
            out[f"hist/score/{model}/{segment}"] = histogram(np.asarray(values)[index], SCORE_EDGES)
    return out


def trim_profile(frame: pl.DataFrame, relevance: Mapping[str, np.ndarray], threshold: float) -> dict:
    """``trim_rate/<model>/<surface>/<content_type>``: the share of candidates each model's
    P(relevant) puts below the trim ``threshold`` (what the trim would drop with that model)."""
    out: dict = {}
    frame = frame.select(SEGMENT_COLUMNS).with_columns(row=pl.int_range(pl.len()))
    for segment, rows in _segments(frame):
        index = rows["row"].to_numpy()
        for model, values in relevance.items():
            out[f"trim_rate/{model}/{segment}"] = float(np.mean(np.asarray(values)[index] < threshold))
    return out


def compare(previous: Mapping | None, current: Mapping) -> dict[str, float]:
    """``psi/<key>`` of each histogram, ``coverage_drop/<key>`` of each coverage and
    ``trim_rate_change/<key>`` (absolute) of each trim rate present on both days; empty without a
    previous profile."""
    if not previous:
        return {}
    out = {}
    for key, value in current.items():
        if key not in previous:
            continue
        if isinstance(value, list):
            out["psi/" + key.removeprefix("hist/")] = psi(previous[key], value)
        elif key.startswith("trim_rate/"):
            out["trim_rate_change/" + key.removeprefix("trim_rate/")] = abs(float(value) - float(previous[key]))
        else:
            out["coverage_drop/" + key.removeprefix("coverage/")] = float(previous[key]) - float(value)
    return out

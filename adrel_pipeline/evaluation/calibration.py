"""Calibration, ranking and drift metrics of probability scores: reliability curves, expected
calibration error, Brier score, nDCG per context, feature coverage, the population stability
index. numpy and polars only.

ECE uses equal-mass bins (rows sorted by score, cut into ``bins`` groups of equal size): with
isotonic outputs piecewise constant, equal-width bins leave most bins empty and the rest huge.
The target may be 0/1 labels (the usual ECE) or the oracle's probabilities (the *true* ECE, which
the label noise does not blur: a synthetic world can measure it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

SCORE_EDGES = np.linspace(0.0, 1.0, 11)  # fixed bins of a [0, 1] score, comparable from day to day
PSI_FLOOR = 1e-4  # a bin's share below this counts as this (an empty bin would make PSI infinite)


def _bins(scores: np.ndarray, bins: int) -> list[np.ndarray]:
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")
    return [part for part in np.array_split(order, min(bins, len(order))) if len(part)]


def reliability(scores, targets, bins: int = 10) -> dict[str, np.ndarray]:
    """Per equal-mass bin: the mean score, the mean target (share relevant) and the row count."""
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    parts = _bins(scores, bins)
    return {"mean_score": np.array([scores[p].mean() for p in parts]),
            "mean_target": np.array([targets[p].mean() for p in parts]),
            "count": np.array([len(p) for p in parts])}


def ece(scores, targets, bins: int = 10) -> float:
    """Expected calibration error: ``sum_b n_b / n |mean score_b - mean target_b|`` over equal-mass bins."""
    if len(scores) == 0:
        return float("nan")
    curve = reliability(scores, targets, bins)
    weights = curve["count"] / curve["count"].sum()
    return float(np.sum(weights * np.abs(curve["mean_score"] - curve["mean_target"])))


def brier(scores, labels) -> float:
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    return float(np.mean((scores - labels) ** 2))


def paired_brier(labels, scores_a, scores_b) -> tuple[float, float, float]:
    """Brier scores of two scorers on the same rows and the standard error of their difference
    (``a - b``), from the per-row squared errors' differences."""
    y = np.asarray(labels, dtype=np.float64)
    a, b = (np.asarray(scores_a, dtype=np.float64) - y) ** 2, (np.asarray(scores_b, dtype=np.float64) - y) ** 2
    d = a - b
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return float(a.mean()), float(b.mean()), se


def ndcg_at_k(groups, scores, gains, k: int = 10) -> float:
    """Mean over groups (contexts) of nDCG@k: the candidates ranked by ``scores``, each gaining
    ``gains`` (e.g. the true grade minus 1), discounted by ``log2(rank + 1)``; groups whose ideal
    DCG is 0 are skipped. Ties in ``scores`` are broken by row order."""
    frame = pl.DataFrame({"g": np.asarray(groups), "s": np.asarray(scores, dtype=np.float64),
                          "gain": np.asarray(gains, dtype=np.float64), "row": np.arange(len(scores))})
    discount = pl.lit(1.0) / (pl.int_range(1, pl.len() + 1).over("g").cast(pl.Float64) + 1.0).log(2)
    ranked = frame.sort(["g", "s", "row"], descending=[False, True, False]).with_columns(d=discount)
    ideal = frame.sort(["g", "gain"], descending=[False, True]).with_columns(d=discount)
    dcg = ranked.group_by("g").agg((pl.col("gain") * pl.col("d")).head(k).sum().alias("dcg"))
    idcg = ideal.group_by("g").agg((pl.col("gain") * pl.col("d")).head(k).sum().alias("idcg"))
    joined = dcg.join(idcg, on="g").filter(pl.col("idcg") > 0)
    return float((joined["dcg"] / joined["idcg"]).mean()) if joined.height else float("nan")


def histogram(values, edges: np.ndarray = SCORE_EDGES) -> list[int]:
    """Counts of ``values`` in ``edges``' bins (values outside go to the end bins; NaN are skipped)."""
    values = np.asarray(values, dtype=np.float64)
    values = np.clip(values[~np.isnan(values)], edges[0], edges[-1])
    return np.histogram(values, bins=edges)[0].astype(int).tolist()


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two histograms over the same bins:
    ``sum (a - e) ln(a / e)`` of the bins' shares (each floored at ``PSI_FLOOR``)."""
    e, a = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.sum() == 0 or a.sum() == 0:
        return float("nan")
    e, a = np.maximum(e / e.sum(), PSI_FLOOR), np.maximum(a / a.sum(), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def coverage(frame: pl.DataFrame, columns: Sequence[str]) -> dict[str, float]:
    """The share of rows where each column is present (not null, not NaN)."""
    if frame.height == 0:
        return {c: float("nan") for c in columns}
    return {c: float(frame.select((pl.col(c).is_not_null() & ~pl.col(c).is_nan()).mean()).item()) for c in columns}

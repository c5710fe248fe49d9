"""Human labels, simulated as the seed's crowdsourcing produces them, and their quality control.

A crowd of ``rater_pool`` raters, each with a personal bias ``b_j ~ N(0, rater_bias_sd)`` (the
same crowd every day: it is drawn from the seed alone). Each row gets ``raters_per_row`` distinct
raters; rater ``j`` labels a pair of true grade ``g*`` on the 5-point scale as
``clip(round(g* + b_j + e), 1, 5)`` with per-row noise ``e ~ N(0, rater_noise)``. The row's label
is the raters' median (the lower median for an even panel: a conservative call), also collapsed
to the 3-point scale (1-2 irrelevant, 3 somewhat, 4-5 relevant); a row is *relevant* when its
label is 4 or 5.

:func:`relevance_probability` is the oracle of the labels: the probability that this crowd
labels a pair relevant, ``P(at least k - m of k raters say >= 4)`` with ``m = (k - 1) // 2``, over
the panels the crowd can field (distinct raters, uniformly), rater ``j`` saying ``>= 4`` with
probability ``Phi((g* + b_j - 3.5) / rater_noise)``: the calibrated probability no model of the
signals can beat. numpy, scipy's normal CDF and the ``krippendorff`` package.
"""

from __future__ import annotations

from math import comb

import numpy as np
import polars as pl

from adrel_pipeline.contextual.spec import LabelSpec
from adrel_pipeline.world.contexts import RELEVANT_GRADE

GRADES = (1, 2, 3, 4, 5)
RELEVANT_LABEL = 4  # 5-point labels at or above: relevant
THREE_POINT = ("irrelevant", "somewhat", "relevant")
_STREAM_CROWD, _STREAM_PANELS = 41, 42


def crowd_biases(spec: LabelSpec) -> np.ndarray:
    """Each rater's personal bias, in grade points (the same crowd for every job of a seed)."""
    return np.random.default_rng([spec.seed, _STREAM_CROWD]).normal(0.0, spec.rater_bias_sd, spec.rater_pool)


def _distinct(rng: np.random.Generator, rows: int, pool: int, k: int) -> np.ndarray:
    """``(rows, k)`` distinct members of ``range(pool)`` per row, uniformly: the j-th is uniform
    over the ``pool - j`` members not yet chosen (shifted past the chosen ones in ascending order)."""
    chosen = np.empty((rows, k), dtype=np.int64)
    for j in range(k):
        pick = rng.integers(0, pool - j, rows)
        for previous in np.sort(chosen[:, :j], axis=1).T:
            pick += pick >= previous
        chosen[:, j] = pick
    return chosen


def rate(true_grade: np.ndarray, spec: LabelSpec, key: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """``(rater_ids, ratings)``, each ``(rows, raters_per_row)``: who labelled each row and the
    5-point grades they gave. ``key`` separates the draws of different jobs."""
    rng = np.random.default_rng([spec.seed, _STREAM_PANELS, *key])
    n, k = len(true_grade), spec.raters_per_row
    raters = _distinct(rng, n, spec.rater_pool, k)
    noise = rng.normal(0.0, spec.rater_noise, (n, k)) if spec.rater_noise > 0 else np.zeros((n, k))
    seen = np.asarray(true_grade, dtype=np.float64)[:, None] + crowd_biases(spec)[raters] + noise
    return raters, np.clip(np.rint(seen), GRADES[0], GRADES[-1]).astype(np.int8)


def aggregate(ratings: np.ndarray) -> np.ndarray:
    """The row label: the median of its raters' grades (the lower median for an even panel)."""
    return np.sort(ratings, axis=1)[:, (ratings.shape[1] - 1) // 2]


def three_point(label: np.ndarray) -> np.ndarray:
    return np.asarray(THREE_POINT)[np.digitize(label, [3, 4])]


def disagreement_rate(ratings: np.ndarray) -> float:
    """The seed's row-level disagreement: the share of rows whose raters are more than one point apart."""
    return float(np.mean(ratings.max(axis=1) - ratings.min(axis=1) > 1)) if len(ratings) else float("nan")


def krippendorff_alpha(ratings: np.ndarray) -> float:
    """Krippendorff's ordinal alpha of the rows' grades (the ``krippendorff`` package, from each
    row's counts of every grade: who rated which row does not enter alpha)."""
    import krippendorff

    counts = np.stack([(ratings == g).sum(axis=1) for g in GRADES], axis=1)
    return float(krippendorff.alpha(value_counts=counts, value_domain=list(GRADES), level_of_measurement="ordinal"))


def relevance_probability(true_grade: np.ndarray, spec: LabelSpec) -> np.ndarray:
    """The probability that the crowd labels each pair relevant: that at least ``k - (k - 1) // 2``
    of a panel of ``k`` distinct raters, drawn uniformly from the crowd, say 4 or more (see the module).

    Exact for this crowd (its raters' biases, :func:`crowd_biases`): rater ``j`` says ``>= 4`` with
    probability ``p_j = Phi((g* + b_j - 3.5) / rater_noise)``, and a uniformly random ``k``-subset's
    count of such raters has the generating function ``[y^k] prod_j (1 + y (1 - p_j + p_j z)) /
    C(pool, k)``, expanded here rater by rater.
    """
    from scipy.special import ndtr

    g = np.asarray(true_grade, dtype=np.float64)
    shifted = g[:, None] + crowd_biases(spec)[None, :] - RELEVANT_GRADE
    p = (shifted >= 0).astype(np.float64) if spec.rater_noise == 0 else ndtr(shifted / spec.rater_noise)
    k = spec.raters_per_row
    # poly[a, c, rows]: the sum over a-subsets of the raters seen so far of P(exactly c of them say >= 4).
    # Rater j extends every (a - 1)-subset; a runs downwards so that each reads the values before j.
    poly = np.zeros((k + 1, k + 1, len(g)))
    poly[0, 0] = 1.0
    q = 1.0 - p
    for j in range(spec.rater_pool):
        for a in range(min(j + 1, k), 0, -1):
            poly[a, 1:] += poly[a - 1, :-1] * p[:, j]
            poly[a] += poly[a - 1] * q[:, j]
    need = k - (k - 1) // 2
    return poly[k, need:].sum(axis=0) / comb(spec.rater_pool, k)


def label_rows(rows: pl.DataFrame, spec: LabelSpec, key: tuple[int, ...] = ()) -> pl.DataFrame:
    """``rows`` (with ``true_grade``) labelled: rater_ids, ratings, label (5-point), label_3pt,
    relevant, and the oracle's ``relevance_probability`` (generator truth, never a feature)."""
    grade = rows["true_grade"].to_numpy()
    raters, ratings = rate(grade, spec, key)
    label = aggregate(ratings)
    k = spec.raters_per_row
    return rows.with_columns(
        pl.Series("rater_ids", raters, dtype=pl.Array(pl.Int64, k)),
        pl.Series("ratings", ratings, dtype=pl.Array(pl.Int8, k)),
        pl.Series("label", label, dtype=pl.Int8),
        pl.Series("label_3pt", three_point(label), dtype=pl.Utf8),
        pl.Series("relevant", label >= RELEVANT_LABEL, dtype=pl.Boolean),
        pl.Series("relevance_probability", relevance_probability(grade, spec), dtype=pl.Float64),
    )


def quality(labels: pl.DataFrame) -> dict[str, float]:
    """``disagreement_rate``, ``krippendorff_alpha`` and the share of relevant rows."""
    ratings = labels["ratings"].to_numpy()
    return {"disagreement_rate": disagreement_rate(ratings), "krippendorff_alpha": krippendorff_alpha(ratings),
            "relevant_share": float(labels["relevant"].mean())}

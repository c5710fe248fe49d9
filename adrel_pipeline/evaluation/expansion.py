"""Offline evaluation of audience expansion, exactly as the Pinterest Actalike blog.

Split each seed list 90/10 (:func:`draw_holdout_split`); train on the 90%; score every eligible
user (active users minus the 90%); rank them. For an expansion of the top ``k``, ``E@k``:

* ``recall@k = |E@k ∩ H| / |H|``, ``H`` the held-out seed users;
* ``precision@k = |E@k ∩ H| / (|E@k ∩ H| + |E@k ∩ R|)``, ``R`` a random set of non-seed active
  users of the size of ``H`` (:func:`random_non_seed`): 0.5 is what a random ranking scores;
* ``gt_precision@k``: the share of ``E@k`` in the advertiser's true audience, which only a
  synthetic world can tell.

Each is averaged over several ``k`` relative to the seed size
(:data:`adrel_pipeline.audience.spec.K_MULTIPLIERS`), then over advertisers (:func:`summarise`).
numpy and polars only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

METRICS: tuple[str, ...] = ("recall", "precision", "gt_precision")
# Report order: the blog's three methods, the unweighted ablation, the ceiling.
METHOD_ORDER: tuple[str, ...] = ("lr", "lsh", "nn", "nn_unweighted", "oracle")
BASELINE = "lr"


def draw_holdout_split(seed_rows, holdout_fraction: float, seed) -> tuple[np.ndarray, np.ndarray]:
    """``(train_rows, holdout_rows)``, each sorted: ``round(holdout_fraction * n)`` of the seed list
    held out, at least one and never all (a list of fewer than 2 cannot be split)."""
    rows = np.unique(np.asarray(seed_rows, dtype=np.int64))
    if len(rows) < 2:
        raise ValueError(f"a seed list of {len(rows)} users cannot be split into train and holdout")
    held = min(len(rows) - 1, max(1, round(holdout_fraction * len(rows))))
    perm = np.random.default_rng(seed).permutation(len(rows))
    return np.sort(rows[perm[held:]]), np.sort(rows[perm[:held]])


def random_non_seed(active_rows, seed_rows, size: int, seed) -> np.ndarray:
    """``size`` active rows outside the seed list (all of them if fewer), drawn without replacement, sorted."""
    candidates = np.setdiff1d(np.asarray(active_rows, dtype=np.int64), np.asarray(seed_rows, dtype=np.int64))
    return np.sort(np.random.default_rng(seed).choice(candidates, size=min(size, len(candidates)), replace=False))


def rank_eligible(scores, eligible_mask) -> np.ndarray:
    """Eligible rows by score, highest first; ties by row, ascending (the same every run)."""
    eligible = np.flatnonzero(np.asarray(eligible_mask, dtype=bool))
    s = np.asarray(scores, dtype=np.float64)[eligible]
    return eligible[np.lexsort((eligible, -s))]


def recall_at_k(ranked_rows, holdout, k: int) -> float:
    """``|E@k ∩ H| / |H|``, ``E@k`` the first ``k`` of ``ranked_rows`` (all of them if fewer)."""
    holdout = np.asarray(holdout)
    if len(holdout) == 0:
        raise ValueError("recall needs a non-empty holdout")
    return float(np.isin(np.asarray(ranked_rows)[:k], holdout).sum() / len(holdout))


def precision_at_k(ranked_rows, holdout, random_set, k: int) -> float:
    """``|E@k ∩ H| / (|E@k ∩ H| + |E@k ∩ R|)``; NaN when ``E@k`` meets neither (0 / 0).

    With ``|R| ≠ |H|`` the ``R`` hits are rescaled by ``|H| / |R|`` (an unbiased stand-in for a
    random set of ``H``'s size); with ``|R| = |H|``, the blog's case, that factor is 1.
    """
    top = np.asarray(ranked_rows)[:k]
    holdout, random_set = np.asarray(holdout), np.asarray(random_set)
    if len(holdout) == 0 or len(random_set) == 0:
        raise ValueError("precision needs a non-empty holdout and random set")
    hits = float(np.isin(top, holdout).sum())
    noise = float(np.isin(top, random_set).sum()) * len(holdout) / len(random_set)
    return hits / (hits + noise) if hits + noise > 0 else float("nan")


def ground_truth_precision(ranked_rows, audience_mask, k: int) -> float:
    """The share of ``E@k`` in the true audience (NaN for an empty expansion)."""
    top = np.asarray(ranked_rows)[:k]
    return float(np.asarray(audience_mask, dtype=bool)[top].mean()) if len(top) else float("nan")


def expansion_sizes(seed_size: int, k_multipliers: Sequence[float]) -> list[int]:
    """``k = round(m * seed_size)`` for each multiplier, at least 1."""
    return [max(1, round(m * seed_size)) for m in k_multipliers]


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def evaluate_advertiser(scores_by_method: Mapping[str, np.ndarray], eligible_mask, holdout_rows, random_rows,
                        audience_mask, seed_size: int, k_multipliers: Sequence[float]) -> dict[str, dict]:
    """Per method: ``recall``, ``precision`` and ``gt_precision`` averaged over the ``k`` values
    (``precision`` over those where it is defined), and ``per_k``: ``{k_multiplier: {metric: value}}``.

    ``scores_by_method`` holds each method's scores over all users (rows); only ``eligible_mask``
    rows are ranked. ``audience_mask``: ``None`` when the truth is unknown (uploaded seed lists):
    ``gt_precision`` is NaN then.
    """
    ks = expansion_sizes(seed_size, k_multipliers)
    out = {}
    for method, scores in scores_by_method.items():
        ranked = rank_eligible(scores, eligible_mask)
        per_k = {}
        for m, k in zip(k_multipliers, ks, strict=True):
            per_k[m] = {
                "recall": recall_at_k(ranked, holdout_rows, k),
                "precision": precision_at_k(ranked, holdout_rows, random_rows, k),
                "gt_precision": (float("nan") if audience_mask is None
                                 else ground_truth_precision(ranked, audience_mask, k)),
            }
        out[method] = {metric: _mean([v[metric] for v in per_k.values()]) for metric in METRICS} | {"per_k": per_k}
    return out


def evaluation_rows(advertiser_id: str, bucket: int, evaluation: Mapping[str, dict]) -> list[dict]:
    """:func:`evaluate_advertiser`'s result as flat rows (one per method) for :func:`summarise`:
    advertiser_id, bucket, method, the averaged metrics, and ``<metric>@<multiplier>`` per k."""
    rows = []
    for method, result in evaluation.items():
        row = {"advertiser_id": advertiser_id, "bucket": int(bucket), "method": method}
        row |= {metric: result[metric] for metric in METRICS}
        row |= {f"{metric}@{m:g}": v[metric] for m, v in result["per_k"].items() for metric in METRICS}
        rows.append(row)
    return rows


def summarise(per_advertiser: pl.DataFrame) -> pl.DataFrame:
    """Means over advertisers per (method, bucket) and over all buckets (bucket ``"all"``).

    Columns: method, bucket (Utf8: the bucket's nominal seed size, or "all"), recall, precision,
    gt_precision, recall_gain_vs_lr, precision_gain_vs_lr, gt_precision_gain_vs_lr, n_advertisers.
    A gain is relative, ``mean(method) / mean(lr) - 1`` over the same advertisers: a ratio of means
    (the blog's "relative gain"), not a mean of per-advertiser ratios, which one tiny baseline value
    would dominate; null where lr's mean is 0 (or undefined). NaN precisions (an expansion that met
    neither H nor R) are left out of the means.
    """
    frame = per_advertiser.with_columns(pl.col(m).cast(pl.Float64).fill_nan(None) for m in METRICS)
    means = [pl.col(m).mean().alias(m) for m in METRICS] + [pl.col("advertiser_id").n_unique().alias("n_advertisers")]
    by_bucket = frame.group_by("method", "bucket").agg(means).with_columns(pl.col("bucket").cast(pl.Utf8))
    overall = frame.group_by("method").agg(means).with_columns(pl.lit("all").alias("bucket"))
    summary = pl.concat([by_bucket, overall.select(by_bucket.columns)])
    baseline = summary.filter(pl.col("method") == BASELINE).select(
        "bucket", *(pl.col(m).alias(f"{m}_lr") for m in METRICS))
    summary = summary.join(baseline, on="bucket", how="left").with_columns(
        pl.when(pl.col(f"{m}_lr") > 0).then(pl.col(m) / pl.col(f"{m}_lr") - 1.0).alias(f"{m}_gain_vs_lr")
        for m in METRICS)
    order = summary.with_columns(
        pl.col("method").replace_strict({m: i for i, m in enumerate(METHOD_ORDER)}, default=len(METHOD_ORDER),
                                        return_dtype=pl.Int64).alias("_method"),
        pl.when(pl.col("bucket") == "all").then(None).otherwise(pl.col("bucket")).cast(pl.Int64).alias("_bucket"))
    return (order.sort("_method", "method", "_bucket", nulls_last=True)
            .select("method", "bucket", *METRICS, *(f"{m}_gain_vs_lr" for m in METRICS), "n_advertisers"))


def paired_mean_difference(a, b) -> tuple[float, float]:
    """``(mean(a - b), its standard error)`` over the pairs where both are defined (advertisers
    scored by two methods): the paired difference's sample standard deviation over ``sqrt(n)``.
    NaN standard error below two pairs."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = (a - b)[~(np.isnan(a) | np.isnan(b))]
    if len(d) == 0:
        return float("nan"), float("nan")
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) >= 2 else float("nan")
    return float(d.mean()), se

"""The relevance model's evaluation: calibration per content type and surface (on the labels and
against the oracle's probabilities), Brier score, AUC, nDCG of whole candidate lists against the
true grade, and the seed's top-ranked share of relevant shopping ads. numpy, polars, scikit-learn.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from adrel_pipeline.evaluation.calibration import brier, ece, ndcg_at_k, reliability
from adrel_pipeline.world.contexts import CONTENT_TYPES, RELEVANT_GRADE, SURFACES

SEGMENTS = {"content_type": CONTENT_TYPES, "surface": SURFACES}
NDCG_K = 10


def calibration_metrics(scores: np.ndarray, test: pl.DataFrame, bins: int) -> dict[str, float]:
    """``ece`` on the labels and ``true_ece`` against the oracle's probabilities, overall and
    ``/<content_type>``, ``/<surface>``; ``brier``, ``auc``."""
    from sklearn.metrics import roc_auc_score

    y = test["relevant"].to_numpy().astype(np.float64)
    oracle = test["relevance_probability"].to_numpy()
    out = {"ece": ece(scores, y, bins), "true_ece": ece(scores, oracle, bins), "brier": brier(scores, y),
           "auc": float(roc_auc_score(y, scores)) if 0 < y.sum() < len(y) else float("nan")}
    for column, values in SEGMENTS.items():
        codes = test[column].to_numpy()
        for value in values:
            mask = codes == value
            if mask.any():
                out[f"ece/{value}"] = ece(scores[mask], y[mask], bins)
                out[f"true_ece/{value}"] = ece(scores[mask], oracle[mask], bins)
                out[f"brier/{value}"] = brier(scores[mask], y[mask])
    return out


def reliability_by(scores: np.ndarray, test: pl.DataFrame, column: str, bins: int) -> dict[str, dict]:
    """Reliability curves (on the labels) of each value of ``column``."""
    y = test["relevant"].to_numpy().astype(np.float64)
    codes = test[column].to_numpy()
    return {value: reliability(scores[codes == value], y[codes == value], bins)
            for value in SEGMENTS[column] if (codes == value).any()}


def ranking_metrics(scores: np.ndarray, lists: pl.DataFrame, top_k: int) -> dict[str, float]:
    """On whole candidate lists: ``ndcg_at_10`` (gain: true grade - 1) overall and per surface;
    among each context's ``top_k`` by score, the share of truly relevant ads
    (``top_k_relevant_share``), and for shopping ads their truly relevant share and mean click
    probability (``top_k_shopping_relevant_share``, ``top_k_shopping_ctr``)."""
    groups, grade = lists["context_id"].to_numpy(), lists["true_grade"].to_numpy()
    out = {"ndcg_at_10": ndcg_at_k(groups, scores, grade - 1.0, NDCG_K)}
    surface = lists["surface"].to_numpy()
    for value in SURFACES:
        mask = surface == value
        if mask.any():
            out[f"ndcg_at_10/{value}"] = ndcg_at_k(groups[mask], scores[mask], grade[mask] - 1.0, NDCG_K)
    ranked = lists.select("context_id", "content_type", "true_grade", "click_probability").with_columns(
        score=pl.Series(scores), row=pl.int_range(pl.len()))
    top = ranked.sort(["context_id", "score", "row"], descending=[False, True, False]).group_by(
        "context_id", maintain_order=True).head(top_k)
    relevant = pl.col("true_grade") >= RELEVANT_GRADE
    shopping = top.filter(pl.col("content_type") == "shopping")
    out["top_k_relevant_share"] = float(top.select(relevant.mean()).item())
    out["top_k_shopping_share"] = shopping.height / max(1, top.height)
    out["top_k_shopping_relevant_share"] = (float(shopping.select(relevant.mean()).item()) if shopping.height
                                            else float("nan"))
    out["top_k_shopping_ctr"] = float(shopping["click_probability"].mean()) if shopping.height else float("nan")
    return out


def evaluate(scores: np.ndarray, test: pl.DataFrame, list_scores: np.ndarray, lists: pl.DataFrame,
             bins: int, top_k: int) -> dict[str, float]:
    """Calibration on the test set and ranking on the whole lists, in one dict."""
    return calibration_metrics(scores, test, bins) | ranking_metrics(list_scores, lists, top_k)


def relative_difference(a: Mapping[str, float], b: Mapping[str, float], key: str) -> float:
    """``a[key] / b[key] - 1``: what ``a`` changes relative to ``b``."""
    return a[key] / b[key] - 1.0 if b[key] else float("nan")

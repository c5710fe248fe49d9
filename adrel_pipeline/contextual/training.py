"""The day's relevance models and their evaluation, as the ``relevance_model`` asset runs them.

Four models on the same labels, the same features and the same test set:

* ``full``: the production model (all features, calibrated on its held-out fold);
* ``no_category_match``: the seed's ablation, the same model on the legacy feature set, without
  ``category_match`` on shopping ads;
* ``heuristic``: the same model trained on the old heuristic's sample (post-auction winners of the
  zero-relevance holdout) instead of the candidate-level sample;
* ``uncalibrated``: the full model's trees without the calibration step;
* ``reseeded``: the production recipe with another seed (another calibration fold, so other trees
  and another calibration map): a second model of equal calibration, which the funnel swaps in to
  show that a calibrated model ships without retuning the ranking function.

and the oracle (the labels' true probability, and the true grade for ranking) beside them. The
test set is the candidate-level test job (contexts no model trained on); ranking metrics use the
logged whole candidate lists.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from adrel_pipeline.contextual.model import FEATURES, LEGACY_FEATURES, RelevanceModel, fit
from adrel_pipeline.contextual.spec import RelevanceModelSpec
from adrel_pipeline.evaluation.contextual import evaluate, reliability_by
from adrel_pipeline.graph.spec import MAX_SEED

MODELS: tuple[str, ...] = ("full", "no_category_match", "heuristic", "uncalibrated", "reseeded")
ORACLE = "oracle"


@dataclass(frozen=True)
class ContextualResult:
    models: dict[str, RelevanceModel]
    metrics: dict[str, dict[str, float]]  # model (and the oracle) -> metric -> value
    reliability: dict[str, dict[str, dict[str, dict]]]  # model -> column -> segment -> curve
    test_scores: dict[str, np.ndarray]  # model (and the oracle) -> scores of the test rows
    test: pl.DataFrame
    seconds: dict[str, float]


def job(labels: pl.DataFrame, name: str) -> pl.DataFrame:
    rows = labels.filter(pl.col("job") == name)
    if rows.height == 0:
        raise ValueError(f"the labels hold no rows of job {name!r} (jobs present: "
                         f"{sorted(labels['job'].unique().to_list())})")
    return rows


def train_and_evaluate(labels: pl.DataFrame, lists: pl.DataFrame, spec: RelevanceModelSpec) -> ContextualResult:
    """Fit the four models (see the module) and evaluate them and the oracle on the test job and
    on ``lists`` (whole candidate lists with their truth)."""
    import time

    train, heuristic, test = job(labels, "candidates"), job(labels, "heuristic"), job(labels, "test")
    reseeded = replace(spec, seed=spec.seed + 1 if spec.seed < MAX_SEED else 0)
    recipes = {"full": (train, FEATURES, None, spec), "no_category_match": (train, LEGACY_FEATURES, None, spec),
               "heuristic": (heuristic, FEATURES, None, spec), "uncalibrated": (train, FEATURES, "none", spec),
               "reseeded": (train, FEATURES, None, reseeded)}
    models, seconds = {}, {}
    for name, (rows, features, calibration, recipe_spec) in recipes.items():
        models[name] = fit(rows, recipe_spec, features, calibration)
        seconds[f"fit/{name}"] = models[name].fit_seconds
    scores, metrics, curves = {}, {}, {}
    for name, model in models.items():
        start = time.perf_counter()
        scores[name] = model.predict(test)
        list_scores = model.predict(lists)
        seconds[f"score/{name}"] = time.perf_counter() - start
        metrics[name] = evaluate(scores[name], test, list_scores, lists, spec.ece_bins, spec.top_k)
    scores[ORACLE] = test["relevance_probability"].to_numpy()
    metrics[ORACLE] = evaluate(scores[ORACLE], test, lists["true_grade"].to_numpy(), lists, spec.ece_bins, spec.top_k)
    for name in (*MODELS, ORACLE):
        curves[name] = {column: reliability_by(scores[name], test, column, spec.ece_bins)
                        for column in ("content_type", "surface")}
    return ContextualResult(models, metrics, curves, scores, test, seconds)

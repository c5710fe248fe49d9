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

:func:`train_and_evaluate_own` runs the same recipes on a team's own labelled pairs
(:mod:`adrel_pipeline.contextual.own_labels`), which have neither the heuristic's sample nor any truth.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from adrel_pipeline.contextual.model import FEATURES, LEGACY_FEATURES, RelevanceModel, context_folds, fit
from adrel_pipeline.contextual.spec import RelevanceModelSpec
from adrel_pipeline.evaluation.contextual import calibration_metrics, evaluate, ranking_metrics, reliability_by
from adrel_pipeline.graph.spec import MAX_SEED

MODELS: tuple[str, ...] = ("full", "no_category_match", "heuristic", "uncalibrated", "reseeded")
# A team's own labels: no heuristic (no zero-relevance holdout sample), no oracle (no truth).
OWN_MODELS: tuple[str, ...] = tuple(m for m in MODELS if m != "heuristic")
ORACLE = "oracle"
# The key of the own labels' train/test split of contexts: a draw of its own, not the calibration fold's.
_OWN_TEST_KEY = (1,)
# Metrics that need the generator's truth (the oracle's probabilities, click probabilities): NaN on own labels.
TRUTH_ONLY_METRICS = ("true_ece", "top_k_shopping_ctr")


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
    models, seconds = fit_models(train, spec, heuristic)
    scores, metrics = {}, {}
    for name, model in models.items():
        start = time.perf_counter()
        scores[name] = model.predict(test)
        list_scores = model.predict(lists)
        seconds[f"score/{name}"] = time.perf_counter() - start
        metrics[name] = evaluate(scores[name], test, list_scores, lists, spec.ece_bins, spec.top_k)
    scores[ORACLE] = test["relevance_probability"].to_numpy()
    metrics[ORACLE] = evaluate(scores[ORACLE], test, lists["true_grade"].to_numpy(), lists, spec.ece_bins, spec.top_k)
    return ContextualResult(models, metrics, reliability_curves(scores, test, spec), scores, test, seconds)


def fit_models(train: pl.DataFrame, spec: RelevanceModelSpec, heuristic: pl.DataFrame | None = None
               ) -> tuple[dict[str, RelevanceModel], dict[str, float]]:
    """The models of the module on ``train`` (and ``heuristic`` on its own sample, when given), in
    :data:`MODELS` order, and their fit times (``fit/<model>``)."""
    reseeded = replace(spec, seed=spec.seed + 1 if spec.seed < MAX_SEED else 0)
    recipes = {"full": (train, FEATURES, None, spec), "no_category_match": (train, LEGACY_FEATURES, None, spec),
               "heuristic": (heuristic, FEATURES, None, spec), "uncalibrated": (train, FEATURES, "none", spec),
               "reseeded": (train, FEATURES, None, reseeded)}
    models, seconds = {}, {}
    for name, (rows, features, calibration, recipe_spec) in recipes.items():
        if rows is None:
            continue
        models[name] = fit(rows, recipe_spec, features, calibration)
        seconds[f"fit/{name}"] = models[name].fit_seconds
    return models, seconds


def reliability_curves(scores: dict[str, np.ndarray], test: pl.DataFrame, spec: RelevanceModelSpec
                       ) -> dict[str, dict[str, dict[str, dict]]]:
    """Each scored model's reliability curves on ``test``, by content type and by surface."""
    return {name: {column: reliability_by(model_scores, test, column, spec.ece_bins)
                   for column in ("content_type", "surface")} for name, model_scores in scores.items()}


def split_own(pairs: pl.DataFrame, spec: RelevanceModelSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(train, test)``: ``pairs`` split by context, a seeded ``spec.test_fraction`` of the contexts
    to test (a draw keyed apart from the calibration fold's); a ValueError when either side is empty
    or holds one class only."""
    test_fraction = spec.test_fraction
    contexts = pairs["context_id"].n_unique()
    if contexts < 2:
        raise ValueError(f"the labels hold {contexts} context(s): too few for a test split (contexts disjoint "
                         "from training); label pairs of more contexts")
    held = context_folds(pairs, test_fraction, spec.seed, _OWN_TEST_KEY)
    train, test = pairs.filter(pl.Series(~held)), pairs.filter(pl.Series(held))
    for name, part in (("train", train), ("test", test)):
        if part.height == 0:
            raise ValueError(f"the {name} split of {contexts} contexts (test_fraction={test_fraction}) holds no "
                             "pairs: too few contexts for a test split; label pairs of more contexts or change "
                             "test_fraction")
        classes = part["relevant"].unique().to_list()
        if len(classes) < 2:
            raise ValueError(f"the {name} split holds {part.height} pairs of one class only (relevant="
                             f"{classes[0]}): the labels need relevant (4-5) and irrelevant (1-3) pairs on both sides")
    return train, test


def train_and_evaluate_own(pairs: pl.DataFrame, spec: RelevanceModelSpec) -> ContextualResult:
    """The models of the module, but ``heuristic``, on a team's own labelled ``pairs``
    (:func:`adrel_pipeline.contextual.own_labels.aggregate_ratings`), evaluated on held-out contexts.

    The pairs are split by context (:func:`split_own`: train and test contexts disjoint, seeded by
    ``spec.seed``); ``full``, ``no_category_match``, ``uncalibrated`` and ``reseeded`` are fitted on
    the train pairs exactly as :func:`train_and_evaluate` fits them (calibration fold inside them).
    On the test pairs: ECE on the labels (overall, per content type and surface), Brier and AUC;
    ranking metrics (``ndcg_at_10``, ``top_k_relevant_share`` and the shopping shares) over each
    test context's labelled pairs with the 5-point label standing in for the true grade (gain
    label - 1, relevant: label >= 4). A labelled list is a sample of the context's candidate list,
    not the whole list, so these rank what was labelled. Metrics that need the generator's truth
    (:data:`TRUTH_ONLY_METRICS`: ``true_ece`` and its segments, ``top_k_shopping_ctr``) are NaN,
    and there is no oracle. A ValueError when a split or fold holds one class only or there are
    too few contexts.
    """
    import time

    train, test = split_own(pairs, spec)
    models, seconds = fit_models(train, spec)
    # The labels stand in for the truth the metrics read; the oracle's columns are NaN, never faked.
    truthless = test.with_columns(relevance_probability=pl.lit(float("nan"), dtype=pl.Float64),
                                  true_grade=pl.col("label").cast(pl.Float64),
                                  click_probability=pl.lit(float("nan"), dtype=pl.Float64))
    scores, metrics = {}, {}
    for name, model in models.items():
        start = time.perf_counter()
        scores[name] = model.predict(test)
        seconds[f"score/{name}"] = time.perf_counter() - start
        values = calibration_metrics(scores[name], truthless, spec.ece_bins) | ranking_metrics(
            scores[name], truthless, spec.top_k)
        metrics[name] = {k: float("nan") if k.split("/")[0] in TRUTH_ONLY_METRICS else v for k, v in values.items()}
    return ContextualResult(models, metrics, reliability_curves(scores, test, spec), scores, test, seconds)

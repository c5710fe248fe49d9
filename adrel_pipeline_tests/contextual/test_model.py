"""The relevance model: its feature matrix (the legacy set without category match on shopping ads),
the fit (trees on one fold of contexts, calibration on the other), what calibration buys, and the
safe skops payload."""

import dataclasses
import functools
import os

import numpy as np
import polars as pl
import pytest

from adrel_pipeline.contextual.labels import label_rows
from adrel_pipeline.contextual.model import (
    FEATURES,
    LEGACY_CATEGORY_MATCH,
    LEGACY_FEATURES,
    RelevanceModel,
    context_folds,
    feature_matrix,
    fit,
    load_skops,
)
from adrel_pipeline.contextual.spec import CALIBRATIONS, ContextualConfigError, LabelSpec, RelevanceModelSpec
from adrel_pipeline.evaluation.calibration import ece
from adrel_pipeline.params import choice, declarations

# Small and quick: the behaviours are under test, not the model's quality.
QUICK = RelevanceModelSpec(max_iter=30, min_samples_leaf=20)
# Deep trees, a large step and leaves of two rows on 4,000 noisy labels: overconfident off the training rows.
OVERFIT = RelevanceModelSpec(max_iter=60, learning_rate=0.5, max_leaf_nodes=31, min_samples_leaf=2)


@pytest.fixture(scope="module", autouse=True)
def _one_openmp_thread():
    # The trees' OpenMP threads spin while they wait: on 2 busy cores a 2-thread fit of these small
    # frames runs ~10x slower than a 1-thread one. One thread: the same fits, in steady time.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def labelled(candidates):
    """Training rows (4,000 of the first 1,200 contexts) and test rows (every candidate of the others)."""
    labels = label_rows(candidates, LabelSpec(), (1,))
    first = labels["context_id"].unique().sort().head(1200).implode()
    train = labels.filter(pl.col("context_id").is_in(first)).sample(4000, seed=0).sort("context_id", "ad_id")
    return train, labels.filter(~pl.col("context_id").is_in(first))


@pytest.fixture(scope="module")
def quick_models(labelled):
    train, _ = labelled
    return {"full": fit(train, QUICK), "legacy": fit(train, QUICK, LEGACY_FEATURES)}


@pytest.mark.parametrize("fields, expected", [
    ({"calibration": "platt"},
     "calibration='platt' is out of range: must be one of 'isotonic', 'sigmoid', 'none'"),
    ({"calibration": 1}, "calibration=1 is out of range: must be one of 'isotonic', 'sigmoid', 'none'"),
    ({"calibration_fraction": 0.0}, "calibration_fraction=0.0 is out of range: must be a number in (0, 0.9]"),
    ({"max_leaf_nodes": 1}, "max_leaf_nodes=1 is out of range: must be an integer in [2, 4096]"),
    ({"ece_bins": 1}, "ece_bins=1 is out of range"),
])
def test_invalid_model_fields_name_field_and_choices(fields, expected):
    with pytest.raises(ContextualConfigError) as err:
        RelevanceModelSpec(**fields)
    assert expected in str(err.value)


def test_choice_params_declare_their_choices():
    assert CALIBRATIONS == ("isotonic", "sigmoid", "none")
    allowed = {d.name: d.allowed for d in declarations(RelevanceModelSpec)}
    assert allowed["calibration"] == "one of 'isotonic', 'sigmoid', 'none'"
    for method in CALIBRATIONS:
        assert RelevanceModelSpec(calibration=method).calibration == method
    with pytest.raises(ValueError, match="'platt' is not one of"):
        choice("platt", "A bad default.", CALIBRATIONS)


def _hand_frame() -> pl.DataFrame:
    return pl.DataFrame({
        "content_type": ["regular", "shopping", "video", "carousel", "shopping"],
        "surface": ["home", "search", "closeup", "search", "home"],
        "query_intent": [None, "shop", None, "learn", None],
        "text_match": [None, 0.2, 0.1, 0.3, None],
        "embedding_similarity": [0.5, None, 0.4, 0.2, 0.1],
        "image_similarity": [0.3, 0.7, None, 0.9, 0.6],
        "category_match": [1.0, 1.0, 0.0, 0.0, 0.0],
    })


def test_feature_matrix_hand_worked():
    nan = np.nan
    assert FEATURES == ("text_match", "embedding_similarity", "category_match", "image_similarity_regular",
                        "image_similarity_video", "image_similarity_shopping", "image_similarity_carousel",
                        "surface", "content_type", "query_intent")
    expected = np.array([
        # text emb  cat  img_reg img_vid img_shop img_car surface content intent
        [nan, 0.5, 1.0, 0.3, nan, nan, nan, 0, 0, nan],
        [0.2, nan, 1.0, nan, nan, 0.7, nan, 1, 2, 1],
        [0.1, 0.4, 0.0, nan, nan, nan, nan, 2, 1, nan],   # a video without an image
        [0.3, 0.2, 0.0, nan, nan, nan, 0.9, 1, 3, 2],
        [nan, 0.1, 0.0, nan, nan, 0.6, nan, 0, 2, nan],
    ])
    np.testing.assert_array_equal(feature_matrix(_hand_frame()), expected)


def test_the_legacy_features_drop_category_match_on_shopping_ads_only():
    frame = _hand_frame()
    legacy = feature_matrix(frame, LEGACY_FEATURES)
    assert LEGACY_FEATURES == tuple(LEGACY_CATEGORY_MATCH if f == "category_match" else f for f in FEATURES)
    column = LEGACY_FEATURES.index(LEGACY_CATEGORY_MATCH)
    np.testing.assert_array_equal(legacy[:, column], [1.0, np.nan, 0.0, 0.0, np.nan])
    # Every other column is the full set's.
    others = [i for i in range(len(FEATURES)) if i != column]
    np.testing.assert_array_equal(legacy[:, others], feature_matrix(frame)[:, others])


def test_the_legacy_column_on_a_days_candidates(candidates):
    legacy = feature_matrix(candidates, LEGACY_FEATURES)[:, LEGACY_FEATURES.index(LEGACY_CATEGORY_MATCH)]
    shopping = (candidates["content_type"] == "shopping").to_numpy()
    assert shopping.any() and (~shopping).any()
    assert np.isnan(legacy[shopping]).all()
    np.testing.assert_array_equal(legacy[~shopping], candidates["category_match"].to_numpy()[~shopping])


def _flip_category_match(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(category_match=1.0 - pl.col("category_match"))


def test_a_legacy_model_cannot_see_category_match_on_shopping_ads(labelled, quick_models):
    _, test = labelled
    legacy = quick_models["legacy"]
    flipped = _flip_category_match(test)
    shopping = (test["content_type"] == "shopping").to_numpy()
    before, after = legacy.predict(test), legacy.predict(flipped)
    np.testing.assert_array_equal(before[shopping], after[shopping])
    # It does use the column elsewhere.
    assert (before[~shopping] != after[~shopping]).mean() > 0.1


def test_the_full_model_uses_category_match_everywhere(labelled, quick_models):
    _, test = labelled
    full = quick_models["full"]
    before, after = full.predict(test), full.predict(_flip_category_match(test))
    shopping = (test["content_type"] == "shopping").to_numpy()
    assert (before[shopping] != after[shopping]).mean() > 0.1
    assert (before[~shopping] != after[~shopping]).mean() > 0.1
    # A category match raises the probability (the truth's +1.6, and +2.4 more on shopping ads).
    match = test["category_match"].to_numpy() == 1
    assert before[match].mean() > after[match].mean()
    assert ((0 <= before) & (before <= 1)).all()


def test_context_folds_split_whole_contexts(labelled):
    train, _ = labelled
    held = context_folds(train, 0.25, 0)
    per_context = pl.DataFrame({"c": train["context_id"], "h": held}).group_by("c").agg(pl.col("h").n_unique())
    assert (per_context["h"] == 1).all()
    contexts = train["context_id"].n_unique()
    chosen = train.filter(pl.Series(held))["context_id"].n_unique()
    assert abs(chosen - 0.25 * contexts) <= 5 * np.sqrt(contexts * 0.25 * 0.75)
    np.testing.assert_array_equal(held, context_folds(train, 0.25, 0))
    assert not np.array_equal(held, context_folds(train, 0.25, 1))
    # Row order does not change a context's fold.
    reversed_ = train.reverse()
    np.testing.assert_array_equal(context_folds(reversed_, 0.25, 0), held[::-1])


def test_the_trees_never_see_the_calibration_fold(labelled, quick_models):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.isotonic import IsotonicRegression

    train, test = labelled
    model = quick_models["full"]
    assert isinstance(model.estimator, CalibratedClassifierCV) and model.estimator.method == "isotonic"
    held = context_folds(train, QUICK.calibration_fraction, QUICK.seed)
    # The same trees, fit on the other contexts alone: identical scores.
    alone = fit(train.filter(pl.Series(~held)), QUICK, calibration="none")
    trees = model.estimator.estimator.estimator  # CalibratedClassifierCV -> FrozenEstimator -> trees
    X_test = feature_matrix(test)
    np.testing.assert_array_equal(trees.predict_proba(X_test), alone.estimator.predict_proba(X_test))
    # And the calibration is isotonic regression on the calibration fold's scores alone.
    X_held, y_held = feature_matrix(train.filter(pl.Series(held))), train.filter(pl.Series(held))["relevant"]
    iso = IsotonicRegression(out_of_bounds="clip").fit(trees.decision_function(X_held), y_held.to_numpy())
    np.testing.assert_allclose(model.predict(test), iso.predict(trees.decision_function(X_test)), atol=1e-12)


def test_calibration_fixes_an_overconfident_model(labelled):
    train, test = labelled
    truth = test["relevance_probability"].to_numpy()
    y = test["relevant"].to_numpy().astype(float)
    raw = fit(train, OVERFIT, calibration="none").predict(test)
    isotonic = fit(train, OVERFIT, calibration="isotonic").predict(test)
    sigmoid = fit(train, OVERFIT, calibration="sigmoid").predict(test)
    # The overfit trees are overconfident: their high scores are too high, their low ones too low.
    high, low = raw > 0.9, raw < 0.1
    assert raw[high].mean() > truth[high].mean() and raw[low].mean() < truth[low].mean()
    raw_ece = ece(raw, truth)
    # Against the oracle's probabilities (the true ECE, free of label noise), and on the labels.
    assert ece(isotonic, truth) < raw_ece / 2 and ece(sigmoid, truth) < raw_ece / 2
    assert ece(isotonic, y) < ece(raw, y) / 2
    # The spec's calibration is the default; the argument overrides it.
    assert isinstance(fit(train, dataclasses.replace(OVERFIT, calibration="none")).estimator,
                      type(fit(train, OVERFIT, calibration="none").estimator))


def test_fit_refuses_unknown_features_and_one_class_folds(labelled):
    train, _ = labelled
    with pytest.raises(ValueError, match="unknown features \\['bid'\\]"):
        fit(train, QUICK, (*FEATURES, "bid"))
    with pytest.raises(ValueError, match="the fit fold holds .* rows of one class only: label more rows"):
        fit(train.with_columns(relevant=pl.lit(False)), QUICK)
    held = pl.Series(context_folds(train, QUICK.calibration_fraction, QUICK.seed))
    one_class_fold = train.with_columns(relevant=pl.when(held).then(False).otherwise(pl.col("relevant")))
    with pytest.raises(ValueError, match=f"the calibration fold holds {int(held.sum())} rows of one class only"):
        fit(one_class_fold, QUICK)
    # Without calibration no fold is held out: the same frame fits.
    assert fit(one_class_fold, QUICK, calibration="none").predict(train).shape == (train.height,)


def test_the_payload_round_trips_through_a_weights_only_file(labelled, quick_models, tmp_path):
    import torch

    from adrel_pipeline.mlops import serialization

    _, test = labelled
    for model in quick_models.values():
        payload = model.to_payload()
        again = RelevanceModel.from_payload(payload)
        assert again.features == model.features and again.fit_seconds == model.fit_seconds
        np.testing.assert_array_equal(again.predict(test), model.predict(test))
        path = tmp_path / f"{len(model.features)}-{model.features[2]}.pt"
        serialization.save(payload, path)
        loaded = torch.load(path, weights_only=True)
        assert loaded["features"] == list(model.features)
        np.testing.assert_array_equal(RelevanceModel.from_payload(loaded).predict(test), model.predict(test))


class _Gadget:
    def __init__(self):
        self.armed = True


def _helper(x):
    return x


@pytest.mark.parametrize("make, refused", [
    (lambda: _sklearn("FunctionTransformer")(func=os.system), "system"),
    (lambda: _sklearn("FunctionTransformer")(func=functools.partial(os.system, "true")), "system"),
    (lambda: _sklearn("FunctionTransformer")(func=eval), "builtins.eval"),
    (lambda: _sklearn("FunctionTransformer")(func=_helper), "test_model._helper"),
    (lambda: {"model": _sklearn("LogisticRegression")(), "extra": _Gadget()}, "test_model._Gadget"),
    # numpy's own functions are no safer: this one writes a file when the transformer runs.
    (lambda: _sklearn("FunctionTransformer")(func=functools.partial(np.savetxt, "/tmp/adrel-x")), "numpy.savetxt"),
])
def test_load_skops_refuses_types_our_models_do_not_hold(make, refused):
    import skops.io
    import torch

    data = skops.io.dumps(make())
    with pytest.raises(ValueError, match="refusing to load a model holding types this code does not produce") as err:
        load_skops(data)
    assert refused in str(err.value)
    # Through the payload too (what the IO manager and MLflow read).
    payload = {"features": list(FEATURES), "skops": torch.frombuffer(bytearray(data), dtype=torch.uint8)}
    with pytest.raises(ValueError, match="refusing to load"):
        RelevanceModel.from_payload(payload)


@pytest.mark.parametrize("calibration", CALIBRATIONS)
def test_load_skops_accepts_every_model_this_code_fits(labelled, calibration):
    import skops.io

    train, _ = labelled
    for features in (FEATURES, LEGACY_FEATURES):
        estimator = fit(train, QUICK, features, calibration).estimator
        assert type(load_skops(skops.io.dumps(estimator))) is type(estimator)


def _sklearn(name: str):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import FunctionTransformer

    return {"FunctionTransformer": FunctionTransformer, "LogisticRegression": LogisticRegression}[name]

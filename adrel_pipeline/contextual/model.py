"""One relevance model for every content type: gradient-boosted trees on the signals, the surface,
the content type and the query intent, calibrated on a held-out fold of contexts.

scikit-learn's ``HistGradientBoostingClassifier`` learns ``P(relevant | signals)`` from the
labels (absent signals are NaN, which the trees route on their own; the categorical columns are
native categories), then ``CalibratedClassifierCV(FrozenEstimator(model))`` fits isotonic (or
sigmoid) calibration on the calibration fold alone, so no row serves both. The seed's ablation is
the same model without ``category_match``.

A fitted model is kept as skops bytes (safe to load: only the types these models hold are
trusted), so the IO manager stores it in a weights-only ``.pt`` file and MLflow logs it with the
sklearn flavour's skops format.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from adrel_pipeline.contextual.spec import RelevanceModelSpec
from adrel_pipeline.world.contexts import CONTENT_TYPES, QUERY_INTENTS, SIGNALS, SURFACES

CATEGORICAL: dict[str, tuple[str, ...]] = {"surface": SURFACES, "content_type": CONTENT_TYPES,
                                           "query_intent": QUERY_INTENTS}
# Image similarity means something else on each content type (a carousel shows its best image, a
# product image scores high anywhere): one column per content type, so no tree has to learn the
# content type's interaction before it can use the signal. On the default world this takes the worst
# content type's ECE from ~0.02 (carousel) to ~0.015 at 20,000-30,000 labels.
IMAGE_BY_CONTENT_TYPE = {f"image_similarity_{c}": c for c in CONTENT_TYPES}
FEATURES: tuple[str, ...] = (*(s for s in SIGNALS if s != "image_similarity"), *IMAGE_BY_CONTENT_TYPE,
                             *CATEGORICAL)
# The seed's legacy feature set: category match was missing on shopping content only. The ablation
# reads this column in its place: category_match, absent (NaN) on every shopping ad.
LEGACY_CATEGORY_MATCH = "category_match_except_shopping"
LEGACY_FEATURES: tuple[str, ...] = tuple(LEGACY_CATEGORY_MATCH if f == "category_match" else f for f in FEATURES)
_KNOWN = (*FEATURES, LEGACY_CATEGORY_MATCH)
_STREAM_FOLDS = 61
# Beyond what skops trusts by default (scikit-learn's estimators, numpy arrays), exactly the types
# this module's models hold: a prefix such as "numpy." would also admit I/O functions (np.savetxt in
# a partial) that a crafted payload could run at predict time.
TRUSTED_TYPES = frozenset({
    "functools.partial",  # wraps check_array below
    "sklearn.utils.validation.check_array",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
})


def feature_matrix(frame: pl.DataFrame, features: tuple[str, ...] = FEATURES) -> np.ndarray:
    """``(rows, features)`` float64: signals as they are (null -> NaN), image similarity split by
    content type (NaN on the other types), categories as their codes (null -> NaN, a missing
    category to the trees)."""
    columns = []
    for name in features:
        if name in IMAGE_BY_CONTENT_TYPE:
            present = (frame["content_type"] == IMAGE_BY_CONTENT_TYPE[name]).to_numpy()
            image = frame["image_similarity"].cast(pl.Float64).fill_null(np.nan).to_numpy()
            columns.append(np.where(present, image, np.nan))
        elif name == LEGACY_CATEGORY_MATCH:
            shopping = (frame["content_type"] == "shopping").to_numpy()
            columns.append(np.where(shopping, np.nan, frame["category_match"].cast(pl.Float64).fill_null(np.nan)
                                    .to_numpy()))
        elif name in CATEGORICAL:
            codes = frame[name].cast(pl.Enum(CATEGORICAL[name])).to_physical().cast(pl.Float64)
            columns.append(codes.fill_null(np.nan).to_numpy())
        else:
            columns.append(frame[name].cast(pl.Float64).fill_null(np.nan).to_numpy())
    return np.column_stack(columns) if columns else np.empty((frame.height, 0))


def context_folds(frame: pl.DataFrame, fraction: float, seed: int, key: tuple[int, ...] = ()) -> np.ndarray:
    """A boolean per row: True for the rows of a ``fraction`` of the contexts (a seeded draw per context id)."""
    contexts = frame["context_id"].unique().sort()
    chosen = np.random.default_rng([seed, _STREAM_FOLDS, *key]).random(len(contexts)) < fraction
    return frame["context_id"].is_in(contexts.filter(pl.Series(chosen)).implode()).to_numpy()


@dataclass(frozen=True)
class RelevanceModel:
    """A fitted model and the features it reads, in order."""

    features: tuple[str, ...]
    estimator: object
    fit_seconds: float = 0.0

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """The calibrated probability that each (context, ad) row is relevant."""
        return self.estimator.predict_proba(feature_matrix(frame, self.features))[:, 1]

    def to_payload(self) -> dict:
        import skops.io
        import torch

        data = skops.io.dumps(self.estimator)
        return {"features": list(self.features), "skops": torch.frombuffer(bytearray(data), dtype=torch.uint8),
                "fit_seconds": self.fit_seconds}

    @classmethod
    def from_payload(cls, payload: dict) -> RelevanceModel:
        return cls(tuple(payload["features"]), load_skops(payload["skops"].numpy().tobytes()),
                   float(payload.get("fit_seconds", 0.0)))


def load_skops(data: bytes):
    """A skops-serialised estimator, trusting skops's defaults and :data:`TRUSTED_TYPES` only."""
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=data)
    refused = sorted(set(untrusted) - TRUSTED_TYPES)
    if refused:
        raise ValueError(f"refusing to load a model holding types this code does not produce: {refused[:5]}")
    return skops.io.loads(data, trusted=untrusted)


def fit(train: pl.DataFrame, spec: RelevanceModelSpec, features: tuple[str, ...] = FEATURES,
        calibration: str | None = None) -> RelevanceModel:
    """Fit on ``train``'s ``relevant`` labels: the trees on the contexts outside the calibration
    fold, the calibration (``spec.calibration`` unless ``calibration`` says otherwise) on the fold."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.frozen import FrozenEstimator

    method = calibration or spec.calibration
    unknown = [f for f in features if f not in _KNOWN]
    if unknown:
        raise ValueError(f"unknown features {unknown}: allowed {list(_KNOWN)}")
    start = time.perf_counter()
    X, y = feature_matrix(train, features), train["relevant"].to_numpy()
    held = context_folds(train, spec.calibration_fraction, spec.seed) if method != "none" else np.zeros(len(y), bool)
    for name, part in (("fit", ~held), ("calibration", held)):
        if (name == "fit" or method != "none") and len(np.unique(y[part])) < 2:
            raise ValueError(f"the {name} fold holds {int(part.sum())} rows of one class only: label more rows "
                             "(labelling_budget) or change calibration_fraction")
    trees = HistGradientBoostingClassifier(
        max_iter=spec.max_iter, learning_rate=spec.learning_rate, max_leaf_nodes=spec.max_leaf_nodes,
        min_samples_leaf=spec.min_samples_leaf, l2_regularization=spec.l2_regularization,
        categorical_features=[f in CATEGORICAL for f in features], early_stopping=False,
        random_state=spec.seed).fit(X[~held], y[~held])
    estimator = trees if method == "none" else CalibratedClassifierCV(
        FrozenEstimator(trees), method=method).fit(X[held], y[held])
    return RelevanceModel(tuple(features), estimator, time.perf_counter() - start)


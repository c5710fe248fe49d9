"""The registered contextual relevance model (``adrel-relevance``) as an MLflow ``pyfunc``
(models-from-code, its estimator as skops bytes in a weights-only artifact, no Dagster).

Input: a DataFrame with the signals (``text_match``, ``embedding_similarity``,
``image_similarity``, ``category_match``; missing values as NaN or None) and ``surface``,
``content_type``, ``query_intent`` (None off search). Output: the calibrated probability that
each (context, ad) row is relevant.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl

from adrel_pipeline.contextual.model import CATEGORICAL, RelevanceModel
from adrel_pipeline.mlops import serialization
from adrel_pipeline.world.contexts import SIGNALS

PYFUNC_FILE = Path("contextual") / "pyfunc_model.py"
MODEL = "relevance_model"
INPUT_COLUMNS = (*SIGNALS, *CATEGORICAL)


def model_signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    inputs = [ColSpec("double", s, required=s == "category_match") for s in SIGNALS]
    inputs += [ColSpec("string", c, required=c != "query_intent") for c in CATEGORICAL]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([TensorSpec(np.dtype("float64"), (-1,))]))


class RelevancePyfunc(mlflow.pyfunc.PythonModel):
    model: RelevanceModel

    def load_context(self, context) -> None:
        self.model = RelevanceModel.from_payload(serialization.load(Path(context.artifacts[MODEL])))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        missing = [c for c in INPUT_COLUMNS if c not in model_input.columns and c != "query_intent"]
        if missing:
            raise ValueError(f"model input lacks columns {missing}: expected {list(INPUT_COLUMNS)}")
        frame = pl.from_pandas(model_input.reindex(columns=list(INPUT_COLUMNS)), nan_to_null=True)
        frame = frame.with_columns(*[pl.col(c).cast(pl.Float64) for c in SIGNALS],
                                   *[pl.col(c).cast(pl.Utf8) for c in CATEGORICAL])
        return self.model.predict(frame)


mlflow.models.set_model(RelevancePyfunc())

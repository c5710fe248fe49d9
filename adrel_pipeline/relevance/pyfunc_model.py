"""The registered model: GAT weights plus the graph they embed, as an MLflow ``pyfunc``.

Input: a DataFrame with integer columns ``user_id`` and ``ad_id`` (original ids, not node
indices). Output: the relevance probability of each row. The artifacts are a weights-only
checkpoint (``state_dict`` + config) and the graph whose edges are the known interactions at
scoring time. The model is logged as code (MLflow's models-from-code: this file is stored with
the model and run at load time), so nothing is pickled; the library code it imports is logged
with it too (:func:`adrel_pipeline.mlops.packaging.log_model`), so loading needs neither an
installed ``adrel_pipeline`` nor Dagster, nor any of the training process's state.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from adrel_pipeline.mlops import serialization
from adrel_pipeline.mlops.packaging import CHECKPOINT, GRAPH
from adrel_pipeline.relevance.model import AdRelevanceModel, load_model
from adrel_pipeline.relevance.ranking import AdRanker

INPUT_COLUMNS = ("user_id", "ad_id")


class AdRelevancePyfunc(mlflow.pyfunc.PythonModel):
    ranker: AdRanker

    def load_context(self, context) -> None:
        checkpoint = torch.load(context.artifacts[CHECKPOINT], weights_only=True)
        graph = serialization.load(Path(context.artifacts[GRAPH]))
        self.ranker = AdRanker(load_model(checkpoint), graph)

    @property
    def model(self) -> AdRelevanceModel:
        return self.ranker.model

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        missing = [c for c in INPUT_COLUMNS if c not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks columns {missing}: expected {list(INPUT_COLUMNS)}")
        return self.ranker.score(model_input["user_id"].tolist(), model_input["ad_id"].tolist()).numpy()


# Models-from-code: MLflow runs this file at load time and serves the model set here.
mlflow.models.set_model(AdRelevancePyfunc())

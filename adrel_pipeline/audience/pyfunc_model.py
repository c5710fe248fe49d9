"""The registered Actalike model: per-advertiser heads over the universal user embeddings, as an
MLflow ``pyfunc`` (models-from-code, weights-only artifacts, no Dagster).

Input: a DataFrame with ``advertiser_id`` (string) and ``user_id`` (integer) columns. Output: the
probability that each user belongs to the advertiser's audience. :meth:`ActalikePyfunc.expand`
gives an advertiser's top-k users over every user in one pass.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from adrel_pipeline.mlops import serialization

PYFUNC_FILE = Path("audience") / "pyfunc_model.py"
HEADS, EMBEDDINGS = "heads", "embeddings"
INPUT_COLUMNS = ("advertiser_id", "user_id")


def model_signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    return ModelSignature(inputs=Schema([ColSpec("string", "advertiser_id"), ColSpec("long", "user_id")]),
                          outputs=Schema([TensorSpec(np.dtype("float32"), (-1,))]))


class ActalikePyfunc(mlflow.pyfunc.PythonModel):
    heads: dict
    user_ids: np.ndarray
    embeddings: torch.Tensor

    def load_context(self, context) -> None:
        self.heads = serialization.load(Path(context.artifacts[HEADS]))
        stored = serialization.load(Path(context.artifacts[EMBEDDINGS]))
        self.user_ids = stored["user_ids"].numpy()
        self.embeddings = stored["embeddings"]

    @property
    def advertisers(self) -> list[str]:
        return sorted(self.heads)

    def scores(self, advertiser_id: str) -> np.ndarray:
        """The advertiser's probability for every user (``self.user_ids`` order)."""
        from adrel_pipeline.audience.methods import score_heads
        from adrel_pipeline.audience.training import stack_heads

        if advertiser_id not in self.heads:
            raise KeyError(f"advertiser {advertiser_id!r} has no head in this model version "
                           f"(it has {len(self.heads)}: {', '.join(self.advertisers[:5])}...)")
        return score_heads(stack_heads([self.heads[advertiser_id]]), self.embeddings)[0].numpy()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        missing = [c for c in INPUT_COLUMNS if c not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks columns {missing}: expected {list(INPUT_COLUMNS)}")
        from adrel_pipeline.world.simulation import row_positions

        rows = row_positions(self.user_ids, model_input["user_id"].to_numpy(), "user_id", "this model's users")
        out = np.empty(len(model_input), dtype=np.float32)
        advertisers = model_input["advertiser_id"].astype(str).to_numpy()
        for advertiser in np.unique(advertisers):
            mask = advertisers == advertiser
            out[mask] = self.scores(advertiser)[rows[mask]]
        return out

    def expand(self, advertiser_id: str, k: int, exclude=()) -> pd.DataFrame:
        """The advertiser's ``k`` highest-scoring users, excluding ``exclude`` (e.g. its seed list)."""
        scores = self.scores(advertiser_id).astype(np.float64)
        scores[np.isin(self.user_ids, np.asarray(list(exclude), dtype=np.int64))] = -np.inf
        order = np.lexsort((self.user_ids, -scores))[:k]
        order = order[np.isfinite(scores[order])]
        return pd.DataFrame({"user_id": self.user_ids[order], "score": scores[order],
                             "rank": np.arange(1, len(order) + 1)})


mlflow.models.set_model(ActalikePyfunc())

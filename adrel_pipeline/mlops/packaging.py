"""The relevance model as an MLflow ``pyfunc``: logged as code with its weights-only artifacts, its
signature, an input example, its pip requirements and this package's source, so that
``mlflow.pyfunc.load_model`` works in any process that can install the requirements (no Dagster)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

MODEL_ARTIFACT = "model"


def pip_requirements() -> list[str]:
    import mlflow
    import numpy
    import pandas
    import polars
    import torch
    import torch_geometric

    return [f"torch=={torch.__version__.split('+')[0]}", f"torch_geometric=={torch_geometric.__version__}",
            f"mlflow=={mlflow.__version__}", f"numpy=={numpy.__version__}", f"pandas=={pandas.__version__}",
            f"polars=={polars.__version__}"]


@dataclass(frozen=True)
class LoggedModel:
    model_uri: str
    model_id: str | None


def model_signature():
    """Input: integer ``user_id`` and ``ad_id`` columns; output: one float32 probability per row."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    return ModelSignature(inputs=Schema([ColSpec("long", "user_id"), ColSpec("long", "ad_id")]),
                          outputs=Schema([TensorSpec(np.dtype("float32"), (-1,))]))


def log_model(checkpoint: dict, graph: HeteroData, input_example) -> LoggedModel:
    """Log the pyfunc (weights + scoring graph) to the active run, with signature and example."""
    import mlflow
    import torch

    from adrel_pipeline.mlops import serialization
    from adrel_pipeline.relevance import pyfunc_model

    with tempfile.TemporaryDirectory() as tmp:
        paths = {pyfunc_model.CHECKPOINT: Path(tmp) / "checkpoint.pt", pyfunc_model.GRAPH: Path(tmp) / "graph.pt"}
        torch.save(checkpoint, paths[pyfunc_model.CHECKPOINT])
        serialization.save(graph, paths[pyfunc_model.GRAPH])
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=pyfunc_model.__file__,
            artifacts={k: str(v) for k, v in paths.items()},
            signature=model_signature(),
            input_example=input_example,
            pip_requirements=pip_requirements(),
        )
    return LoggedModel(model_uri=info.model_uri, model_id=getattr(info, "model_id", None))


def load_pyfunc(model_uri: str):
    """The registered model as our Python class (``.model``, ``.ranker``), from any model URI."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()



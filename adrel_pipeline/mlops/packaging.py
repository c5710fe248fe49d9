"""The relevance model as an MLflow ``pyfunc``, self-contained: logged as code (MLflow's
models-from-code) with its weights-only artifacts, its signature, an input example, pip
requirements naming every third-party package the shipped code imports, and this package's
source (``code_paths``) without the Dagster code location, so that ``mlflow.pyfunc.load_model``
works in any process that can install the requirements: no Dagster, no installed ``adrel_pipeline``.

This module names the model's file (:data:`PYFUNC_MODEL`) but never imports it: ``mlops`` does
not depend on :mod:`adrel_pipeline.relevance`; the pyfunc reads its artifact keys from here."""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

MODEL_ARTIFACT = "model"
# The artifact keys the pyfunc's ``load_context`` reads.
CHECKPOINT, GRAPH = "checkpoint", "graph"
# The package shipped with the model, and the models-from-code file inside it.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
PYFUNC_MODEL = Path("relevance") / "pyfunc_model.py"
# Never shipped: the Dagster code location (the model must load without Dagster), and bytecode.
_NOT_SHIPPED = frozenset({"defs", "definitions.py"})

# Distributions of every third-party module the shipped code imports when the model is loaded
# and scores (pyfunc_model and what it imports: relevance, graph, world, evaluation.metrics,
# mlops.serialization); world/spec.py imports yaml. The packaging test fails if one is missing.
# The contextual relevance model (contextual/pyfunc_model.py) loads a scikit-learn estimator from skops.
REQUIRED_DISTRIBUTIONS = ("mlflow", "numpy", "pandas", "polars", "pyyaml", "scikit-learn", "scipy", "skops", "torch",
                          "torch_geometric")


def pip_requirements() -> list[str]:
    """:data:`REQUIRED_DISTRIBUTIONS` pinned to the installed versions (torch without its local
    ``+cpu`` tag: the index it came from is the installer's choice)."""
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in REQUIRED_DISTRIBUTIONS]


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


def _not_shipped(directory: str, names: list[str]) -> set[str]:
    top = Path(directory).resolve() == PACKAGE_DIR
    return {n for n in names if n == "__pycache__" or n.endswith(".pyc") or (top and n in _NOT_SHIPPED)}


def shipped_package(destination: Path) -> Path:
    """A copy of ``adrel_pipeline`` under ``destination`` as the model ships it: the library
    without ``defs/``, ``definitions.py`` and bytecode."""
    return Path(shutil.copytree(PACKAGE_DIR, Path(destination) / PACKAGE_DIR.name, ignore=_not_shipped))


def log_model(checkpoint: dict, graph: HeteroData, input_example) -> LoggedModel:
    """Log the relevance pyfunc (weights + scoring graph + this package's library code) to the
    active run, with signature, example and pinned requirements."""
    return log_pyfunc(PYFUNC_MODEL, {CHECKPOINT: checkpoint, GRAPH: graph}, model_signature(), input_example)


def log_pyfunc(python_model: Path, artifacts: dict, signature, input_example) -> LoggedModel:
    """Log the models-from-code file ``python_model`` (relative to the package) with ``artifacts``
    (key -> value, each written with :func:`serialization.save` as a weights-only ``.pt`` file) and
    this package's library code, to the active run."""
    import mlflow

    from adrel_pipeline.mlops import serialization

    with tempfile.TemporaryDirectory() as tmp:
        package = shipped_package(Path(tmp) / "code")
        paths = {key: Path(tmp) / f"{key}.pt" for key in artifacts}
        for key, value in artifacts.items():
            serialization.save(value, paths[key])
        # MLflow prepends a model's code directory to sys.path when it loads one (it does, to
        # check the input example): keep this process's import path as it was.
        sys_path = list(sys.path)
        try:
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT,
                python_model=str(package / python_model),
                # Stored as <model>/code/adrel_pipeline; MLflow puts <model>/code first on sys.path at load.
                code_paths=[str(package)],
                artifacts={k: str(v) for k, v in paths.items()},
                signature=signature,
                input_example=input_example,
                pip_requirements=pip_requirements(),
            )
        finally:
            sys.path[:] = sys_path
    return LoggedModel(model_uri=info.model_uri, model_id=getattr(info, "model_id", None))


def load_pyfunc(model_uri: str):
    """The registered model as our Python class (``.model``, ``.ranker``), from any model URI."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()

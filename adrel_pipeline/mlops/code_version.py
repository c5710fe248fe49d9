"""The modelling code's version: a hash of the source of the modules that shape a trained model.

Dagster shows ``trained_gat`` and ``test_auc`` as stale when it changes; MLflow runs and model
versions carry it, so a registered model can be traced to the code that produced it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_MODULES = ("world/spec", "world/simulation", "world/oracle", "graph/build", "graph/split", "relevance/model", "relevance/training", "evaluation/metrics", "relevance/pyfunc_model", "relevance/ranking")


def code_version() -> str:
    digest = hashlib.sha256()
    for name in _MODULES:
        digest.update((Path(__file__).parents[1] / f"{name}.py").read_bytes())
    return digest.hexdigest()[:12]


CODE_VERSION = code_version()

"""Code versions: a hash of the source of the library modules that shape a value.

Every asset carries the version of the modules its value depends on (:data:`MODULES_BY_ASSET`),
so Dagster marks exactly the assets a change affects as stale: a generator change marks ``users``,
``items`` and ``interaction_edges`` (and everything downstream of them), a training change only
``trained_gat`` and ``test_auc``. MLflow runs and model versions carry :data:`CODE_VERSION`, the
version of everything that shapes a registered model, so it can be traced to the code that made it.

The module lists are defined once here, each stage's list extending the one before it. No Dagster:
the Dagster wiring (``adrel_pipeline.defs``) passes these versions to its assets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

# The package root: module names are paths relative to it.
PACKAGE_ROOT = Path(__file__).resolve().parents[1]

# The synthetic world's parameters and generative process.
WORLD_MODULES = ("world/spec.py", "world/simulation.py")
# + how users, items and a day's interactions are read and validated ($ADREL_SOURCE).
SOURCE_MODULES = (*WORLD_MODULES, "sources/contract.py", "sources/validate.py", "sources/base.py",
                  "sources/synthetic.py", "sources/files.py", "sources/postgres.py", "sources/env.py")
# + the graph builder (node features and their declaration, distinct and reverse edges).
GRAPH_MODULES = (*SOURCE_MODULES, "graph/build.py", "graph/features.py")
# + the link split and its parameters.
SPLIT_MODULES = (*GRAPH_MODULES, "graph/split.py", "graph/spec.py")
# + the model, its training loop and parameters; training selects the best epoch by the AUC of
# evaluation/metrics.py.
TRAINING_MODULES = (*SPLIT_MODULES, "relevance/model.py", "relevance/training.py", "relevance/spec.py",
                    "graph/sampling.py", "evaluation/metrics.py", "determinism.py")
# + the Bayes-optimal scorer and the metrics it is measured with (and their sample's parameters).
ORACLE_MODULES = (*SPLIT_MODULES, "world/oracle.py", "evaluation/metrics.py", "evaluation/spec.py")
# The trained model, evaluated against the oracle, packaged as a pyfunc ranker: everything above.
# The model checks' rules and baselines decide whether a model is registered.
MODEL_MODULES = (*TRAINING_MODULES, *ORACLE_MODULES, "relevance/pyfunc_model.py", "relevance/ranking.py",
                 "evaluation/baselines.py", "evaluation/rules.py")

# The audience system: the advertisers' truth, the universal embeddings, and the methods.
ADVERTISER_MODULES = (*WORLD_MODULES, "world/advertisers.py")
SEED_LIST_MODULES = (*ADVERTISER_MODULES, *SOURCE_MODULES, "audience/seed_lists.py")
EMBEDDING_MODULES = (*WORLD_MODULES, "audience/spec.py", "audience/features.py", "audience/embeddings.py",
                     "determinism.py")
AUDIENCE_MODEL_MODULES = (*EMBEDDING_MODULES, *SEED_LIST_MODULES, "graph/features.py", "world/oracle.py",
                          "audience/methods.py",
                          "audience/training.py", "audience/pyfunc_model.py", "evaluation/expansion.py")

# Contextual relevance: the contexts and their truth, the funnel and its log (served by the champions of
# the day's start), the labels, the model, and the funnel's measurements of it.
CONTEXT_MODULES = (*WORLD_MODULES, "world/contexts.py")
FUNNEL_MODULES = (*CONTEXT_MODULES, "contextual/spec.py", "contextual/funnel.py", "contextual/engagement.py")
CANDIDATE_LOG_MODULES = (*FUNNEL_MODULES, "contextual/sampling.py", "contextual/monitoring.py", "contextual/rules.py",
                         "evaluation/calibration.py", "serving/contextual.py")
# (A team's own labels: read from its source, checked and aggregated by contextual/own_labels.py.)
LABEL_MODULES = (*CANDIDATE_LOG_MODULES, *SOURCE_MODULES, "contextual/labels.py", "contextual/own_labels.py")
RELEVANCE_MODEL_MODULES = (*LABEL_MODULES, "contextual/model.py", "contextual/training.py",
                           "contextual/pyfunc_model.py", "evaluation/contextual.py", "evaluation/contextual_plots.py")
MEASUREMENT_MODULES = (*RELEVANCE_MODEL_MODULES, "contextual/measurement.py", "evaluation/funnel_plots.py")

MODULES_BY_ASSET: Mapping[str, tuple[str, ...]] = {
    "users": SOURCE_MODULES,
    "items": SOURCE_MODULES,
    "interaction_edges": SOURCE_MODULES,
    "hetero_graph": GRAPH_MODULES,
    "link_split": SPLIT_MODULES,
    "trained_gat": TRAINING_MODULES,
    "oracle_metrics": ORACLE_MODULES,
    "test_auc": MODEL_MODULES,
    "advertisers": SEED_LIST_MODULES,  # a team's own advertisers are its seed lists'
    "seed_lists": SEED_LIST_MODULES,
    "user_embeddings": EMBEDDING_MODULES,
    "audience_models": AUDIENCE_MODEL_MODULES,
    "audience_expansions": AUDIENCE_MODEL_MODULES,
    "audience_eval": (*AUDIENCE_MODEL_MODULES, "audience/rules.py", "evaluation/audience_plots.py"),
    "ad_inventory": CONTEXT_MODULES,
    "candidate_log": CANDIDATE_LOG_MODULES,
    "relevance_labels": LABEL_MODULES,
    "relevance_model": RELEVANCE_MODEL_MODULES,
    "funnel_metrics": MEASUREMENT_MODULES,
    "relevance_trend": MEASUREMENT_MODULES,
    "relevance_experiments": MEASUREMENT_MODULES,
}


def code_version(*modules: str, root: Path | str | None = None) -> str:
    """A 12-hex-digit hash of the named modules' source (paths relative to ``root``, by default the
    ``adrel_pipeline`` package, e.g. ``"world/simulation.py"``).

    It depends on the set of modules (order and repeats do not matter), their paths and their
    bytes, nothing else: the same checkout gives the same version on every machine.
    """
    if not modules:
        raise ValueError("code_version needs at least one module")
    base = PACKAGE_ROOT if root is None else Path(root)
    digest = hashlib.sha256()
    for name in sorted(set(modules)):
        path = base / name
        if path.suffix != ".py" or not path.is_file():
            raise FileNotFoundError(f"code_version: no module {name!r} under {base}")
        source = path.read_bytes()
        # Name and length first: moving code between modules changes the version too.
        digest.update(f"{name}\0{len(source)}\0".encode())
        digest.update(source)
    return digest.hexdigest()[:12]


def asset_code_version(asset: str, root: Path | str | None = None) -> str:
    """The code version of ``asset``: the hash of the modules in :data:`MODULES_BY_ASSET`."""
    try:
        modules = MODULES_BY_ASSET[asset]
    except KeyError:
        raise KeyError(f"no modules listed for asset {asset!r}; known: {sorted(MODULES_BY_ASSET)}") from None
    return code_version(*modules, root=root)


# The model's version, for MLflow runs and registered model versions (and test_auc's code version).
CODE_VERSION = code_version(*MODEL_MODULES)

"""The registered model is self-contained: it ships the library code it runs (not the Dagster code
location) and pins every third-party package that code imports, so ``models:/adrel-gat@champion``
loads and scores in a fresh process where neither Dagster nor an installed ``adrel_pipeline`` is used."""

import ast
import json
import os
import subprocess
import sys
from importlib.metadata import packages_distributions, version
from pathlib import Path
from typing import NamedTuple

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from adrel_pipeline.graph.build import AD, USER, USER_AD
from adrel_pipeline.mlops import packaging, registry, store
from adrel_pipeline.relevance.model import load_model
from adrel_pipeline.relevance.ranking import AdRanker
from adrel_pipeline.relevance.spec import TrainSpec
from adrel_pipeline.relevance.training import train_gat
from adrel_pipeline_tests.conftest import sqlite_uri

# Every test needs the trained, registered champion fixture and loads it (some in a fresh process).
pytestmark = pytest.mark.slow

MODEL = registry.DEFAULT_MODEL_NAME
PACKAGE = "adrel_pipeline"

# Runs in a fresh interpreter: python -I (no PYTHONPATH, no user site, no script or cwd entry on
# sys.path) started in a folder outside the checkout. Site-packages still installs the editable
# install's import hook for this checkout, so first hide every way of importing adrel_pipeline
# that the environment offers: meta-path finders other than the standard PathFinder that can find
# it (the editable finder) and sys.path entries that hold it. The script asserts it is then not
# importable at all, so the load below can only succeed with the copy MLflow logged with the model
# (it puts <model>/code first on sys.path); the test then checks that copy is what was imported.
ISOLATED_LOAD = r"""
import importlib, importlib.machinery, importlib.util, json, sys
from pathlib import Path

PACKAGE = "adrel_pipeline"
sys.meta_path[:] = [f for f in sys.meta_path if f is importlib.machinery.PathFinder
                    or not hasattr(f, "find_spec") or f.find_spec(PACKAGE, None) is None]
sys.path[:] = [p for p in sys.path if not (Path(p or ".") / PACKAGE).exists()]
sys.path_importer_cache.clear()
importlib.invalidate_caches()
assert importlib.util.find_spec(PACKAGE) is None, "the environment still provides " + PACKAGE

import mlflow.pyfunc
import pandas as pd

model = mlflow.pyfunc.load_model("models:/" + sys.argv[1] + "@champion")
frame = pd.DataFrame(json.loads(sys.argv[2]))
probs = model.predict(frame)
shipped = {name: getattr(m, "__file__", None) for name, m in list(sys.modules.items())
           if name.split(".")[0] == PACKAGE or name.startswith("code_model_")}
# The model directory MLflow downloaded and loaded: the one holding the MLmodel file.
root = next((str(p) for p in Path(shipped[PACKAGE]).parents if (p / "MLmodel").is_file()), None)
print(json.dumps({"probs": [float(p) for p in probs], "dtype": str(probs.dtype),
                  "dagster": sorted(m for m in sys.modules if m.split(".")[0] == "dagster"),
                  "shipped": shipped, "model_dir": root}))
"""


class Champion(NamedTuple):
    uri: str
    frame: pd.DataFrame          # (user_id, ad_id) test pairs
    expected: np.ndarray         # their scores in this process, from the trained checkpoint
    report: dict                 # what the isolated process loaded and scored
    local: Path                  # this process's download of the registered model
    checkpoint: dict


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _imported_top_level_modules(source: str) -> set[str]:
    """Absolute imports anywhere in ``source`` (module level and inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.fixture(scope="module")
def champion(split, tmp_path_factory):
    """A small GAT trained without Dagster, logged with ``packaging.log_model`` to a fresh sqlite
    store, registered and aliased ``champion``; then loaded and scored in an isolated process."""
    folder = tmp_path_factory.mktemp("packaging")
    uri = sqlite_uri(folder)
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        experiment_id = store.connect(uri, "packaging-test")
        result = train_gat(split, TrainSpec(epochs=3, patience=3))
        test = split["test"]
        pairs = test[USER_AD].edge_label_index[:, :64]
        frame = pd.DataFrame({"user_id": test[USER].node_id[pairs[0]].tolist(),
                              "ad_id": test[AD].node_id[pairs[1]].tolist()})
        with mlflow.start_run(experiment_id=experiment_id):
            logged = packaging.log_model(result.checkpoint, test, frame.head(5))
        version_ = mlflow.register_model(logged.model_uri, MODEL).version
        MlflowClient(uri, registry_uri=uri).set_registered_model_alias(MODEL, registry.CHAMPION, version_)
        ranker = AdRanker(load_model(result.checkpoint), test)
        expected = ranker.score(frame["user_id"].tolist(), frame["ad_id"].tolist()).numpy()
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL}@{registry.CHAMPION}",
                                                         dst_path=str(folder / "download")))
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])

    outside = tmp_path_factory.mktemp("elsewhere")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    args = [sys.executable, "-I", "-c", ISOLATED_LOAD, MODEL, json.dumps(frame.to_dict(orient="list"))]
    out = subprocess.run(args, cwd=outside, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return Champion(uri, frame, expected, report, local, result.checkpoint)


def test_champion_loads_and_scores_from_its_own_code_without_dagster(champion):
    frame, expected, report = champion.frame, champion.expected, champion.report
    assert report["dtype"] == "float32" and len(report["probs"]) == len(frame)
    np.testing.assert_allclose(report["probs"], expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected, expected[0])  # real scores, not a constant
    assert report["dagster"] == []

    # Every library module the model ran is the copy logged with it, <model>/code/adrel_pipeline
    # in the model directory MLflow downloaded, never this checkout.
    files = {name: Path(f) for name, f in report["shipped"].items() if f}
    package_dir = files[PACKAGE].parent
    assert report["model_dir"] and package_dir == Path(report["model_dir"]) / "code" / PACKAGE
    repo = packaging.PACKAGE_DIR.parent
    for name, file in files.items():
        assert not file.is_relative_to(repo), f"{name} was imported from the checkout: {file}"
        if name.split(".")[0] == PACKAGE:
            assert file.is_relative_to(package_dir), f"{name} not from the shipped code: {file}"
    # The model's own code (models-from-code) and the library it imports both ran.
    assert any(n.startswith("code_model_") for n in files)
    assert {"adrel_pipeline.relevance.model", "adrel_pipeline.relevance.ranking",
            "adrel_pipeline.mlops.serialization"} <= set(files)


def test_shipped_code_is_the_library_without_the_code_location(champion):
    local = champion.local
    shipped = local / "code" / PACKAGE
    assert (shipped / "__init__.py").is_file()
    assert not (shipped / "defs").exists() and not (shipped / "definitions.py").exists()
    assert not list(shipped.rglob("__pycache__")) and not list(shipped.rglob("*.pyc"))
    # Everything else of the library is shipped, byte for byte as it is in the package.
    source = packaging.PACKAGE_DIR
    expected = {p.relative_to(source) for p in source.rglob("*.py")
                if p.relative_to(source).parts[0] not in ("defs", "definitions.py")}
    assert {p.relative_to(shipped) for p in shipped.rglob("*.py")} == expected
    assert all((shipped / p).read_bytes() == (source / p).read_bytes() for p in expected)
    # No shipped module imports Dagster, even lazily.
    for path in shipped.rglob("*.py"):
        assert "dagster" not in _imported_top_level_modules(path.read_text()), path


def test_requirements_pin_every_third_party_package_the_model_imports(champion):
    """The modules the isolated process ran (library copy + the model's code file) are parsed
    for their imports, lazy ones included; each third-party module must come from a
    distribution named in the model's requirements.txt, pinned to the installed version."""
    report, local = champion.report, champion.local
    requirements = {}
    for line in (local / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            requirements[_canonical(name)] = pinned
    assert requirements == {_canonical(r.split("==")[0]): r.split("==")[1] for r in packaging.pip_requirements()}
    for name, pinned in requirements.items():
        assert pinned == version(name).split("+")[0], name

    # The same files in this process's download of the model (the subprocess's may be gone).
    ran = [local / Path(f).relative_to(report["model_dir"]) for f in report["shipped"].values() if f]
    imported = set().union(*(_imported_top_level_modules(f.read_text()) for f in ran))
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", PACKAGE}
    providers = packages_distributions()
    assert {"torch", "torch_geometric", "mlflow", "polars", "yaml"} <= third_party  # the scan sees imports
    missing = {m: providers.get(m) for m in third_party
               if not any(_canonical(d) in requirements for d in providers.get(m, []))}
    assert not missing, f"imported by the model's code but not in its requirements: {missing}"


def test_load_pyfunc_unwraps_the_registered_weights_in_process(champion):
    frame, expected, checkpoint = champion.frame, champion.expected, champion.checkpoint
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    store.use_store(champion.uri)
    try:
        pyfunc = packaging.load_pyfunc(f"models:/{MODEL}@{registry.CHAMPION}")
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    state = pyfunc.model.state_dict()
    assert state.keys() == checkpoint["state_dict"].keys()
    assert all(torch.equal(state[k], v) for k, v in checkpoint["state_dict"].items())
    scores = pyfunc.ranker.score(frame["user_id"].tolist(), frame["ad_id"].tolist()).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-6)

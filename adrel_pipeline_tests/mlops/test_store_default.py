"""A run's tracking store does not become the process's default store (long-lived step workers)."""

import os

import mlflow

from adrel_pipeline.mlops import store
from adrel_pipeline.mlops.paths import default_tracking_uri
from adrel_pipeline_tests.conftest import sqlite_uri


def test_using_a_store_leaves_the_process_default_alone(tmp_path, monkeypatch):
    default, other = sqlite_uri(tmp_path / "default"), sqlite_uri(tmp_path / "other")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", default)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        store.use_store(other)  # one run's resources.mlflow.config.tracking_uri
        assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (other, other)
        # The next step of another run, on the default, gets the default.
        assert default_tracking_uri() == default
        assert "MLFLOW_REGISTRY_URI" not in os.environ
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])

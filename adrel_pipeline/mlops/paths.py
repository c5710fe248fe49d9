"""Where local state lives when nothing else is configured.

The project's state folder is ``$ADREL_STATE_DIR`` if set, else ``.adrel/`` in the source
checkout (the folder holding ``pyproject.toml``), else ``.adrel/`` in the working directory.
The Makefile puts ``DAGSTER_HOME`` at ``.adrel/dagster_home``; the embedded MLflow store sits
beside it, so ``make run``, ``make ui``, ``make mlflow-ui`` and Python all see the same state.
"""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    if os.environ.get("ADREL_STATE_DIR"):
        return Path(os.environ["ADREL_STATE_DIR"]).resolve()
    checkout = Path(__file__).resolve().parents[1]
    base = checkout if (checkout / "pyproject.toml").exists() else Path.cwd()
    return base / ".adrel"


def dagster_storage_dir() -> Path:
    """Where the Dagster instance stores asset values by default: ``$DAGSTER_HOME/storage``, else
    the Makefile's ``<state dir>/dagster_home/storage``."""
    home = os.environ.get("DAGSTER_HOME")
    return (Path(home) if home else state_dir() / "dagster_home").resolve() / "storage"


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else an absolute sqlite store in the state folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{state_dir() / 'mlflow.db'}"


def local_artifact_root(tracking_uri: str) -> Path | None:
    """For a sqlite store, the artifact folder beside the database file; None for a server."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts"

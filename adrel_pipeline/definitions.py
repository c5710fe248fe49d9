"""The Dagster code location: assets, resources (world, MLflow, IO manager) and the executor."""

from __future__ import annotations

import dagster as dg

from adrel_pipeline.defs.assets import graph, model, world
from adrel_pipeline.defs.io_manager import ArtifactIOManager
from adrel_pipeline.defs.resources import MlflowTracking, WorldResource

all_assets = dg.load_assets_from_modules([world, graph, model])

# One job materializing the whole graph in dependency order.
adrel_job = dg.define_asset_job("adrel_job", selection=dg.AssetSelection.all())

defs = dg.Definitions(
    assets=all_assets,
    jobs=[adrel_job],
    resources={"world": WorldResource(), "mlflow": MlflowTracking(), "io_manager": ArtifactIOManager()},
    # Steps share one process: torch and PyG import once instead of once per step.
    executor=dg.in_process_executor,
)

"""The Dagster code location: assets with their checks, jobs, the daily schedule, the failure and
seed-list inbox sensors, resources (world, MLflow, audience inbox, serving funnel, IO manager) and
the executor ($ADREL_EXECUTOR)."""

from __future__ import annotations

import warnings

import dagster as dg

from adrel_pipeline.defs.audience import assets as audience
from adrel_pipeline.defs.audience.resources import AudienceResource
from adrel_pipeline.defs.audience.sensors import audience_expansion_job, audience_inbox_sensor
from adrel_pipeline.defs.contextual import assets as contextual
from adrel_pipeline.defs.contextual import funnel
from adrel_pipeline.defs.contextual.resources import FunnelResource
from adrel_pipeline.defs.graph import assets as graph
from adrel_pipeline.defs.relevance import assets as relevance
from adrel_pipeline.defs.shared.automation import (
    daily_retrain_job,
    daily_retrain_schedule,
    report_failed_runs,
)
from adrel_pipeline.defs.shared.executors import executor_from_env
from adrel_pipeline.defs.shared.io_manager import artifact_io_manager
from adrel_pipeline.defs.shared.resources import MlflowTracking, WorldResource
from adrel_pipeline.defs.shared.source import DataSource, is_synthetic, source_has, source_setting
from adrel_pipeline.defs.world import assets as world
from adrel_pipeline.sources.contract import LABELS, SEED_LISTS

# Both jobs mix interaction_edges (a range of days in one run) with the per-day model assets, so
# Dagster warns, on every load, that a backfill of the job runs one day per run: the behaviour we
# want, since each day has its own model.
warnings.filterwarnings("ignore", category=UserWarning,
                        message=r"Asset job (adrel_job|daily_retrain) materializes assets with varying BackfillPolicies")

# A team's own data ($ADREL_SOURCE) runs the relevance pipeline, the audience pipeline when it has
# seed lists, and the contextual relevance model when it has human labels. The funnel, its
# candidate log and its measurement simulate traffic: the synthetic world only.
SYNTHETIC = is_synthetic()
AUDIENCE = SYNTHETIC or source_has(source_setting(), SEED_LISTS)
if SYNTHETIC:
    modules = [world, graph, relevance, audience, contextual, funnel]
else:
    from adrel_pipeline.defs.contextual import own_labels

    modules = ([world, graph, relevance] + ([audience] if AUDIENCE else [])
               + ([own_labels] if source_has(source_setting(), LABELS) else []))
all_assets = dg.load_assets_from_modules(modules)

# Everything for one day: users and items (not partitioned) and that day's partition of the rest.
# The audience group is partitioned by advertiser, not by day: it has its own job.
adrel_job = dg.define_asset_job("adrel_job", selection=dg.AssetSelection.all() - dg.AssetSelection.groups("audience"))

defs = dg.Definitions(
    assets=all_assets,
    jobs=[adrel_job, daily_retrain_job] + ([audience_expansion_job] if AUDIENCE else []),
    schedules=[daily_retrain_schedule],
    sensors=[report_failed_runs] + ([audience_inbox_sensor] if AUDIENCE else []),
    resources={"world": WorldResource(), "source": DataSource(), "mlflow": MlflowTracking(),
               "audience": AudienceResource(), "funnel": FunnelResource(), "io_manager": artifact_io_manager},
    executor=executor_from_env(),
)

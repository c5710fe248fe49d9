import datetime as dt
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from adrel_pipeline.graph.build import build_hetero_graph
from adrel_pipeline.graph.spec import SplitSpec
from adrel_pipeline.graph.split import split_links
from adrel_pipeline.world import (
    WorldSpec,
    generate_interactions,
    generate_items,
    generate_users,
    window,
)

# Small enough for seconds, big enough that AUCs are not dominated by noise (~300 test positives).
# 8 styles: each (category, style) cell then holds ~64 organic pins, as the default world's 32 hold ~200;
# with 32 the small world's cells hold 16 and a few pins take most of the traffic.
SMALL_WORLD = {"seed": 0, "num_users": 1000, "num_items": 4000, "num_interactions": 30000, "num_styles": 8}
# A full 7-day window: it holds exactly num_interactions events.
WEEK = window(dt.date(2026, 1, 7), 7)


@pytest.fixture(scope="session")
def spec() -> WorldSpec:
    return WorldSpec(**SMALL_WORLD)


@pytest.fixture(scope="session")
def world(spec):
    users = generate_users(spec)
    items = generate_items(spec)
    return users, items, generate_interactions(spec, users, items, WEEK)


@pytest.fixture(scope="session")
def graph(world):
    return build_hetero_graph(*world)


@pytest.fixture(scope="session")
def split(graph):
    return split_links(graph, SplitSpec(seed=0))

# Fewer epochs than the default: the wiring, not the model's quality, is under test.
RUN_CONFIG = {"ops": {"trained_gat": {"config": {"epochs": 12}}}}


def sqlite_uri(folder) -> str:
    return f"sqlite:///{folder}/mlflow.db"


# The venv's CLI, whichever interpreter runs the tests.
DAGSTER_CLI = str(Path(sys.executable).parent / "dagster")
# ... and its `dg` (dagster-dg-cli), which `make run` launches runs with.
DG_CLI = str(Path(sys.executable).parent / "dg")


def dagster_home(path: Path) -> Path:
    """A DAGSTER_HOME at ``path`` with the instance settings `make run`/`make ui` use
    (config/dagster.yaml: sqlite storage under $DAGSTER_HOME, telemetry off)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text((Path(__file__).parents[1] / "config" / "dagster.yaml").read_text())
    return path


WORLD_ASSETS = ["users", "items", "interaction_edges"]
MODEL_ASSETS = ["hetero_graph", "link_split", "trained_gat", "oracle_metrics", "test_auc"]


def range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags of a single-run backfill over ``first..last`` (what the CLI's --partition-range sets)."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def materialize(instance, tracking_uri, run_config=RUN_CONFIG, world=SMALL_WORLD, audience=None, funnel=None, **kwargs):
    """The assets in ``selection`` (default: the model's assets) on a small world, tracked in
    ``tracking_uri``, for ``partition_key`` (default: the last day of WEEK) or the range in ``tags``."""
    import dagster as dg

    from adrel_pipeline.definitions import all_assets
    from adrel_pipeline.defs.audience.resources import AudienceResource
    from adrel_pipeline.defs.contextual.resources import FunnelResource
    from adrel_pipeline.defs.shared.io_manager import artifact_io_manager
    from adrel_pipeline.defs.shared.resources import MlflowTracking, WorldResource
    from adrel_pipeline.defs.shared.source import DataSource

    kwargs.setdefault("selection", MODEL_ASSETS)
    if "dagster/asset_partition_range_start" not in kwargs.get("tags", {}):
        kwargs.setdefault("partition_key", WEEK[-1].isoformat())
    return dg.materialize(
        all_assets,
        instance=instance,
        resources={"world": WorldResource(**world), "source": DataSource(source="synthetic"),
                   "mlflow": MlflowTracking(tracking_uri=tracking_uri),
                   "audience": audience or AudienceResource(), "funnel": FunnelResource(**(funnel or {})),
                   "io_manager": artifact_io_manager},
        run_config=run_config,
        **kwargs,
    )


def materialize_week(instance, tracking_uri, world=SMALL_WORLD, **kwargs):
    """What `make run` does: users, items and WEEK's days in one backfill run, then the model of its
    last day. Returns both results."""
    first = materialize(instance, tracking_uri, world=world, selection=WORLD_ASSETS,
                        tags=range_tags(WEEK[0].isoformat(), WEEK[-1].isoformat()), run_config={})
    if not first.success:
        return first, None
    return first, materialize(instance, tracking_uri, world=world, **kwargs)


@contextmanager
def week_in_a_fresh_store(folder: Path, world: dict = SMALL_WORLD):
    """A fresh Dagster instance and sqlite MLflow store (in ``folder``) with ``materialize_week`` done
    on ``world``: ``(instance, tracking_uri)``."""
    import dagster as dg

    uri = sqlite_uri(folder)
    with dg.instance_for_test() as instance:
        world, model = materialize_week(instance, uri, world=world)
        assert world.success and model.success
        yield instance, uri


def failure_messages(result) -> list[str]:
    """The error message of every failed step of a run result (user-code errors, Failures)."""
    out = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            out.append(data.error.message if data.error else str(data.user_failure_data))
    return out


def metadata(instance, key):
    import dagster as dg

    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@pytest.fixture(autouse=True, scope="session")
def _no_writes_to_the_project_store(tmp_path_factory):
    # Safety net: a resource left on its default never writes to the project's .adrel/mlflow.db.
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", sqlite_uri(tmp_path_factory.mktemp("default-store")))
    yield
    patch.undo()

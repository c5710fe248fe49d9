import pytest

from adrel_pipeline.graph import build_hetero_graph
from adrel_pipeline.split import SplitSpec, split_links
from adrel_pipeline.world import WorldSpec, generate_interactions, generate_items, generate_users

# Small enough for seconds, big enough that AUCs are not dominated by noise (~300 test positives).
SMALL_WORLD = dict(seed=0, num_users=1000, num_items=4000, num_interactions=30000)


@pytest.fixture(scope="session")
def spec() -> WorldSpec:
    return WorldSpec(**SMALL_WORLD)


@pytest.fixture(scope="session")
def world(spec):
    users = generate_users(spec)
    items = generate_items(spec)
    return users, items, generate_interactions(spec, users, items)


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


def materialize(instance, tracking_uri, run_config=RUN_CONFIG, world=SMALL_WORLD, **kwargs):
    """Every asset (or ``selection``) on a small world, tracked in ``tracking_uri``."""
    import dagster as dg

    from adrel_pipeline.definitions import all_assets
    from adrel_pipeline.defs.io_manager import ArtifactIOManager
    from adrel_pipeline.defs.resources import MlflowTracking, WorldResource

    return dg.materialize(
        all_assets,
        instance=instance,
        resources={"world": WorldResource(**world), "mlflow": MlflowTracking(tracking_uri=tracking_uri),
                   "io_manager": ArtifactIOManager()},
        run_config=run_config,
        **kwargs,
    )


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

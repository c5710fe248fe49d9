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

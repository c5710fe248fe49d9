"""World identity: the deployment's world comes from $ADREL_WORLD, every stored value carries its
world's fingerprint, and an asset never mixes values of two worlds."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adrel_pipeline.world import WorldSpec
from adrel_pipeline_tests.conftest import (
    SMALL_WORLD,
    WEEK,
    failure_messages,
    materialize,
    metadata,
    week_in_a_fresh_store,
)

DAY = WEEK[-1].isoformat()


def _load_world_in_a_fresh_process(world_file: str) -> subprocess.CompletedProcess:
    code = ("from adrel_pipeline.definitions import defs\n"
            "world = defs.resources['world']\n"
            "print(world.spec().fingerprint)\n"
            "print(type(world).model_fields['num_users'].default)\n")
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, "ADREL_WORLD": world_file},
                          capture_output=True, text=True, check=False, timeout=120)


def test_the_deployment_world_comes_from_the_file_named_by_adrel_world(tmp_path):
    path = tmp_path / "world.yaml"
    path.write_text("seed: 3\nnum_users: 2000\nnum_items: 9000\nnum_interactions: 40000\n")
    out = _load_world_in_a_fresh_process(str(path))
    assert out.returncode == 0, out.stderr[-2000:]
    fingerprint, default_users = out.stdout.split()
    expected = WorldSpec(seed=3, num_users=2000, num_items=9000, num_interactions=40000)
    assert fingerprint == expected.fingerprint != WorldSpec().fingerprint
    # The Launchpad (and a scheduled run, which sets no world config) gets the file's values.
    assert int(default_users) == 2000


def test_a_bad_world_file_fails_naming_the_file_and_the_field(tmp_path):
    path = tmp_path / "world.yaml"
    path.write_text("num_users: 0\n")
    out = _load_world_in_a_fresh_process(str(path))
    assert out.returncode != 0
    assert f"world file {path}: num_users=0 is out of range: must be an integer >= 1" in out.stderr
    path.write_text("num_userz: 10\n")
    assert "unknown fields ['num_userz']" in _load_world_in_a_fresh_process(str(path)).stderr


def test_the_fingerprint_is_a_hash_of_the_full_spec():
    base = WorldSpec(**SMALL_WORLD)
    assert base.fingerprint == WorldSpec(**SMALL_WORLD).fingerprint
    for field, value in (("seed", 1), ("num_users", 1001), ("ad_fraction", 0.2), ("main_interest_prob", 0.5)):
        assert WorldSpec(**{**SMALL_WORLD, field: value}).fingerprint != base.fingerprint, field


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with week_in_a_fresh_store(tmp_path_factory.mktemp("mlflow")) as store:
        yield store


@pytest.mark.slow
def test_every_stored_value_carries_its_world_fingerprint(store):
    instance, _ = store
    expected = WorldSpec(**SMALL_WORLD).fingerprint
    for asset in ("users", "items", "interaction_edges", "hetero_graph", "link_split", "trained_gat",
                  "oracle_metrics", "test_auc"):
        assert metadata(instance, asset)["world_fingerprint"] == expected, asset


@pytest.mark.slow
def test_a_model_run_on_another_worlds_tables_fails_naming_both_worlds(store):
    instance, uri = store
    other = {**SMALL_WORLD, "seed": 1}
    graph_file = Path(instance.storage_directory()) / "hetero_graph" / f"{DAY}.pt"
    before = graph_file.read_bytes()
    result = materialize(instance, uri, world=other, raise_on_error=False)
    assert not result.success
    [message] = failure_messages(result)
    stored, this = WorldSpec(**SMALL_WORLD).fingerprint, WorldSpec(**other).fingerprint
    assert (f"interaction_edges partitions {WEEK[0]}...{WEEK[-1]} (7) was materialized for world {stored}, "
            f"but this run's world is {this}") in message
    assert ("dg launch --assets interaction_edges "
            f"--partition-range {WEEK[0]}...{WEEK[-1]}") in message
    # Failed before anything was written, and without retries.
    assert graph_file.read_bytes() == before
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


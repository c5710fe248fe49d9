"""Which version served as champion when a day began: the models a day's traffic was served with."""

import pytest

from adrel_pipeline.mlops import registry, store
from adrel_pipeline_tests.conftest import sqlite_uri


@pytest.fixture
def versions(tmp_path):
    """A store with versions of one model: (day, promotion, world) as the gate tags them."""
    uri = sqlite_uri(tmp_path)
    store.connect(uri, "adrel")
    client = store.client()
    client.create_registered_model("m")
    source = (tmp_path / "model").as_uri()
    for day, promotion, world in (("2026-01-03", "champion", "w1"), ("2026-01-05", "challenger", "w1"),
                                  ("2026-01-06", "champion", "w2"), ("2026-01-07", "champion", "w1"),
                                  ("2026-01-02", "none", "w1")):
        client.create_model_version("m", source, tags={"partition": day, "promotion": promotion,
                                                       "world_fingerprint": world})
    return uri


@pytest.mark.parametrize("day, world, expected", [
    ("2026-01-03", "w1", None),  # the day a model was trained for is not yet served by it
    ("2026-01-04", "w1", "1"),
    ("2026-01-06", "w1", "1"),  # a challenger never served
    ("2026-01-07", "w2", "3"),  # another world's champions are not this world's
    ("2026-01-08", "w1", "4"),
    ("2026-01-08", None, "4"),
    ("2026-01-07", None, "3"),
])
def test_the_newest_champion_of_an_earlier_day_of_the_same_world(versions, day, world, expected):
    found = registry.champion_as_of("m", day, world)
    assert (str(found.version) if found else None) == expected


def test_a_model_never_registered_has_no_champion(versions):
    assert registry.champion_as_of("no-such-model", "2026-01-08") is None

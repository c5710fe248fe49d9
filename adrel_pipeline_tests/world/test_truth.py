"""has_truth: whether users/items carry the generator's latent columns the oracle needs."""

import pytest

from adrel_pipeline.world import WorldSpec, generate_items, generate_users, interaction_probability
from adrel_pipeline.world.oracle import TRUTH_COLUMNS, has_truth, missing_truth


@pytest.fixture(scope="module")
def tables():
    spec = WorldSpec(num_users=50, num_items=200, num_interactions=500, num_styles=4)
    return spec, generate_users(spec), generate_items(spec)


def test_the_synthetic_world_has_its_truth(tables):
    _, users, items = tables
    assert has_truth(users, items) and missing_truth(users, items) == []


@pytest.mark.parametrize("table, column", [(t, c) for t, cs in TRUTH_COLUMNS.items() for c in cs])
def test_any_missing_truth_column_means_no_truth(tables, table, column):
    _, users, items = tables
    if table == "users":
        users = users.drop(column)
    else:
        items = items.drop(column)
    assert not has_truth(users, items)
    assert missing_truth(users, items) == [f"{table}.{column}"]


def test_real_data_tables_lack_all_of_it_and_the_oracle_cannot_score_them(tables):
    spec, users, items = tables
    users, items = users.drop("true_activity", "taste"), items.drop("style", "popularity")
    assert missing_truth(users, items) == ["users.true_activity", "users.taste", "items.style", "items.popularity"]
    # The columns named are the ones the oracle reads: without them it cannot run at all.
    ids = (users["user_id"].to_numpy()[:3], items["item_id"].to_numpy()[:3])
    with pytest.raises(Exception, match="true_activity"):
        interaction_probability(spec, users, items, *ids)

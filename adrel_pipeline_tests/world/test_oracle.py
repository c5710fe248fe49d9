"""OracleRows: the oracle's score matrix with the item side computed once."""

import numpy as np
import pytest

from adrel_pipeline.world import WorldSpec, generate_items, generate_users, interaction_probability
from adrel_pipeline.world.oracle import OracleRows, window_probability


@pytest.mark.parametrize("which", ["ads", "organic", "mixed"])
def test_rows_are_the_pairwise_probabilities_in_any_batches(which):
    spec = WorldSpec(num_users=60, num_items=500, num_interactions=800, num_styles=4)
    users, items = generate_users(spec), generate_items(spec)
    is_ad = items["is_ad"].to_numpy()
    item_ids = items["item_id"].to_numpy()
    item_ids = {"ads": item_ids[is_ad], "organic": item_ids[~is_ad], "mixed": item_ids[::-3]}[which]
    rows = OracleRows(spec, users, items, item_ids)
    user_ids = users["user_id"].to_numpy()[[59, 0, 7, 7, 31]]
    uu, ii = np.meshgrid(user_ids, item_ids, indexing="ij")
    pairwise = interaction_probability(spec, users, items, uu.ravel(), ii.ravel()).reshape(uu.shape)
    np.testing.assert_array_equal(rows(user_ids), pairwise)
    np.testing.assert_array_equal(window_probability(spec, rows.per_draw(user_ids)), pairwise)
    # One user at a time gives the same rows: for ads (what the ranking metrics score) bit for bit;
    # organic pins' taste normaliser is a matrix product, whose last bit may depend on the batch.
    one_by_one = np.vstack([rows.per_draw(user_ids[i:i + 1]) for i in range(5)])
    if which == "ads":
        np.testing.assert_array_equal(one_by_one, rows.per_draw(user_ids))
    np.testing.assert_allclose(one_by_one, rows.per_draw(user_ids), rtol=1e-12, atol=0)
    with pytest.raises(KeyError, match="user_id"):
        rows(np.array([10**6]))

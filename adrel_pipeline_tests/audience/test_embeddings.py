"""Features, LightGCN user embeddings and the taste probe."""

import datetime as dt

import numpy as np
import polars as pl
import pytest
import torch

from adrel_pipeline.audience.embeddings import (
    linear_probe_r2,
    normalized_adjacency,
    propagate,
    train_user_embeddings,
)
from adrel_pipeline.audience.features import RAW_FEATURE_NAMES, active_users, organic_edges, raw_features, user_rows
from adrel_pipeline.audience.spec import AudienceConfigError, AudienceSpec
from adrel_pipeline.world.spec import INTERESTS

DAY = dt.date(2026, 1, 1)


def frames(user_ids, interests, items, events):
    """users (age 18-25), items [(id, category, is_ad)], interactions [(user, item)]."""
    users = pl.DataFrame({"user_id": user_ids, "age_group": ["18-25"] * len(user_ids), "main_interest": interests},
                         schema={"user_id": pl.Int64, "age_group": pl.Utf8, "main_interest": pl.Utf8})
    items = pl.DataFrame(items, schema={"item_id": pl.Int64, "category": pl.Utf8, "is_ad": pl.Boolean}, orient="row")
    log = pl.DataFrame([(u, i, DAY) for u, i in events], schema={"user_id": pl.Int64, "item_id": pl.Int64,
                                                                   "day": pl.Date}, orient="row")
    return users, items, log


def test_features_count_observed_behaviour_only():
    users, items, log = frames(
        [20, 10, 30], ["Food", "Fashion", "Home"],
        [(1, "Food", False), (2, "Food", True), (3, "Home", False)],
        [(10, 1), (10, 1), (10, 2), (20, 3), (10, 3)])
    # Repeats collapse, the ad (item 2) is not organic, user 30 has no interactions.
    assert organic_edges(log, items).rows() == [(10, 1), (10, 3), (20, 3)]
    np.testing.assert_array_equal(active_users(users, log), [10, 20])
    ids, x = raw_features(users, items, log)
    np.testing.assert_array_equal(ids, [20, 10, 30])  # users' row order
    assert x.shape == (3, len(RAW_FEATURE_NAMES))
    col = {name: i for i, name in enumerate(RAW_FEATURE_NAMES)}
    # User 10: Food 3 interactions (ads count: observed), Home 1; 4 in all.
    assert x[1, col["log1p_count[Food]"]] == pytest.approx(np.log1p(3))
    assert x[1, col["log1p_count[Home]"]] == pytest.approx(np.log1p(1))
    assert x[1, col["log1p_interactions"]] == pytest.approx(np.log1p(4))
    assert x[1, col["interest=Fashion"]] == 1 and x[1, col["age=18-25"]] == 1
    assert not x[2, len(INTERESTS) + 4:].any()  # user 30: no counts
    np.testing.assert_array_equal(user_rows(users, [30, 20, 10]), [2, 0, 1])
    with pytest.raises(KeyError, match="not in users"):
        user_rows(users, [99])


def clustered(num_users=300, items_per_cluster=60, clusters=3, picks=12, seed=0):
    """Users in clusters, each picking only its cluster's (organic) pins; user 0 never picks."""
    rng = np.random.default_rng(seed)
    cluster = np.arange(num_users) % clusters
    user = np.repeat(np.arange(1, num_users), picks)
    item = cluster[user] * items_per_cluster + rng.integers(0, items_per_cluster, len(user))
    n_items = clusters * items_per_cluster
    users, items, log = frames(
        list(range(num_users)), [INTERESTS[c] for c in cluster],
        [(i, INTERESTS[i // items_per_cluster], False) for i in range(n_items)],
        list(zip(user.tolist(), item.tolist(), strict=True)))
    return users, items, log, cluster


SMALL = AudienceSpec(embedding_dim=8, embedding_epochs=40, embedding_lr=0.05)


@pytest.fixture(scope="module")
def trained():
    users, items, log, cluster = clustered()
    return train_user_embeddings(users, items, log, SMALL), cluster


def test_embeddings_are_unit_deterministic_and_predict_held_out_links(trained):
    result, cluster = trained
    users, items, log, _ = clustered()
    assert result.embeddings.shape == (300, 8) and result.embeddings.dtype == torch.float32
    np.testing.assert_allclose(result.embeddings.norm(dim=1).numpy(), 1.0, atol=1e-5)
    assert torch.equal(result.embeddings, train_user_embeddings(users, items, log, SMALL).embeddings)
    # Held-out edges lie inside the user's cluster, random non-edges mostly outside it.
    assert result.link_auc > 0.8
    assert len(result.history["loss"]) == SMALL.embedding_epochs
    assert result.history["loss"][-1] < result.history["loss"][0]
    # Same cluster: clearly more similar than different clusters.
    sim = (result.embeddings @ result.embeddings.T).numpy()
    same = cluster[:, None] == cluster[None, :]
    assert sim[1:, 1:][same[1:, 1:]].mean() > sim[1:, 1:][~same[1:, 1:]].mean() + 0.5


def test_a_user_without_organic_edges_gets_its_main_interest_mean(trained):
    result, cluster = trained
    assert result.users_without_edges == 1
    peers = np.flatnonzero(cluster == cluster[0])[1:]
    expected = torch.nn.functional.normalize(result.embeddings[peers].sum(0), dim=0)
    torch.testing.assert_close(result.embeddings[0], expected)


def test_state_reloads_without_pickle(trained, tmp_path):
    result, _ = trained
    torch.save(result.state, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["embedding.weight"].shape == (300 + len(result.item_ids), 8)


def test_fast_propagation_equals_lightgcn():
    from torch_geometric.nn.models import LightGCN

    g = torch.Generator().manual_seed(0)
    pairs = torch.unique(torch.stack([torch.randint(0, 20, (120,), generator=g),
                                      torch.randint(20, 50, (120,), generator=g)]), dim=1)
    model = LightGCN(50, 4, 3)
    edge_index = torch.cat([pairs, pairs.flip(0)], dim=1)
    torch.testing.assert_close(propagate(model, normalized_adjacency(pairs, 20, 50)), model.get_embedding(edge_index))
    # ... and its gradient: the adjacency is symmetric, so A @ grad is the backward pass.
    fast = propagate(model, normalized_adjacency(pairs, 20, 50)).square().sum()
    (grad_fast,) = torch.autograd.grad(fast, model.embedding.weight)
    (grad_pyg,) = torch.autograd.grad(model.get_embedding(edge_index).square().sum(), model.embedding.weight)
    torch.testing.assert_close(grad_fast, grad_pyg)


def test_our_lightgcn_holds_pygs_parameters_without_importing_pyg():
    import subprocess
    import sys

    from torch_geometric.nn.models import LightGCN as PyGLightGCN

    from adrel_pipeline.audience.embeddings import LightGCN

    torch.manual_seed(3)
    theirs = PyGLightGCN(50, 8, 2).state_dict()
    torch.manual_seed(3)
    ours = LightGCN(50, 8, 2).state_dict()
    assert ours.keys() == theirs.keys()
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0)
    # The audience steps never import PyG (its import alone takes seconds).
    code = ("import sys, adrel_pipeline.audience.embeddings, adrel_pipeline.audience.training, "
            "adrel_pipeline.audience.pyfunc_model, adrel_pipeline.mlops.serialization; "
            "print('torch_geometric' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"


def test_linear_probe_recovers_a_linear_target_and_not_noise():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 6))
    target = x[:, :2] @ np.array([[1.0, -2.0], [0.5, 1.0]]) + 0.1 * rng.standard_normal((400, 2))
    assert linear_probe_r2(x, target, seed=0) > 0.95
    assert linear_probe_r2(rng.standard_normal((400, 6)), target, seed=0) < 0.05


def test_spec_ranges():
    with pytest.raises(AudienceConfigError, match="embedding_dim=0 is out of range"):
        AudienceSpec(embedding_dim=0)
    with pytest.raises(AudienceConfigError, match="lsh_bits=31"):
        AudienceSpec(lsh_bits=31)
    assert AudienceSpec().as_dict()["max_positives"] == 200_000


def test_embeddings_carry_the_latent_taste_and_raw_features_do_not(world):
    users, items, interactions = world
    if "taste" not in users.columns:
        pytest.skip("the world has no latent taste column yet")
    from adrel_pipeline.world.simulation import user_taste

    result = train_user_embeddings(users, items, interactions, AudienceSpec())
    taste = user_taste(users)
    from_embeddings = linear_probe_r2(result.embeddings.numpy(), taste, seed=0)
    from_raw = linear_probe_r2(raw_features(users, items, interactions)[1], taste, seed=0)
    # Measured on this 1,000-user world: ~0.54 against ~0.04 (age says a little about taste).
    assert from_embeddings > 0.35
    assert from_raw < 0.15
    assert result.link_auc > 0.65

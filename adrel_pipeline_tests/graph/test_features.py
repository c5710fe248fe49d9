"""Node features from declared columns (graph.features.encode via build_hetero_graph): one-hots,
standardised numerics, the cross over two differently named columns, no features at all; the
synthetic default bit-identical to the old hard-coded construction; the model on such a graph."""

import datetime as dt

import numpy as np
import polars as pl
import pytest
import torch

from adrel_pipeline.evaluation.baselines import LogisticBaseline, pair_features
from adrel_pipeline.graph.build import (
    AD,
    CROSS_COLUMNS,
    NON_AD,
    USER,
    USER_AD,
    build_hetero_graph,
    cross_columns,
    interest_matches_category,
)
from adrel_pipeline.graph.features import FeatureSpec, encode, synthetic_features
from adrel_pipeline.graph.spec import SplitSpec
from adrel_pipeline.graph.split import split_links
from adrel_pipeline.mlops import serialization
from adrel_pipeline.relevance.model import AdRelevanceModel, GATConfig
from adrel_pipeline.relevance.spec import TrainSpec
from adrel_pipeline.relevance.training import train_gat
from adrel_pipeline.world import AGE_GROUPS, INTERESTS


def old_one_hot(values: pl.Series, vocabulary: tuple[str, ...]) -> torch.Tensor:
    """The builder's one-hot before features were declared (kept here as the reference)."""
    codes = values.cast(pl.Enum(vocabulary)).to_physical().to_numpy().astype(np.int64)
    return torch.nn.functional.one_hot(torch.from_numpy(codes), len(vocabulary)).float()


def test_synthetic_default_is_bit_identical_to_the_hard_coded_construction(world, graph):
    users, items, _ = world
    users = users.sort("user_id")
    old_user = torch.cat([old_one_hot(users["age_group"], AGE_GROUPS),
                          old_one_hot(users["main_interest"], INTERESTS)], dim=1)
    assert graph[USER].x.dtype == old_user.dtype == torch.float32
    assert torch.equal(graph[USER].x, old_user)
    for node_type, is_ad in ((AD, True), (NON_AD, False)):
        table = items.filter(pl.col("is_ad") == is_ad).sort("item_id")
        old = old_one_hot(table["category"], INTERESTS)
        assert graph[node_type].x.dtype == old.dtype
        assert torch.equal(graph[node_type].x, old)
    assert graph.cross_columns == CROSS_COLUMNS == (len(AGE_GROUPS), 0, len(INTERESTS))
    assert graph.feature_names[USER][:5] == [f"age_group={AGE_GROUPS[0]}", *[f"age_group={a}" for a in AGE_GROUPS[1:4]],
                                             f"main_interest={INTERESTS[0]}"]
    assert graph.feature_names[AD] == [f"category={c}" for c in INTERESTS]
    # An explicit declaration equals the default.
    explicit = build_hetero_graph(*world, features=synthetic_features())
    assert all(torch.equal(explicit[t].x, graph[t].x) for t in (USER, AD, NON_AD))


def byo_tables() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """A "bring your own data" world: users with a favourite topic, a boolean, a numeric (unsorted
    ids); items with a topic under another name whose values partly differ, and a numeric."""
    users = pl.DataFrame({
        "user_id": [12, 10, 11, 13],
        "favourite": ["sport", "food", "travel", "food"],
        "premium": [True, False, False, True],
        "age": [40, 20, 30, 30],
    })
    items = pl.DataFrame({
        "item_id": [3, 1, 2, 0, 4, 5],
        "is_ad": [True, True, False, True, False, True],
        "topic": ["music", "food", "sport", "sport", "food", "music"],
        "price": [5.0, 5.0, 1.0, 2.0, 3.0, 8.0],
    })
    interactions = pl.DataFrame({"user_id": [10, 10, 11, 12, 13, 13], "item_id": [0, 1, 2, 3, 5, 4]})
    return users, items, interactions


BYO = FeatureSpec(user_columns=("favourite", "premium", "age"), item_columns=("price", "topic"),
                  cross=("favourite", "topic"))


def test_declared_columns_give_one_hots_standardised_numerics_and_the_cross():
    users, items, interactions = byo_tables()
    graph = build_hetero_graph(users, items, interactions, BYO)
    topics = ["food", "music", "sport", "travel"]  # the sorted union of both cross columns' values
    assert graph.feature_names[USER] == [*[f"favourite={t}" for t in topics], "premium=false", "premium=true", "age"]
    assert graph.feature_names[AD] == graph.feature_names[NON_AD] == ["price", *[f"topic={t}" for t in topics]]
    assert graph.cross_columns == (0, 1, 4)

    # Users sorted by id: 10 food/False/20, 11 travel/False/30, 12 sport/True/40, 13 food/True/30.
    age = np.array([20, 30, 40, 30], dtype=np.float64)
    expected_user = torch.tensor([
        [1, 0, 0, 0, 1, 0], [0, 0, 0, 1, 1, 0], [0, 0, 1, 0, 0, 1], [1, 0, 0, 0, 0, 1]], dtype=torch.float32)
    assert torch.equal(graph[USER].x[:, :6], expected_user)
    expected_age = torch.from_numpy(((age - age.mean()) / age.std()).astype(np.float32))
    assert torch.allclose(graph[USER].x[:, 6], expected_age)
    assert graph[USER].x[:, 6].mean().abs() < 1e-6

    # Standardised over the whole items table (ads and organic pins alike), then split by is_ad.
    price = np.array([2.0, 5.0, 1.0, 5.0, 3.0, 8.0])  # item ids 0..5
    z = (price - price.mean()) / price.std()
    assert graph[AD].node_id.tolist() == [0, 1, 3, 5] and graph[NON_AD].node_id.tolist() == [2, 4]
    assert torch.allclose(graph[AD].x[:, 0], torch.tensor(z[[0, 1, 3, 5]], dtype=torch.float32))
    assert torch.allclose(graph[NON_AD].x[:, 0], torch.tensor(z[[2, 4]], dtype=torch.float32))
    assert graph[AD].x[:, 1:].argmax(1).tolist() == [topics.index(t) for t in ("sport", "food", "music", "music")]
    assert graph[NON_AD].x[:, 1:].argmax(1).tolist() == [topics.index(t) for t in ("sport", "food")]

    # The cross is 1 exactly where the user's favourite is the ad's topic.
    u, a = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    cross = interest_matches_category(graph[USER].x[u.flatten()], graph[AD].x[a.flatten()], graph.cross_columns)
    favourite, ad_topic = ["food", "travel", "sport", "food"], ["sport", "food", "music", "music"]
    assert cross.view(4, 4).tolist() == [[float(f == t) for t in ad_topic] for f in favourite]


def test_declared_vocabularies_fix_the_columns_and_reject_other_values():
    users, items, interactions = byo_tables()
    spec = FeatureSpec(user_columns=("favourite",), item_columns=("topic",), cross=("favourite", "topic"),
                       vocabularies={"topic": ("travel", "sport", "music", "food", "film")})
    graph = build_hetero_graph(users, items, interactions, spec)
    # One vocabulary for both cross columns, in the declared order, unobserved "film" included.
    assert graph.feature_names[USER] == [f"favourite={t}" for t in ("travel", "sport", "music", "food", "film")]
    assert graph.cross_columns == (0, 0, 5)

    narrow = FeatureSpec(user_columns=("favourite",), item_columns=("topic",), cross=("favourite", "topic"),
                         vocabularies={"favourite": ("food", "sport")})
    with pytest.raises(ValueError, match=r"users feature column 'favourite': 1 values outside .* \['travel'\]"):
        build_hetero_graph(users, items, interactions, narrow)
    with pytest.raises(ValueError, match=r"items feature column 'topic': 2 values outside .* \['music'\]"):
        encode(users.filter(pl.col("favourite") != "travel"), items, narrow)
    both = FeatureSpec(user_columns=("favourite",), item_columns=("topic",), cross=("favourite", "topic"),
                       vocabularies={"favourite": ("a",), "topic": ("b",)})
    with pytest.raises(ValueError, match="different vocabularies"):
        encode(users, items, both)


def test_bad_declarations_fail_clearly():
    users, items, _ = byo_tables()
    with pytest.raises(ValueError, match=r"users table lacks the declared feature columns \['height'\]"):
        encode(users, items, FeatureSpec(user_columns=("height",)))
    with pytest.raises(ValueError, match="must be a user feature column"):
        encode(users, items, FeatureSpec(user_columns=("premium",), item_columns=("topic",), cross=("favourite", "topic")))
    with_null = users.with_columns(pl.when(pl.col("user_id") == 10).then(None).otherwise(pl.col("age")).alias("age"))
    with pytest.raises(ValueError, match=r"users feature column 'age' has 1 null/NaN values of 4"):
        encode(with_null, items, FeatureSpec(user_columns=("age",)))
    with pytest.raises(ValueError, match="neither categorical"):
        encode(users.with_columns(pl.lit(dt.date(2026, 1, 7)).alias("joined")), items,
               FeatureSpec(user_columns=("joined",)))


def test_constant_numerics_are_zeros_and_categoricals_enums_and_declared_ints_are_one_hots():
    users, items, _ = byo_tables()
    users = users.with_columns(pl.lit(7.0).alias("constant_score"), pl.col("favourite").cast(pl.Categorical),
                               pl.col("age").alias("age_code"))
    items = items.with_columns(pl.col("topic").cast(pl.Enum(["sport", "music", "food"])))
    spec = FeatureSpec(user_columns=("constant_score", "favourite", "age_code"), item_columns=("topic",),
                       vocabularies={"age_code": ("20", "30", "40")})
    encoded = encode(users, items, spec)
    assert encoded.user_names == ("constant_score", "favourite=food", "favourite=sport", "favourite=travel",
                                  "age_code=20", "age_code=30", "age_code=40")
    assert not encoded.user_x[:, 0].any()
    assert encoded.user_x[:, 4:].argmax(1).tolist() == [2, 0, 1, 1]
    # An enum's values are observed and sorted like strings: no cross, so no shared vocabulary.
    assert encoded.item_names == ("topic=food", "topic=music", "topic=sport")
    assert encoded.cross_columns == (0, 0, 0)


def test_no_features_give_a_constant_column_and_no_cross():
    users, items, interactions = byo_tables()
    graph = build_hetero_graph(users.select("user_id"), items.select("item_id", "is_ad"), interactions, FeatureSpec())
    for t, n in ((USER, 4), (AD, 4), (NON_AD, 2)):
        assert torch.equal(graph[t].x, torch.ones(n, 1))
        assert graph.feature_names[t] == ["constant"]
    assert graph.cross_columns == (0, 0, 0)
    pairs = graph[USER_AD].edge_index
    assert not interest_matches_category(graph[USER].x[pairs[0]], graph[AD].x[pairs[1]], graph.cross_columns).any()
    # Baseline features: degrees, a zero cross, the user's (constant) feature.
    features = pair_features(graph, pairs)
    assert features.shape == (pairs.shape[1], 4) and not features[:, 2].any()


def test_graph_declaration_survives_split_and_weights_only_save(tmp_path):
    users, items, interactions = byo_tables()
    graph = build_hetero_graph(users, items, interactions, BYO)
    path = tmp_path / "graph.pt"
    serialization.save({"graph": graph}, path)
    loaded = serialization.load(path)["graph"]
    assert cross_columns(loaded) == (0, 1, 4)
    assert loaded.feature_names == graph.feature_names
    # A graph stored before graphs carried their declaration: the synthetic world's columns.
    del loaded.cross_columns
    assert cross_columns(loaded) == CROSS_COLUMNS


def larger_byo_world(seed: int = 0, num_users: int = 300, num_items: int = 400, num_events: int = 4000):
    """A world whose truth is "favourite = topic" plus a numeric activity, under the BYO columns."""
    rng = np.random.default_rng(seed)
    topics = np.array(["food", "music", "sport", "travel", "film"])
    users = pl.DataFrame({"user_id": np.arange(num_users), "favourite": topics[rng.integers(0, 4, num_users)],
                          "premium": rng.random(num_users) < 0.3, "age": rng.integers(18, 70, num_users)})
    items = pl.DataFrame({"item_id": np.arange(num_items), "is_ad": rng.random(num_items) < 0.5,
                          "topic": topics[rng.integers(0, 5, num_items)], "price": rng.gamma(2.0, 3.0, num_items)})
    u = rng.integers(0, num_users, num_events)
    match = users["favourite"].to_numpy()[u]
    same = [np.flatnonzero(items["topic"].to_numpy() == t) for t in match]
    item = np.where(rng.random(num_events) < 0.7, [rng.choice(s) for s in same], rng.integers(0, num_items, num_events))
    return users, items, pl.DataFrame({"user_id": u, "item_id": item})


def test_model_trains_and_scores_on_a_declared_graph():
    graph = build_hetero_graph(*larger_byo_world(), features=BYO)
    split = split_links(graph, SplitSpec(seed=0))
    result = train_gat(split, TrainSpec(epochs=3, patience=3, hidden_channels=8, out_channels=4))
    config = GATConfig.from_dict(result.checkpoint["config"])
    assert config.cross_columns == graph.cross_columns
    # favourite's one-hot spans the union of both cross columns' values: "film" occurs only as a topic.
    assert config.in_channels[USER] == graph[USER].x.shape[1] == 5 + 2 + 1
    assert config.mismatch(split["test"]) is None
    assert result.best_val_auc > 0.6  # the cross carries the truth: the wide part alone finds it

    # score_matrix equals the per-pair decoder, with the cross and without one.
    for features in (BYO, FeatureSpec(user_columns=("age",), item_columns=("price",))):
        g = build_hetero_graph(*larger_byo_world(), features=features)
        torch.manual_seed(0)
        model = AdRelevanceModel(GATConfig.for_graph(g, hidden_channels=8, out_channels=4, heads=2, dropout=0.0))
        with torch.no_grad():
            model.wide.weight.copy_(torch.tensor([[0.3, -0.2, 1.5]]))
            model.gate.fill_(0.7)
        model.eval()
        e = model.embed(g)
        users = torch.arange(g[USER].num_nodes)
        matrix = model.score_matrix(e, users)
        u, a = torch.meshgrid(users, torch.arange(g[AD].num_nodes), indexing="ij")
        with torch.no_grad():
            pairwise = model.decode(e, torch.stack([u.flatten(), a.flatten()])).view_as(matrix)
        assert torch.allclose(matrix, pairwise, atol=1e-5)
    assert GATConfig.for_graph(g, hidden_channels=8, out_channels=4, heads=2, dropout=0.0).cross_columns[2] == 0


def test_baseline_features_are_degrees_cross_and_the_users_other_features():
    graph = build_hetero_graph(*larger_byo_world(), features=BYO)
    pairs = graph[USER_AD].edge_index[:, :50]
    features = pair_features(graph, pairs)
    user_x = graph[USER].x[pairs[0]]
    assert graph.cross_columns == (0, 1, 5)
    assert features.shape == (50, 2 + 1 + 3)  # the favourite block (5 columns) is the cross's
    assert np.array_equal(features[:, 3:], user_x[:, 5:].numpy().astype(np.float64))
    split = split_links(graph, SplitSpec(seed=0))
    train = split["train"]
    positives = train[USER_AD].edge_label_index
    negatives = torch.stack([positives[0], positives[1].roll(1)])
    baseline = LogisticBaseline.fit(train, torch.cat([positives, negatives], 1),
                                    torch.cat([torch.ones(positives.shape[1]), torch.zeros(positives.shape[1])]))
    assert baseline.coef.shape == (6,) and baseline.coef[2] > 0  # the cross is what predicts

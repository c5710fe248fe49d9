"""The data-quality rules: each passes on the pipeline's real values and fails, naming the problem,
on a corrupted copy. Session fixtures are never mutated: graphs are shallow-copied (PyG copies the
stores) and tensors replaced, not edited in place."""

import copy
import datetime as dt
import math
import re

import polars as pl
import pytest
import torch
from torch_geometric.data import HeteroData

from adrel_pipeline import graph_validation as gv
from adrel_pipeline import validation as v
from adrel_pipeline.graph import AD, AD_USER, NON_AD, NON_AD_USER, USER, USER_AD, USER_NON_AD
from adrel_pipeline.specs import ModelCheckSpec
from adrel_pipeline.world import AGE_GROUPS, INTERESTS
from adrel_pipeline_tests.conftest import WEEK

D1, D2, D3 = dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)


def assert_fails(outcome, *fragments):
    assert outcome.passed is False, outcome.description
    for fragment in fragments:
        assert fragment in outcome.description, (fragment, outcome.description)
    assert "\n" not in outcome.description


def assert_passes(outcome):
    assert outcome.passed is True, outcome.description
    assert "\n" not in outcome.description


def assert_scalar_metadata(outcome):
    assert all(isinstance(k, str) and isinstance(x, (int, float, str)) and not isinstance(x, bool)
               for k, x in outcome.metadata.items()), outcome.metadata


# --- tables ---------------------------------------------------------------------------------------


def test_ids_unique_passes_on_the_world(world):
    users, items, _ = world
    for table, column in ((users, "user_id"), (items, "item_id")):
        outcome = v.ids_unique(table, column)
        assert_passes(outcome)
        assert_scalar_metadata(outcome)
        assert outcome.metadata == {"rows": table.height, "duplicated_ids": 0, "null_ids": 0}


def test_ids_unique_names_duplicated_ids(world):
    users = world[0]
    ids = users["user_id"].to_list()
    ids[5], ids[9], ids[10] = 4, 4, 8
    outcome = v.ids_unique(users.with_columns(pl.Series("user_id", ids)), "user_id")
    assert_fails(outcome, "2 duplicated user_id values, e.g. [4, 8]")
    assert outcome.metadata["duplicated_ids"] == 2


def test_ids_unique_rejects_null_ids(world):
    users = world[0]
    corrupted = users.with_columns(pl.when(pl.col("user_id") == 3).then(None).otherwise(pl.col("user_id"))
                                   .alias("user_id"))
    outcome = v.ids_unique(corrupted, "user_id")
    assert_fails(outcome, "1 null user_id values")
    assert outcome.metadata["null_ids"] == 1 and outcome.metadata["duplicated_ids"] == 0


def test_values_in_vocabulary_passes_on_the_world(world):
    users, items, _ = world
    for table, column, vocabulary in ((users, "age_group", AGE_GROUPS), (users, "main_interest", INTERESTS),
                                      (items, "category", INTERESTS)):
        outcome = v.values_in_vocabulary(table, column, vocabulary)
        assert_passes(outcome)
        assert_scalar_metadata(outcome)
        assert outcome.metadata["outside_vocabulary"] == 0


def test_values_in_vocabulary_names_unknown_values(world):
    items = world[1]
    categories = items["category"].to_list()
    categories[0] = "Cooking"
    outcome = v.values_in_vocabulary(items.with_columns(pl.Series("category", categories)), "category", INTERESTS)
    assert_fails(outcome, "1 category values outside", "Cooking")
    assert outcome.metadata["outside_vocabulary"] == 1


def test_values_in_vocabulary_counts_nulls_as_violations(world):
    users = world[0]
    corrupted = users.with_columns(pl.when(pl.col("user_id") < 2).then(None).otherwise(pl.col("age_group"))
                                   .alias("age_group"))
    outcome = v.values_in_vocabulary(corrupted, "age_group", AGE_GROUPS)
    assert_fails(outcome, "2 age_group values outside", "None")
    assert outcome.metadata["nulls"] == 2


def test_references_known_passes_on_the_world(world):
    outcome = v.references_known(world[2], world[0], world[1])
    assert_passes(outcome)
    assert_scalar_metadata(outcome)
    assert outcome.metadata["unknown_user_id"] == outcome.metadata["unknown_item_id"] == 0


def _with_extra_interactions(interactions, user_ids, item_ids):
    extra = pl.DataFrame({"user_id": user_ids, "item_id": item_ids},
                         schema={"user_id": pl.Int64, "item_id": pl.Int64})
    return pl.concat([interactions.select("user_id", "item_id"), extra])


def test_references_known_names_unknown_users(world):
    users, items, interactions = world
    bad = _with_extra_interactions(interactions, [10**6, 10**6 + 1], [0, 1])
    outcome = v.references_known(bad, users, items)
    assert_fails(outcome, "2 interactions reference an unknown or null user_id", str(10**6))
    assert outcome.metadata["unknown_user_id"] == 2 and outcome.metadata["unknown_item_id"] == 0


def test_references_known_names_unknown_and_null_items(world):
    users, items, interactions = world
    bad = _with_extra_interactions(interactions, [0, 1], [123_456_789, None])
    outcome = v.references_known(bad, users, items)
    assert_fails(outcome, "2 interactions reference an unknown or null item_id", "123456789", "None")
    assert outcome.metadata["unknown_item_id"] == 2 and outcome.metadata["unknown_user_id"] == 0


# --- daily counts ---------------------------------------------------------------------------------


def _log(counts):
    days = [day for day, n in counts.items() for _ in range(n)]
    return pl.DataFrame({"user_id": list(range(len(days))), "item_id": [0] * len(days), "day": days},
                        schema={"user_id": pl.Int64, "item_id": pl.Int64, "day": pl.Date})


def test_daily_counts_passes_when_days_and_counts_match():
    expected = {D1: 3, D2: 2, D3: 4}
    outcome = v.daily_counts(_log(expected), expected)
    assert_passes(outcome)
    assert_scalar_metadata(outcome)
    assert {k: outcome.metadata[k] for k in ("days", "rows", "expected_rows")} == \
        {"days": 3, "rows": 9, "expected_rows": 9}


def _week_counts(spec):
    return {d: spec.interactions_on(d) for d in WEEK}


def test_daily_counts_passes_on_the_world(spec, world):
    expected = _week_counts(spec)
    outcome = v.daily_counts(world[2], expected)
    assert_passes(outcome)
    assert_scalar_metadata(outcome)
    assert outcome.metadata["days"] == len(WEEK)
    assert outcome.metadata["rows"] == outcome.metadata["expected_rows"] == spec.num_interactions


def _drop_day(interactions, day):
    return interactions.filter(pl.col("day") != day)


def _add_day(interactions, day):
    return pl.concat([interactions, interactions.head(3).with_columns(pl.lit(day, dtype=pl.Date).alias("day"))])


def _drop_one_row_of(interactions, day):
    first = interactions.with_row_index("row").filter(pl.col("day") == day)["row"][0]
    return interactions.with_row_index("row").filter(pl.col("row") != first).drop("row")


@pytest.mark.parametrize("corrupt, fragment, counter", [
    (lambda log: _drop_day(log, WEEK[3]), f"1 day missing: e.g. ['{WEEK[3]} (expected", "missing_days"),
    (lambda log: _add_day(log, WEEK[-1] + dt.timedelta(days=1)),
     f"1 unexpected day: e.g. ['{WEEK[-1] + dt.timedelta(days=1)} (3 rows)']", "unexpected_days"),
    (lambda log: _drop_one_row_of(log, WEEK[2]), f"1 day with the wrong count: e.g. ['{WEEK[2]}: ", "wrong_count_days"),
], ids=["missing_day", "extra_day", "wrong_count"])
def test_daily_counts_fails_on_a_corrupted_week(spec, world, corrupt, fragment, counter):
    outcome = v.daily_counts(corrupt(world[2]), _week_counts(spec))
    assert_fails(outcome, fragment)
    assert outcome.metadata[counter] == 1
    assert sum(outcome.metadata[k] for k in ("missing_days", "unexpected_days", "wrong_count_days")) == 1
    assert world[2].height == spec.num_interactions  # the fixture is untouched


def test_daily_counts_wrong_count_names_found_and_expected(spec, world):
    n = spec.interactions_on(WEEK[2])
    outcome = v.daily_counts(_drop_one_row_of(world[2], WEEK[2]), _week_counts(spec))
    assert_fails(outcome, f"{WEEK[2]}: {n - 1} rows, expected {n}")


def test_daily_counts_accepts_an_absent_day_expected_empty():
    assert_passes(v.daily_counts(_log({D1: 3}), {D1: 3, D2: 0}))


def test_daily_counts_names_a_missing_day():
    outcome = v.daily_counts(_log({D1: 3, D3: 4}), {D1: 3, D2: 2, D3: 4})
    assert_fails(outcome, "1 day missing", "2026-01-02 (expected 2 rows)")
    assert outcome.metadata["missing_days"] == 1 and outcome.metadata["days"] == 2


def test_daily_counts_names_an_unexpected_day():
    outcome = v.daily_counts(_log({D1: 3, D2: 2, D3: 1}), {D1: 3, D2: 2})
    assert_fails(outcome, "1 unexpected day", "2026-01-03 (1 rows)")
    assert outcome.metadata["unexpected_days"] == 1


def test_daily_counts_names_a_wrong_count():
    outcome = v.daily_counts(_log({D1: 3, D2: 1}), {D1: 3, D2: 2})
    assert_fails(outcome, "1 day with the wrong count", "2026-01-02: 1 rows, expected 2")
    assert outcome.metadata["wrong_count_days"] == 1 and outcome.metadata["rows"] == 4


def test_daily_counts_rejects_null_days_and_a_missing_day_column():
    log = _log({D1: 2})
    with_null = pl.concat([log, log.head(1).with_columns(pl.lit(None, dtype=pl.Date).alias("day"))])
    assert_fails(v.daily_counts(with_null, {D1: 2}), "1 row with a null day")
    assert_fails(v.daily_counts(log.drop("day"), {D1: 2}), "no day column")
    assert_fails(v.daily_counts(log.with_columns(pl.col("day").cast(pl.Datetime)), {D1: 2}), "expected Date")


# --- graph ----------------------------------------------------------------------------------------


def test_graph_features_pass_on_the_graph(graph):
    outcome = gv.graph_features(graph)
    assert_passes(outcome)
    assert_scalar_metadata(outcome)
    assert outcome.metadata["rows/user"] == graph[USER].num_nodes


def test_graph_features_reject_an_extra_row(graph):
    bad = copy.copy(graph)
    bad[AD].x = torch.cat([graph[AD].x, graph[AD].x[:1]])
    n = graph[AD].num_nodes
    assert_fails(gv.graph_features(bad), f"ad: {n + 1} feature rows for {n + 1} nodes and {n} node ids")
    assert graph[AD].x.shape[0] == n  # the fixture is untouched


def test_graph_features_reject_nan_and_inf(graph):
    bad = copy.copy(graph)
    x = graph[USER].x.clone()
    x[7, 0], x[9, 2] = math.nan, math.inf
    bad[USER].x = x
    outcome = gv.graph_features(bad)
    assert_fails(outcome, "user: 2 feature rows with NaN/inf, e.g. [7, 9]")
    assert outcome.metadata["non_finite_rows/user"] == 2
    assert torch.isfinite(graph[USER].x).all()


def test_graph_features_reject_a_one_dimensional_x(graph):
    bad = copy.copy(graph)
    bad[NON_AD].x = graph[NON_AD].x[:, 0].clone()
    assert_fails(gv.graph_features(bad), "non_ad: no 2-D feature matrix x")


def test_graph_edge_indices_pass_on_the_graph_and_every_split(graph, split):
    for data in (graph, *split.values()):
        outcome = gv.graph_edge_indices(data)
        assert_passes(outcome)
        assert_scalar_metadata(outcome)
    assert outcome.metadata["edges/user__to__ad"] == split["test"][USER_AD].edge_index.shape[1]


def _with_edge_index(graph, edge_type, edge_index):
    bad = copy.copy(graph)
    bad[edge_type].edge_index = edge_index
    return bad


def test_graph_edge_indices_reject_an_index_equal_to_num_nodes(graph):
    ei = graph[USER_AD].edge_index.clone()
    n_ads = graph[AD].num_nodes
    ei[1, 3] = n_ads
    outcome = gv.graph_edge_indices(_with_edge_index(graph, USER_AD, ei))
    assert_fails(outcome, f"user__to__ad: 1 target indices outside [0, {n_ads}), e.g. [{n_ads}]")


def test_graph_edge_indices_reject_a_negative_index(graph):
    ei = graph[NON_AD_USER].edge_index.clone()
    ei[1, 0] = -1
    outcome = gv.graph_edge_indices(_with_edge_index(graph, NON_AD_USER, ei))
    assert_fails(outcome, "non_ad__rev_to__user: 1 target indices outside", "e.g. [-1]")


def test_graph_edge_indices_reject_a_float_or_misshapen_index(graph):
    ei = graph[USER_NON_AD].edge_index
    assert_fails(gv.graph_edge_indices(_with_edge_index(graph, USER_NON_AD, ei.float())),
                 "user__to__non_ad: edge_index must be an integer [2, E] tensor", "torch.float32")
    assert_fails(gv.graph_edge_indices(_with_edge_index(graph, USER_NON_AD, ei.t().contiguous())),
                 "user__to__non_ad: edge_index must be an integer [2, E] tensor")


def test_graph_edge_indices_reject_reverse_edges_that_do_not_mirror(graph):
    rev = graph[AD_USER].edge_index
    first = graph[USER_AD].edge_index[:, 0].tolist()
    # Drop one reverse edge: its forward edge has no mirror.
    outcome = gv.graph_edge_indices(_with_edge_index(graph, AD_USER, rev[:, 1:].clone()))
    assert_fails(outcome, "ad__rev_to__user does not mirror user__to__ad", "1 forward edges without a reverse",
                 str(tuple(first)))
    assert outcome.metadata["unmirrored/user__to__ad"] == 1
    # A same-sized reverse over different pairs fails as well.
    shifted = graph[NON_AD_USER].edge_index.clone()
    shifted[0] = (shifted[0] + 1) % graph[NON_AD].num_nodes
    assert_fails(gv.graph_edge_indices(_with_edge_index(graph, NON_AD_USER, shifted)),
                 "non_ad__rev_to__user does not mirror user__to__non_ad")


def test_graph_edge_indices_reject_a_missing_reverse_type():
    small = HeteroData()
    small[USER].x = torch.zeros(3, 2)
    small[AD].x = torch.zeros(2, 2)
    small[USER_AD].edge_index = torch.tensor([[0, 2], [1, 0]])
    assert_fails(gv.graph_edge_indices(small), "user__to__ad has no mirror edge type ad__rev_to__user")
    small[AD_USER].edge_index = torch.tensor([[1, 0], [0, 2]])
    assert_passes(gv.graph_edge_indices(small))


# --- split ----------------------------------------------------------------------------------------


def _positives(data):
    store = data[USER_AD]
    return store.edge_label_index[:, store.edge_label == 1]


def _with_extra_message_passing(split, name, edges, forward=True, reverse=True):
    """A copy of ``split`` whose ``name`` graph also passes messages over ``edges`` (user, ad)."""
    data = copy.copy(split[name])
    if forward:
        data[USER_AD].edge_index = torch.cat([split[name][USER_AD].edge_index, edges], dim=1)
    if reverse:
        data[AD_USER].edge_index = torch.cat([split[name][AD_USER].edge_index, edges.flip(0)], dim=1)
    return {**split, name: data}


def test_split_without_leakage_passes_on_the_split(split):
    outcome = gv.split_without_leakage(split)
    assert_passes(outcome)
    assert_scalar_metadata(outcome)
    assert all(outcome.metadata[k] == 0 for k in outcome.metadata if k.startswith("leaked/"))
    assert outcome.metadata["positives/test"] == int(split["test"][USER_AD].edge_label.sum())


@pytest.mark.parametrize("forward, reverse, counts", [(True, False, "1 forward, 0 reverse"),
                                                      (False, True, "0 forward, 1 reverse")])
def test_split_without_leakage_catches_a_test_positive_in_train_message_passing(split, forward, reverse, counts):
    edge = _positives(split["test"])[:, :1]
    user, ad = edge[:, 0].tolist()
    outcome = gv.split_without_leakage(_with_extra_message_passing(split, "train", edge, forward, reverse))
    assert_fails(outcome, f"1 test positives in the train message-passing graph ({counts}), e.g. [({user}, {ad})]")
    assert outcome.metadata["leaked/test_in_train_graph"] == 1
    assert sum(x for k, x in outcome.metadata.items() if k.startswith("leaked/")) == 1
    # The fixture is untouched.
    assert_passes(gv.split_without_leakage(split))


def test_split_without_leakage_catches_a_val_positive_in_its_own_graph(split):
    edges = _positives(split["val"])[:, :2]
    outcome = gv.split_without_leakage(_with_extra_message_passing(split, "val", edges))
    assert_fails(outcome, "2 val positives in the val message-passing graph (2 forward, 2 reverse)")
    assert outcome.metadata["leaked/val_in_val_graph"] == 2


def test_split_without_leakage_catches_test_positives_in_val_and_train_supervision_in_train(split):
    outcome = gv.split_without_leakage(_with_extra_message_passing(split, "val", _positives(split["test"])[:, :1]))
    assert_fails(outcome, "1 test positives in the val message-passing graph")
    assert outcome.metadata["leaked/test_in_val_graph"] == 1
    outcome = gv.split_without_leakage(_with_extra_message_passing(split, "train", _positives(split["train"])[:, :3],
                                                                  reverse=False))
    assert_fails(outcome, "3 train positives in the train message-passing graph (3 forward, 0 reverse)")
    assert outcome.metadata["leaked/train_supervision_in_train_graph"] == 3


def test_class_balance_passes_on_the_split(split):
    outcome = gv.class_balance(split, neg_ratio=1.0)
    assert_passes(outcome)
    assert_scalar_metadata(outcome)
    for name in ("val", "test"):
        assert outcome.metadata[f"{name}/negatives"] == outcome.metadata[f"{name}/positives"] > 0
        assert outcome.metadata[f"{name}/positive_share"] == 0.5
    assert outcome.metadata["train/negatives"] == 0


def _with_labels(split, name, keep=None, label=None):
    data = copy.copy(split[name])
    store = split[name][USER_AD]
    index, labels = store.edge_label_index, store.edge_label if label is None else label
    if keep is not None:
        index, labels = index[:, keep], labels[keep]
    data[USER_AD].edge_label_index, data[USER_AD].edge_label = index, labels
    return {**split, name: data}


@pytest.mark.parametrize("name", ["val", "test"])
def test_class_balance_catches_a_dropped_negative(split, name):
    labels = split[name][USER_AD].edge_label
    keep = torch.ones(labels.numel(), dtype=torch.bool)
    keep[int((labels == 0).nonzero()[0])] = False
    pos = int(labels.sum())
    outcome = gv.class_balance(_with_labels(split, name, keep=keep), neg_ratio=1.0)
    assert_fails(outcome, f"{name}: {pos - 1} negatives for {pos} positives, expected round(1.0 x {pos}) = {pos}")
    assert outcome.metadata[f"{name}/negatives"] == pos - 1
    other = "test" if name == "val" else "val"
    assert other + ":" not in outcome.description  # only the corrupted split is blamed
    assert split[name][USER_AD].edge_label.numel() == labels.numel()  # the fixture is untouched


def test_class_balance_catches_a_ratio_other_than_configured(split):
    assert_fails(gv.class_balance(split, neg_ratio=2.0), "val: ", "expected round(2.0 x")


def test_class_balance_catches_labels_other_than_zero_and_one_and_train_negatives(split):
    label = split["val"][USER_AD].edge_label.clone()
    label[0] = 2.0
    assert_fails(gv.class_balance(_with_labels(split, "val", label=label), neg_ratio=1.0),
                 "val: 1 labels other than 0/1, e.g. [2.0]")
    train_label = split["train"][USER_AD].edge_label.clone()
    train_label[:4] = 0.0
    assert_fails(gv.class_balance(_with_labels(split, "train", label=train_label), neg_ratio=1.0),
                 "train: 4 stored negatives, expected none")
    assert split["train"][USER_AD].edge_label.min() == 1.0


# --- model ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("auc, passed", [(0.55, True), (0.5501, True), (0.9, True), (0.5499, False),
                                         (0.5, False), (math.nan, False)])
def test_auc_above_chance_is_inclusive_at_the_minimum(auc, passed):
    outcome = v.auc_above_chance(auc, 0.55)
    assert outcome.passed is passed
    assert_scalar_metadata(outcome)
    if not passed:
        assert "below the minimum 0.5500" in outcome.description


@pytest.mark.parametrize("auc, passed", [(0.80, True), (0.82, True), (0.70, True), (0.8201, False),
                                         (0.95, False), (math.nan, False)])
def test_auc_within_ceiling_is_inclusive_at_oracle_plus_tolerance(auc, passed):
    # 0.5 + 0.25 == 0.75 exactly in binary floating point: the boundary is tested without rounding noise.
    assert v.auc_within_ceiling(0.75, 0.5, 0.25).passed
    outcome = v.auc_within_ceiling(auc, 0.80, 0.02)
    assert outcome.passed is passed
    assert_scalar_metadata(outcome)
    if not passed:
        assert "above the Bayes-optimal ceiling" in outcome.description and "leak" in outcome.description


@pytest.mark.parametrize("auc, passed", [(0.70, True), (0.69, True), (0.6901, True), (0.75, True),
                                         (0.6899, False), (0.5, False)])
def test_auc_vs_champion_is_inclusive_at_champion_minus_margin(auc, passed):
    assert v.auc_vs_champion(0.5, 0.75, 0.25).passed  # exact boundary, no rounding noise
    outcome = v.auc_vs_champion(auc, 0.70, 0.01)
    assert outcome.passed is passed
    assert_scalar_metadata(outcome)
    if not passed:
        assert "trails the champion's 0.7000" in outcome.description


# The boundaries exactly as the rules compute them (oracle + tolerance, champion - margin), whatever the
# floating-point rounding of the sum: the rules are inclusive there.
@pytest.mark.parametrize("reference, slack", [(0.80, 0.02), (0.7, 0.01), (0.9, 0.0), (0.63, 0.05), (0.75, 0.25)])
def test_auc_rules_are_inclusive_at_their_computed_boundaries(reference, slack):
    assert_passes(v.auc_above_chance(reference, reference))
    assert_passes(v.auc_within_ceiling(reference + slack, reference, slack))
    assert_passes(v.auc_vs_champion(reference - slack, reference, slack))
    assert_fails(v.auc_above_chance(reference - 1e-6, reference), "below the minimum")
    assert_fails(v.auc_within_ceiling(reference + slack + 1e-6, reference, slack), "exceeds the Bayes-optimal AUC")
    assert_fails(v.auc_vs_champion(reference - slack - 1e-6, reference, slack), "trails the champion's")


def test_auc_vs_champion_passes_without_a_champion():
    outcome = v.auc_vs_champion(0.51, None, 0.01)
    assert_passes(outcome)
    assert "no champion" in outcome.description
    assert_scalar_metadata(outcome)


def test_model_check_spec_defaults_and_bounds():
    spec = ModelCheckSpec()
    assert (spec.min_test_auc, spec.oracle_tolerance, spec.champion_margin) == (0.55, 0.02, 0.01)
    ModelCheckSpec(min_test_auc=0.5, oracle_tolerance=0.0, champion_margin=0.0)
    ModelCheckSpec(min_test_auc=1, oracle_tolerance=0.5, champion_margin=0.5)


@pytest.mark.parametrize("field, value, allowed", [
    ("min_test_auc", 0.49, "[0.5, 1.0]"), ("min_test_auc", 1.01, "[0.5, 1.0]"),
    ("min_test_auc", math.nan, "[0.5, 1.0]"), ("min_test_auc", "0.6", "[0.5, 1.0]"),
    ("oracle_tolerance", -0.01, "[0.0, 0.5]"), ("oracle_tolerance", 0.6, "[0.0, 0.5]"),
    ("champion_margin", -1e-9, "[0.0, 0.5]"), ("champion_margin", True, "[0.0, 0.5]"),
])
def test_model_check_spec_rejects_out_of_range_values(field, value, allowed):
    with pytest.raises(ValueError, match=rf"^{field}=.* out of range: .*{re.escape(allowed)}"):
        ModelCheckSpec(**{field: value})

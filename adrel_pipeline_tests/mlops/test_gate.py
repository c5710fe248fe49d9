"""The promotion gate: the pure policy, and the registry kept right through re-evaluations,
backfills and ties. Each test builds its own store: they pass alone and in any order
(``pytest -p random_order --random-order adrel_pipeline_tests/mlops/test_gate.py``)."""

import polars as pl
import pytest
import torch
from mlflow import MlflowClient

from adrel_pipeline.graph.build import AD, USER, USER_AD
from adrel_pipeline.graph.split import next_day_pairs
from adrel_pipeline.mlops.promotion import CHALLENGER, CHAMPION, NO_ALIAS, Comparison, decide
from adrel_pipeline.mlops.registry import DEFAULT_MODEL_NAME as MODEL
from adrel_pipeline.world import WorldSpec, generate_day
from adrel_pipeline_tests.conftest import SMALL_WORLD, WEEK, materialize, metadata, week_in_a_fresh_store

DAY = WEEK[-1].isoformat()


def comparison(new, champion, se):
    return Comparison("4", new, champion, se, "the same pairs")


# --- the policy -------------------------------------------------------------------------------------


def test_the_first_version_is_champion():
    assert decide("2026-01-07", None, None, None).alias == CHAMPION


def test_promotion_needs_a_gain_beyond_one_paired_standard_error():
    assert decide(DAY, DAY, "4", comparison(0.720, 0.700, 0.010)).alias == CHAMPION
    within = decide(DAY, DAY, "4", comparison(0.705, 0.700, 0.010))
    assert within.alias == CHALLENGER and "not better by more than one standard error" in within.reason
    tie = decide(DAY, DAY, "4", comparison(0.700, 0.700, 0.0))
    assert tie.alias == CHALLENGER and "a tie does not promote" in tie.reason
    assert decide(DAY, DAY, "4", comparison(0.690, 0.700, 0.001)).alias == CHALLENGER


def test_a_backfilled_older_day_never_takes_an_alias_however_good():
    decision = decide("2026-01-03", "2026-01-07", "4", comparison(0.99, 0.60, 0.001))
    assert decision.alias == NO_ALIAS and "older than the newest day 2026-01-07" in decision.reason
    assert decide("2026-01-03", "2026-01-07", None, None).alias == NO_ALIAS


def test_an_incomparable_champion_is_left_for_a_person():
    decision = decide(DAY, DAY, "4", None, incomparable="feature sizes differ")
    assert decision.alias == CHALLENGER and "feature sizes differ" in decision.reason


# --- next-day pairs ---------------------------------------------------------------------------------


def test_next_day_pairs_are_new_links_against_non_edges(spec, world, split):
    users, items, _ = world
    test = split["test"]
    next_day = generate_day(spec, users, items, WEEK[-1] + (WEEK[-1] - WEEK[-2]))
    pairs, labels = next_day_pairs(test, next_day, 1.0, seed=0)
    num_ads = test[AD].num_nodes
    key = lambda e: set((e[0] * num_ads + e[1]).tolist())
    window = key(test[USER_AD].edge_index) | key(test[USER_AD].edge_label_index[:, test[USER_AD].edge_label.bool()])
    positives, negatives = pairs[:, labels == 1], pairs[:, labels == 0]
    assert positives.shape[1] > 0 and negatives.shape[1] == positives.shape[1]
    assert not key(positives) & window, "a next-day positive that the window already had"
    ids = pl.DataFrame({"user_id": test[USER].node_id[positives[0]].numpy(),
                        "item_id": test[AD].node_id[positives[1]].numpy()})
    assert ids.join(next_day, on=["user_id", "item_id"], how="anti").height == 0, "positives are next-day pairs"
    seen = next_day.join(ids, on=["user_id", "item_id"], how="semi")
    assert seen.height >= positives.shape[1]
    assert not key(negatives) & (window | key(positives))
    again = next_day_pairs(test, next_day, 1.0, seed=0)
    assert torch.equal(again[0], pairs) and torch.equal(again[1], labels)


# --- the registry through the pipeline --------------------------------------------------------------


def client(uri):
    return MlflowClient(uri, registry_uri=uri)


def registry_state(uri):
    c = client(uri)
    versions = {str(v.version): (dict(v.tags), v.description) for v in c.search_model_versions(f"name='{MODEL}'")}
    aliases = dict(c.get_registered_model(MODEL).aliases)
    runs = {v: c.get_run(c.get_model_version(MODEL, v).run_id).data for v in versions}
    return versions, aliases, {v: (r.tags.get("adrel.promotion"), r.metrics.get("champion_test_auc"))
                               for v, r in runs.items()}


@pytest.fixture
def store(tmp_path):
    with week_in_a_fresh_store(tmp_path) as store:
        yield store


@pytest.mark.slow
def test_rerunning_test_auc_alone_leaves_the_registry_as_it_was(store):
    instance, uri = store
    # A second, worse training of the same day: a challenger that recorded the champion's AUC.
    assert materialize(instance, uri, run_config={"ops": {"trained_gat": {"config": {"epochs": 2}},
                                                          "test_auc": {"config": {"min_test_auc": 0.5}}}},
                       selection=["trained_gat", "test_auc"]).success
    before = metadata(instance, "test_auc")
    assert before["promotion"] == CHALLENGER and "champion_test_auc" in before
    state = registry_state(uri)

    assert materialize(instance, uri, run_config={"ops": {"test_auc": {"config": {"min_test_auc": 0.5}}}},
                       selection=["test_auc"]).success
    after = metadata(instance, "test_auc")
    assert registry_state(uri) == state
    for key in ("mlflow_model_version", "promotion", "promotion_reason", "champion_test_auc", "test_auc"):
        assert after[key] == before[key], key

    # A re-evaluation that fails a blocking check fails, but never tags a registered run rejected.
    strict = materialize(instance, uri, run_config={"ops": {"test_auc": {"config": {"min_test_auc": 0.99}}}},
                         selection=["test_auc"], raise_on_error=False)
    assert not strict.success
    assert registry_state(uri) == state


@pytest.mark.slow
def test_a_tie_does_not_promote_and_a_backfilled_day_leaves_the_aliases_alone(store):
    instance, uri = store
    first = metadata(instance, "test_auc")
    assert (first["mlflow_model_version"], first["promotion"]) == (1, CHAMPION)
    # The same training again: identical model, identical AUC on the same pairs.
    assert materialize(instance, uri, selection=["trained_gat", "test_auc"]).success
    tie = metadata(instance, "test_auc")
    assert tie["test_auc"] == first["test_auc"] and tie["champion_test_auc"] == first["test_auc"]
    assert (tie["mlflow_model_version"], tie["promotion"]) == (2, CHALLENGER)
    assert "a tie does not promote" in tie["promotion_reason"]

    older = WEEK[-3].isoformat()
    assert materialize(instance, uri, partition_key=older).success
    backfilled = metadata(instance, "test_auc")
    assert backfilled["promotion"] == "none" and f"backfilled day {older}" in backfilled["promotion_reason"]
    c = client(uri)
    assert {k: str(v) for k, v in c.get_registered_model(MODEL).aliases.items()} == {CHAMPION: "1", CHALLENGER: "2"}
    version = c.get_model_version(MODEL, str(backfilled["mlflow_model_version"]))
    assert version.tags["partition"] == older
    assert version.tags["world_fingerprint"] == WorldSpec(**SMALL_WORLD).fingerprint
    assert version.tags["window_days"] == "7" and version.tags["code_version"]


@pytest.mark.slow
def test_next_day_auc_is_reported_once_the_next_day_exists(store):
    instance, uri = store
    assert "next_day_auc" not in metadata(instance, "test_auc")
    next_day = (WEEK[-1] + (WEEK[-1] - WEEK[-2])).isoformat()
    assert materialize(instance, uri, selection=["interaction_edges"], partition_key=next_day, run_config={}).success
    assert materialize(instance, uri, selection=["test_auc"], run_config={}).success
    md = metadata(instance, "test_auc")
    assert md["next_day_pairs"] > 0
    assert 0.5 < md["next_day_auc"] <= 1 and 0.5 < md["next_day_oracle_auc"] <= 1


@pytest.mark.slow
def test_a_champion_this_code_cannot_load_is_left_for_a_person(store, monkeypatch):
    instance, uri = store
    from adrel_pipeline.mlops import packaging

    def old_code(model_uri):
        raise ModuleNotFoundError("No module named 'adrel_pipeline.model'")

    monkeypatch.setattr(packaging, "load_pyfunc", old_code)
    assert materialize(instance, uri, selection=["trained_gat", "test_auc"]).success
    md = metadata(instance, "test_auc")
    assert md["promotion"] == CHALLENGER and "cannot be loaded by this code" in md["promotion_reason"]
    assert "champion_test_auc" not in md
    assert str(MlflowClient(uri, registry_uri=uri).get_model_version_by_alias(MODEL, CHAMPION).version) == "1"

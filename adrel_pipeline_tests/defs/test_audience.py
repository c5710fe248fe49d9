"""The audience group in Dagster: the inbox sensor, and the whole group on a small world (every
advertiser in one run, then one uploaded advertiser added without redeploying)."""

from __future__ import annotations

import os
import time

import numpy as np
import polars as pl
import pytest

from adrel_pipeline_tests.conftest import SMALL_WORLD, WEEK, materialize, metadata, range_tags, sqlite_uri

# Few advertisers and a short embedding training: the wiring is under test, not the methods' quality.
AUDIENCE_WORLD = {**SMALL_WORLD, "num_advertisers": 8}
SETUP = ["users", "items", "advertisers", "interaction_edges"]
GROUP = ["user_embeddings", "seed_lists", "audience_models", "audience_expansions", "audience_eval"]
METHODS = ("lr", "lsh", "nn", "nn_unweighted", "oracle")


def _audience(inbox):
    from adrel_pipeline.defs.audience.resources import AudienceResource

    return AudienceResource(inbox_dir=str(inbox))


def _setup(instance, uri, inbox):
    result = materialize(instance, uri, world=AUDIENCE_WORLD, audience=_audience(inbox), selection=SETUP,
                         tags=range_tags(WEEK[0].isoformat(), WEEK[-1].isoformat()), run_config={})
    assert result.success
    return instance.get_dynamic_partitions("advertisers")


def _drop(inbox, name: str, frame: pl.DataFrame | str) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    if isinstance(frame, str):
        path.write_text(frame)
    else:
        frame.write_csv(path)
    old = time.time() - 60  # settled: not a file still being copied in
    os.utime(path, (old, old))


def _tick(instance, inbox):
    import dagster as dg

    from adrel_pipeline.defs.audience.sensors import audience_inbox_sensor

    context = dg.build_sensor_context(instance=instance, resources={"audience": _audience(inbox)})
    return audience_inbox_sensor(context)


def test_advertisers_register_partitions_and_the_sensor_accepts_or_rejects_each_upload(tmp_path):
    import dagster as dg

    inbox = tmp_path / "inbox"
    with dg.instance_for_test() as instance:
        keys = _setup(instance, sqlite_uri(tmp_path), inbox)
        assert len(keys) == AUDIENCE_WORLD["num_advertisers"]
        users = np.arange(SMALL_WORLD["num_users"])
        good = pl.DataFrame({"user_id": users[:40], "impressions": np.full(40, 10), "clicks": np.arange(40) % 5})
        _drop(inbox, "acme.csv", good)
        _drop(inbox, "dups.csv", pl.DataFrame({"user_id": [1, 2, 2, 3] * 5}))
        _drop(inbox, "ghosts.csv", pl.DataFrame({"user_id": np.arange(10**6, 10**6 + 30)}))
        _drop(inbox, "tiny.csv", pl.DataFrame({"user_id": [1, 2, 3]}))
        _drop(inbox, "nocolumn.csv", pl.DataFrame({"uid": users[:30]}))
        _drop(inbox, f"{keys[0]}.csv", good)
        _drop(inbox, "notes.txt", "user_id\n1\n")
        _drop(inbox, "fresh.csv", good)
        os.utime(inbox / "fresh.csv")  # just written: waits for the next tick

        result = _tick(instance, inbox)

        assert [r.partition_key for r in result.run_requests] == ["acme"]
        assert [r.partition_keys for r in result.dynamic_partitions_requests] == [["acme"]]
        accepted = pl.read_parquet(inbox / "accepted" / "acme.parquet")
        assert accepted["user_id"].to_list() == users[:40].tolist()
        assert accepted["advertiser_id"].unique().to_list() == ["acme"]
        assert (inbox / "processed" / "acme.csv").exists() and (inbox / "fresh.csv").exists()
        reasons = {p.name.removesuffix(".error.txt"): p.read_text()
                   for p in (inbox / "rejected").glob("*.error.txt")}
        assert set(reasons) == {"dups.csv", "ghosts.csv", "tiny.csv", "nocolumn.csv", f"{keys[0]}.csv", "notes.txt"}
        assert "3 user_ids appear more than once (e.g. 1, 2, 3)" in reasons["dups.csv"]
        assert "30 of 30 user_ids are not platform users" in reasons["ghosts.csv"]
        assert "fewer than the minimum" in reasons["tiny.csv"]
        assert "missing column user_id" in reasons["nocolumn.csv"]
        assert "one of the data's own advertisers" in reasons[f"{keys[0]}.csv"]
        assert "unsupported file type .txt" in reasons["notes.txt"]
        # A rejected file leaves nothing else behind: no accepted list, no partition.
        assert sorted(p.name for p in (inbox / "accepted").iterdir()) == ["acme.parquet"]
        assert "dups" not in instance.get_dynamic_partitions("advertisers")


def _check_results(result) -> dict[str, bool]:
    return {f"{e.asset_key.to_user_string()}:{e.check_name}:{e.partition or ''}": e.passed
            for e in result.get_asset_check_evaluations()}


@pytest.mark.slow
def test_the_audience_group_on_a_small_world_then_one_uploaded_advertiser(tmp_path):
    import dagster as dg

    from adrel_pipeline.serving import expand_audience

    inbox, uri = tmp_path / "inbox", sqlite_uri(tmp_path)
    with dg.instance_for_test() as instance:
        keys = _setup(instance, uri, inbox)
        result = materialize(instance, uri, world=AUDIENCE_WORLD, audience=_audience(inbox), selection=GROUP,
                             tags=range_tags(keys[0], keys[-1]), run_config={})
        assert result.success
        checks = _check_results(result)
        assert checks and all(checks.values()), checks

        md = metadata(instance, "audience_eval")
        buckets = sorted({int(b) for b in metadata(instance, "advertisers")["buckets"]})
        assert len(buckets) >= 3
        for method in METHODS:
            for metric in ("recall_at_k", "precision_at_k"):
                assert 0.0 <= md[f"{metric}/{method}"] <= 1.0
                for bucket in buckets:
                    # NaN only where undefined: no expansion of the bucket met a holdout or random user.
                    value = md[f"{metric}/{method}/{bucket}"]
                    assert 0.0 <= value <= 1.0 or (metric == "precision_at_k" and np.isnan(value))
        assert md["advertisers"] == len(keys)
        # The oracle's expansions are far from chance: a random pick lands in the true audience at the
        # audiences' base rate.
        roster = pl.read_parquet(f"{instance.storage_directory()}/advertisers.parquet")
        base_rate = float((roster["audience_size"] / SMALL_WORLD["num_users"]).mean())
        assert md["gt_precision_at_k/oracle"] > base_rate + 0.1

        storage = instance.storage_directory()
        for key in keys:
            expansion = pl.read_parquet(f"{storage}/audience_expansions/{key}.parquet")
            seeds = pl.read_parquet(f"{storage}/seed_lists/{key}.parquet")
            assert expansion.join(seeds, on="user_id", how="semi").height == 0
            assert 0 < expansion.height <= round(10 * seeds.height)
            assert expansion["rank"].to_list() == list(range(1, expansion.height + 1))
            assert expansion["score"].is_sorted(descending=True)

        # From Python, without Dagster: the stored expansion, and the registered model's scores of it.
        top = expand_audience(keys[0], 5, storage_dir=storage)
        stored = pl.read_parquet(f"{storage}/audience_expansions/{keys[0]}.parquet").head(5)
        assert top["user_id"].to_list() == stored["user_id"].to_list()
        scored = expand_audience(keys[0], 50, source="model", storage_dir=storage, tracking_uri=uri)
        assert scored.join(seeds_of(storage, keys[0]), on="user_id", how="semi").height == 0
        both = stored.join(scored, on="user_id", suffix="_model")
        assert both.height == 5 and np.allclose(both["score"], both["score_model"], atol=1e-5)
        first = metadata(instance, "audience_models")
        assert first["promotion"] == "champion"
        _scores_in_a_process_without_dagster_or_the_checkout(tmp_path, uri, keys[0], stored)

        # An advertiser arrives without a redeploy: the sensor registers it, its run trains it alone.
        _drop(inbox, "acme.csv", seeds_of(storage, keys[-1]).select("user_id", "impressions", "clicks"))
        tick = _tick(instance, inbox)
        instance.add_dynamic_partitions("advertisers", tick.dynamic_partitions_requests[0].partition_keys)
        added = materialize(instance, uri, world=AUDIENCE_WORLD, audience=_audience(inbox),
                            selection=GROUP[1:], partition_key="acme", run_config={})
        assert added.success
        assert metadata(instance, "audience_eval")["advertisers"] == len(keys) + 1
        acme = metadata(instance, "audience_models")
        assert acme["promotion"] == "challenger" and "covers no advertiser" in acme["promotion_reason"]
        assert expand_audience("acme", 3, source="model", storage_dir=storage, tracking_uri=uri).height == 3


def _scores_in_a_process_without_dagster_or_the_checkout(tmp_path, uri, advertiser, stored) -> None:
    """``models:/adrel-actalike@champion`` in a fresh interpreter that cannot import this checkout
    (test_packaging's isolated loader): it scores the stored expansion's users as the pipeline did."""
    import json
    import subprocess
    import sys

    from adrel_pipeline_tests.mlops.test_packaging import ISOLATED_LOAD

    frame = {"advertiser_id": [advertiser] * stored.height, "user_id": stored["user_id"].to_list()}
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    out = subprocess.run([sys.executable, "-I", "-c", ISOLATED_LOAD, "adrel-actalike", json.dumps(frame)],
                         cwd=outside, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["dagster"] == []
    # The loader hid the checkout: the library the model ran is the copy logged with it.
    assert report["model_dir"] and all(f.startswith(report["model_dir"]) for f in report["shipped"].values() if f)
    np.testing.assert_allclose(report["probs"], stored["score"].to_numpy(), rtol=1e-5, atol=1e-6)


def seeds_of(storage, key) -> pl.DataFrame:
    return pl.read_parquet(f"{storage}/seed_lists/{key}.parquet")


def test_the_embedding_day_is_validated():
    from adrel_pipeline.defs.shared.partitions import embedding_days

    assert embedding_days({}) == [d.isoformat() for d in WEEK]
    assert embedding_days({"ADREL_EMBEDDING_DAY": "2026-01-02"}) == ["2026-01-01", "2026-01-02"]
    with pytest.raises(ValueError, match=r"ADREL_EMBEDDING_DAY='2025-12-31' is out of range: must be a date"):
        embedding_days({"ADREL_EMBEDDING_DAY": "2025-12-31"})
    with pytest.raises(ValueError, match="ADREL_EMBEDDING_DAY='yesterday' is out of range"):
        embedding_days({"ADREL_EMBEDDING_DAY": "yesterday"})

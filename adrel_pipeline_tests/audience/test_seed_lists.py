"""Uploaded seed lists: the contract is enforced with an error naming the file and the problem."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from adrel_pipeline.audience.seed_lists import SeedListError, advertiser_id_of, read_seed_list

KNOWN = np.arange(100)


def write(tmp_path, name: str, frame: pl.DataFrame):
    path = tmp_path / name
    frame.write_csv(path) if name.endswith(".csv") else frame.write_parquet(path)
    return path


@pytest.mark.parametrize("name", ["acme.csv", "acme.parquet"])
def test_a_good_list_is_normalised_in_either_format(tmp_path, name):
    frame = pl.DataFrame({"user_id": [5, 3, 9, 1] * 3 + [20, 21, 22], "impressions": range(15), "clicks": [0] * 15})
    frame = frame.unique("user_id", keep="first")
    table = read_seed_list(write(tmp_path, name, frame), KNOWN, min_users=5)
    assert table.columns == ["advertiser_id", "user_id", "impressions", "clicks"]
    assert table["user_id"].to_list() == sorted(frame["user_id"].to_list())
    assert set(table["advertiser_id"]) == {"acme"}
    # Metrics travel with their user.
    assert dict(zip(table["user_id"], table["impressions"])) == dict(zip(frame["user_id"], frame["impressions"]))


def test_without_metrics_every_seed_user_weighs_the_same(tmp_path):
    table = read_seed_list(write(tmp_path, "a.csv", pl.DataFrame({"user_id": range(10)})), KNOWN, min_users=5)
    assert table["impressions"].unique().to_list() == [1] and table["clicks"].unique().to_list() == [0]


@pytest.mark.parametrize("frame, message", [
    (pl.DataFrame({"uid": range(10)}), r"bad\.csv: missing column user_id \(columns: \['uid'\]\)"),
    (pl.DataFrame({"user_id": [1.5] * 10}), r"bad\.csv: column user_id must hold integers, got Float64"),
    (pl.DataFrame({"user_id": [1, 2, 2, 3, 3, 4, 5, 6]}), r"bad\.csv: 2 user_ids appear more than once \(e\.g\. 2, 3\)"),
    (pl.DataFrame({"user_id": [1, 2, 3, 500, 501, 6]}), r"bad\.csv: 2 of 6 user_ids are not platform users \(e\.g\. 500, 501\)"),
    (pl.DataFrame({"user_id": [1, 2, 3]}), r"bad\.csv: 3 users, fewer than the minimum of 5"),
    (pl.DataFrame({"user_id": range(6), "impressions": [1] * 6, "clicks": [0, 0, 0, 0, 0, 2]}),
     r"bad\.csv: 1 rows have negative impressions or clicks, or more clicks than impressions"),
    (pl.DataFrame({"user_id": range(6), "clicks": [0] * 6}), r"bad\.csv: clicks without impressions"),
    (pl.DataFrame({"user_id": [1, None, 3, 4, 5, 6]}), r"bad\.csv: column user_id has 1 empty values \(rows 1\)"),
])
def test_each_broken_contract_is_named(tmp_path, frame, message):
    with pytest.raises(SeedListError, match=message):
        read_seed_list(write(tmp_path, "bad.csv", frame), KNOWN, min_users=5)


def test_an_unreadable_file_and_bad_names_are_named(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_text("not parquet")
    with pytest.raises(SeedListError, match=r"broken\.parquet: cannot be read as parquet"):
        read_seed_list(path, KNOWN, min_users=5)
    with pytest.raises(SeedListError, match=r"unsupported file type \.xlsx"):
        advertiser_id_of(tmp_path / "acme.xlsx")
    with pytest.raises(SeedListError, match="the file name must be the advertiser id"):
        advertiser_id_of(tmp_path / "two words.csv")

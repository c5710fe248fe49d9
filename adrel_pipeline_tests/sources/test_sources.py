"""The data-source library (issue 17): export -> file source round trips, every bad-data error,
``$ADREL_SOURCE``, and PostgreSQL loaded from a directory."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid

import polars as pl
import pytest

from adrel_pipeline.contextual.spec import LabelSpec
from adrel_pipeline.export import TRUTH_COLUMNS, export_world, main
from adrel_pipeline.graph.features import synthetic_features
from adrel_pipeline.sources import (
    SOURCE_ENV,
    FileSource,
    SourceDataError,
    SyntheticSource,
    check_interactions,
    source_from_env,
)
from adrel_pipeline.sources.contract import INTERACTION_SCHEMA
from adrel_pipeline.world import WorldSpec, generate_day, generate_items, generate_users
from adrel_pipeline.world.advertisers import advertiser_ids, generate_seed_list
from adrel_pipeline.world.oracle import has_truth
from adrel_pipeline_tests.conftest import SMALL_WORLD

DAYS = [dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)]
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="module")
def small() -> WorldSpec:
    return WorldSpec(**SMALL_WORLD)


@pytest.fixture(scope="module", params=["parquet", "csv"])
def exported(request, small, tmp_path_factory):
    target = tmp_path_factory.mktemp(request.param) / "world"
    export_world(small, target, DAYS[0], DAYS[-1], fmt=request.param)
    return target


def test_export_round_trips_through_a_file_source(small, exported):
    source = FileSource(exported)
    users, items = generate_users(small), generate_items(small)
    assert source.users().equals(users.select("user_id", "age_group", "main_interest"))
    assert source.items().equals(items.select("item_id", "is_ad", "category"))
    assert source.days() == DAYS and source.first_day() == DAYS[0]
    for day in DAYS:
        got = source.interactions(day)
        assert got.schema == pl.Schema(INTERACTION_SCHEMA)
        assert got.equals(generate_day(small, users, items, day))
    # adrel.yaml rebuilds the synthetic features exactly, in order, with the fixed vocabularies.
    assert source.features == synthetic_features()
    # The oracle's truth is in the synthetic world's tables, never in the export's.
    assert not has_truth(source.users(), source.items())
    synthetic = SyntheticSource(small)
    assert has_truth(synthetic.users(), synthetic.items())
    # The advertisers' seed lists as the world draws them, and the crowd's ratings of every day.
    seeds = source.seed_lists()
    for key in advertiser_ids(small):
        drawn = generate_seed_list(small, users, key)
        assert seeds.filter(pl.col("advertiser_id") == key).drop("advertiser_id").equals(drawn)
    ratings = source.labels()
    assert sorted(ratings["day"].unique()) == DAYS
    # A day's model reads the labels up to its day, filtered in the scan.
    assert source.labels(until=DAYS[1]).equals(ratings.filter(pl.col("day") <= DAYS[1]))
    with pytest.raises(SourceDataError, match=r"labels\.(parquet|csv): no labels of a day on or before 2025-12-31"):
        source.labels(until=dt.date(2025, 12, 31))
    assert not {"true_grade", "relevance_probability", "quality"} & set(ratings.columns)
    assert ratings.group_by("context_id", "item_id").len()["len"].unique().to_list() == [LabelSpec().raters_per_row]


def test_export_leaves_out_the_latent_truth(exported):
    suffix = next(exported.glob("users.*")).suffix
    read = pl.read_parquet if suffix == ".parquet" else pl.read_csv
    assert not set(TRUTH_COLUMNS["users"]) & set(read(exported / f"users{suffix}").columns)
    assert not set(TRUTH_COLUMNS["items"]) & set(read(exported / f"items{suffix}").columns)


def test_export_refuses_a_non_empty_target_unless_forced(tmp_path, monkeypatch, capsys):
    world = tmp_path / "world.yaml"
    world.write_text("".join(f"{k}: {v}\n" for k, v in SMALL_WORLD.items()))
    monkeypatch.setenv("ADREL_WORLD", str(world))
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    assert main(["--to", str(target), "--last-day", "2026-01-02"]) == 2
    assert "not empty" in capsys.readouterr().err and (target / "keep.txt").exists()
    assert main(["--to", str(target), "--last-day", "2026-01-02", "--force"]) == 0
    assert not (target / "keep.txt").exists()
    assert FileSource(target).days() == DAYS[:2]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp dir left


def test_importing_the_library_imports_neither_torch_nor_dagster():
    code = ("import sys, adrel_pipeline.sources, adrel_pipeline.export; "
            "print(sorted(m for m in ('torch', 'dagster') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- bad data: a tiny CSV directory, broken one way per test ---

USERS_CSV = "user_id,age,country\n1,30,fr\n2,41,de\n3,25,fr\n"
ITEMS_CSV = "item_id,is_ad,price\n10,true,1.5\n11,false,2.0\n12,false,3.0\n"
DAY_CSV = "user_id,item_id\n1,10\n2,11\n3,12\n1,11\n"


def tiny(parent, users=USERS_CSV, items=ITEMS_CSV, days=None, config=None, **files):
    # A fresh directory per call: a test may build several.
    tmp_path = parent / f"source{len(list(parent.iterdir()))}"
    tmp_path.mkdir()
    (tmp_path / "users.csv").write_text(users)
    (tmp_path / "items.csv").write_text(items)
    (tmp_path / "interactions").mkdir()
    for day, text in (days if days is not None else {"2026-02-01": DAY_CSV, "2026-02-03": DAY_CSV}).items():
        (tmp_path / "interactions" / f"{day}.csv").write_text(text)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    if config is not None:
        (tmp_path / "adrel.yaml").write_text(config)
    return FileSource(tmp_path)


def test_a_tiny_directory_reads_with_default_features(tmp_path):
    source = tiny(tmp_path)
    assert source.features.user_columns == ("age", "country") and source.features.item_columns == ("price",)
    assert source.features.cross is None
    assert source.items()["is_ad"].to_list() == [True, False, False]
    assert source.interactions(dt.date(2026, 2, 3))["day"].unique().to_list() == [dt.date(2026, 2, 3)]


def test_missing_required_column(tmp_path):
    with pytest.raises(SourceDataError, match=r"items\.csv, column 'is_ad': missing required column") as err:
        tiny(tmp_path, items="item_id,price\n10,1.5\n").items()
    assert "ads table" in str(err.value)


def test_non_integer_id_names_the_file_column_count_and_rows(tmp_path):
    with pytest.raises(SourceDataError) as err:
        tiny(tmp_path, users="user_id,age\n1,30\nabc,41\n3,25\n4.5,20\n").users()
    message = str(err.value)
    assert "users.csv, column 'user_id': 2 of 4 values are not integers" in message
    assert "'user_id': 'abc'" in message and "'row': 2" in message and "'user_id': '4.5'" in message


def test_duplicate_ids(tmp_path):
    with pytest.raises(SourceDataError) as err:
        tiny(tmp_path, items=ITEMS_CSV + "11,true,9.0\n10,false,1.0\n").items()
    message = str(err.value)
    assert "items.csv, column 'item_id': 2 ids occur more than once (4 rows of 5)" in message
    assert "'row': 4" in message and "'price': 9.0" in message


def test_null_ids(tmp_path):
    with pytest.raises(SourceDataError, match=r"users\.csv, column 'user_id': 1 of 3 ids are null"):
        tiny(tmp_path, users="user_id,age\n1,30\n,41\n3,25\n").users()


def test_unknown_ids_in_interactions(tmp_path):
    source = tiny(tmp_path, days={"2026-02-01": DAY_CSV + "99,10\n98,11\n99,12\n"})
    with pytest.raises(SourceDataError) as err:
        source.interactions(dt.date(2026, 2, 1))
    message = str(err.value)
    assert "2026-02-01.csv, column 'user_id': 3 of 7 interactions name 2 user_ids that are not in users" in message
    assert "{'user_id': 99, 'item_id': 10" in message
    # The same check, as the asset calls it.
    day = pl.DataFrame({"user_id": [1, 2], "item_id": [10, 77], "day": [dt.date(2026, 2, 1)] * 2},
                       schema=INTERACTION_SCHEMA)
    with pytest.raises(SourceDataError, match=r"where, column 'item_id': 1 of 2 interactions name 1 item_ids"):
        check_interactions(day, source.users(), source.items(), "where")


def test_an_empty_day_names_the_days_nearby(tmp_path):
    source = tiny(tmp_path, days={"2026-02-01": DAY_CSV, "2026-02-03": DAY_CSV, "2026-02-04": "user_id,item_id\n"})
    with pytest.raises(SourceDataError) as err:
        source.interactions(dt.date(2026, 2, 2))
    assert "no interactions on 2026-02-02 (an empty day)" in str(err.value)
    assert "2026-02-01..2026-02-04, 3 days; nearest days: 2026-02-01, 2026-02-03, 2026-02-04" in str(err.value)
    with pytest.raises(SourceDataError, match=r"2026-02-04\.csv, column 'day': no interactions on 2026-02-04"):
        source.interactions(dt.date(2026, 2, 4))


def test_a_declared_feature_that_is_missing(tmp_path):
    config = "users: {features: [age, gender]}\nitems: {features: [price]}\n"
    with pytest.raises(SourceDataError) as err:
        tiny(tmp_path, config=config)
    assert "adrel.yaml (users), column 'gender': declared feature column(s) ['gender'] missing" in str(err.value)
    with pytest.raises(SourceDataError, match=r"cross \['age', 'colour'\] must name a user feature"):
        tiny(tmp_path, config="cross: [age, colour]\n")


def test_declared_features_cross_and_vocabularies(tmp_path):
    source = tiny(tmp_path, config="users: {features: [country]}\nitems: {features: []}\n"
                                    "vocabularies: {country: [de, fr, it]}\n")
    assert source.users().columns == ["user_id", "country"] and source.items().columns == ["item_id", "is_ad"]
    assert source.features.vocabularies == {"country": ("de", "fr", "it")}


def test_an_ads_table_instead_of_is_ad(tmp_path):
    source = tiny(tmp_path, items="item_id,price\n10,1.5\n11,2.0\n12,3.0\n", **{"ads.csv": "item_id\n12\n"})
    assert source.items()["is_ad"].to_list() == [False, False, True]
    with pytest.raises(SourceDataError, match=r"ads\.csv, column 'item_id': 1 of 2 ads are not in items"):
        tiny(tmp_path, items="item_id,price\n10,1.5\n11,2.0\n12,3.0\n", **{"ads.csv": "item_id\n12\n13\n"}).items()


def test_one_interactions_file_with_utc_timestamps(tmp_path):
    (tmp_path / "users.csv").write_text(USERS_CSV)
    (tmp_path / "items.csv").write_text(ITEMS_CSV)
    # 23:30 at +02:00 is 21:30 UTC, the same day; 01:00 at +03:00 is the day before in UTC.
    (tmp_path / "interactions.csv").write_text(
        "user_id,item_id,timestamp\n1,10,2026-03-01T23:30:00+02:00\n2,11,2026-03-02T01:00:00+03:00\n"
        "3,12,2026-03-02 12:00:00\n")
    source = FileSource(tmp_path)
    assert source.days() == [dt.date(2026, 3, 1), dt.date(2026, 3, 2)]
    assert source.interactions(dt.date(2026, 3, 1))["user_id"].to_list() == [1, 2]
    assert source.interactions(dt.date(2026, 3, 2))["user_id"].to_list() == [3]


def test_an_unparsable_day(tmp_path):
    (tmp_path / "users.csv").write_text(USERS_CSV)
    (tmp_path / "items.csv").write_text(ITEMS_CSV)
    (tmp_path / "interactions.csv").write_text("user_id,item_id,day\n1,10,2026-03-01\n2,11,03/02/2026\n")
    with pytest.raises(SourceDataError) as err:
        FileSource(tmp_path).days()
    assert "interactions.csv, column 'day': 1 of 2 values are not dates (YYYY-MM-DD)" in str(err.value)
    assert "'day': '03/02/2026'" in str(err.value)


# --- $ADREL_SOURCE ---

SEEDS_CSV = "advertiser_id,user_id\n" + "".join(f"acme,{u}\n" for u in (1, 2, 3))


def test_seed_lists_one_table_or_a_file_per_advertiser(tmp_path, monkeypatch):
    from adrel_pipeline.world import advertisers

    monkeypatch.setattr(advertisers, "MIN_SEED_USERS", 3)  # three users in the tiny source
    one = tiny(tmp_path, **{"seed_lists.csv": SEEDS_CSV})
    assert one.has("seed_lists") and not one.has("labels") and one.labels() is None
    table = one.seed_lists()
    assert table["advertiser_id"].to_list() == ["acme"] * 3 and table["user_id"].to_list() == [1, 2, 3]
    assert table["impressions"].to_list() == [1, 1, 1] and table["clicks"].to_list() == [0, 0, 0]
    per_file = tiny(tmp_path)
    (per_file.directory / "seed_lists").mkdir()
    (per_file.directory / "seed_lists" / "acme.csv").write_text("user_id,impressions,clicks\n3,5,1\n1,2,0\n2,4,4\n")
    got = per_file.seed_lists()
    assert got["advertiser_id"].to_list() == ["acme"] * 3 and got["clicks"].to_list() == [0, 4, 1]
    assert tiny(tmp_path).seed_lists() is None


def test_bad_seed_lists_name_the_file_the_advertiser_and_the_users(tmp_path):
    unknown = tiny(tmp_path, **{"seed_lists.csv": SEEDS_CSV + "acme,99\n"})
    with pytest.raises(SourceDataError, match=r"seed_lists\.csv \(advertiser acme\): 1 of 4 user_ids are not platform "
                                              r"users \(e\.g\. 99\)"):
        unknown.seed_lists()
    small = tiny(tmp_path, **{"seed_lists.csv": SEEDS_CSV})
    with pytest.raises(SourceDataError, match=r"advertiser acme\): 3 users, fewer than the minimum of 10"):
        small.seed_lists()
    bad_id = tiny(tmp_path, **{"seed_lists.csv": "advertiser_id,user_id\nno way!,1\n"})
    with pytest.raises(SourceDataError, match=r"column advertiser_id: 1 values are not advertiser ids .*no way!"):
        bad_id.seed_lists()


LABELS_CSV = ("context_id,item_id,rater_id,label,day,surface,content_type,text_match\n"
              "1,10,r1,4,2026-02-01,search,regular,0.5\n1,10,r2,5,2026-02-01,search,regular,0.5\n")


def test_labels_are_checked_against_the_ads(tmp_path):
    good = tiny(tmp_path, **{"labels.csv": LABELS_CSV})
    ratings = good.labels()
    assert ratings.height == 2 and ratings["day"].to_list() == [dt.date(2026, 2, 1)] * 2
    assert ratings["embedding_similarity"].null_count() == 2  # an absent optional signal: null
    organic = tiny(tmp_path, **{"labels.csv": LABELS_CSV.replace("1,10,", "1,11,")})
    with pytest.raises(SourceDataError, match=r"labels\.csv, column 'item_id': 2 of 2 ratings name 1 item_ids that"):
        organic.labels()
    # A day that is no date is named even when the labels are read up to a day.
    undated = tiny(tmp_path, **{"labels.csv": LABELS_CSV.replace("r2,5,2026-02-01", "r2,5,02/01/2026")})
    with pytest.raises(SourceDataError, match=r"(?s)labels\.csv, column 'day': 1 of 2 values are not dates.*02/01/2026"):
        undated.labels(until=dt.date(2026, 2, 1))
    off_scale = tiny(tmp_path, **{"labels.csv": LABELS_CSV.replace(",5,", ",7,")})
    with pytest.raises(SourceDataError, match=r"labels\.csv, column 'label': 1 of 2 labels are outside the 5-point"):
        off_scale.labels()


def test_source_from_env_forms(tmp_path):
    world = tmp_path / "world.yaml"
    world.write_text("num_users: 500\nnum_items: 1000\nnum_interactions: 5000\n")
    for env in ({}, {SOURCE_ENV: "synthetic", "ADREL_WORLD": str(world)}):
        source = source_from_env(env)
        assert isinstance(source, SyntheticSource) and source.first_day() == dt.date(2026, 1, 1)
    assert source.spec.num_users == 500 and source.users().height == 500
    (tmp_path / "data").mkdir()
    directory = tiny(tmp_path / "data").directory
    assert isinstance(source_from_env({SOURCE_ENV: str(directory)}), FileSource)
    config = tmp_path / "source.yaml"
    config.write_text(f"directory: data/{directory.name}\n" + "users: {features: [country]}\n")
    from_yaml = source_from_env({SOURCE_ENV: str(config)})
    assert isinstance(from_yaml, FileSource) and from_yaml.features.user_columns == ("country",)


@pytest.mark.parametrize("value", ["mysql://x", "/no/such/dir", "s3://bucket"])
def test_source_from_env_rejects_anything_else(value):
    with pytest.raises(ValueError) as err:
        source_from_env({SOURCE_ENV: value})
    assert f"ADREL_SOURCE={value!r}" in str(err.value) and "postgresql" in str(err.value)
    assert "directory" in str(err.value) and "synthetic" in str(err.value)


# --- PostgreSQL ---

def _pg_unreachable() -> str | None:
    try:
        import psycopg2

        psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=3).close()
    except Exception as err:  # noqa: BLE001 - any failure means: no server to test against
        return f"PostgreSQL at 127.0.0.1:5432 (user postgres, database test) is unreachable: {' '.join(str(err).split())}"
    return None


@pytest.mark.deployment
def test_postgres_source_equals_the_file_source(exported, tmp_path):
    reason = _pg_unreachable()
    if reason:
        pytest.skip(reason)
    import sqlalchemy as sa

    from adrel_pipeline.sources import PostgresSource, load_directory

    schema = f"adrel_test_{uuid.uuid4().hex[:10]}"
    tables = {"users": f"{schema}.users", "items": f"{schema}.items", "interactions": f"{schema}.interactions"}
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        db = load_directory(exported, PG_URL, tables)
        files = FileSource(exported)
        assert db.features == files.features
        assert db.users().equals(files.users()) and db.items().equals(files.items())
        assert db.days() == DAYS
        for day in DAYS:
            got = db.interactions(day)
            assert got.schema == pl.Schema(INTERACTION_SCHEMA)
            assert got.equals(files.interactions(day).sort("user_id", "item_id"))
        with pytest.raises(SourceDataError, match=rf"table {schema}\.interactions .*no interactions on 2026-01-05"):
            db.interactions(dt.date(2026, 1, 5))
        with pytest.raises(ValueError, match="already exist"):
            load_directory(exported, PG_URL, tables)
        # The seed lists and labels, loaded beside users (in its schema), read back as the files give them.
        assert db.tables["seed_lists"] == f"{schema}.seed_lists" and db.tables["labels"] == f"{schema}.labels"
        assert db.seed_lists().equals(files.seed_lists())
        order = ["context_id", "item_id", "rater_id"]
        assert db.labels().sort(order).equals(files.labels().sort(order))
        assert db.labels(until=DAYS[0]).sort(order).equals(files.labels(until=DAYS[0]).sort(order))
        # A URL in a YAML config, as ADREL_SOURCE names it.
        config = tmp_path / "db.yaml"
        config.write_text(f"url: {PG_URL}\ntables: {tables}\n")
        from_env = source_from_env({SOURCE_ENV: str(config)})
        assert isinstance(from_env, PostgresSource) and from_env.days() == DAYS
        # Defaults: every other column is a feature.
        assert from_env.features.user_columns == ("age_group", "main_interest")
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()


@pytest.mark.deployment
def test_postgres_timestamps_an_ads_table_and_wrong_types():
    reason = _pg_unreachable()
    if reason:
        pytest.skip(reason)
    import sqlalchemy as sa

    from adrel_pipeline.sources import PostgresSource

    schema = f"adrel_test_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        for statement in (
            f"CREATE SCHEMA {schema}",
            f"CREATE TABLE {schema}.users (user_id BIGINT, country TEXT)",
            f"CREATE TABLE {schema}.items (item_id INTEGER, price DOUBLE PRECISION)",
            f"CREATE TABLE {schema}.ads (item_id BIGINT)",
            f'CREATE TABLE {schema}.events (user_id BIGINT, item_id BIGINT, "timestamp" TIMESTAMPTZ)',
            f"CREATE TABLE {schema}.bad (user_id TEXT, item_id BIGINT, day DATE)",
            f"INSERT INTO {schema}.users VALUES (1, 'fr'), (2, 'de'), (3, 'fr')",
            f"INSERT INTO {schema}.items VALUES (10, 1.5), (11, 2.0), (12, 3.0)",
            f"INSERT INTO {schema}.ads VALUES (12)",
            # 23:30 at +02 and 01:00 at +03 are both 2026-03-01 in UTC.
            (f"INSERT INTO {schema}.events VALUES (1, 10, '2026-03-01 23:30+02'), (2, 11, '2026-03-02 01:00+03'), "
            f"(3, 12, '2026-03-02 12:00+00'), (3, 99, '2026-03-04 12:00+00')"),
        ):
            conn.exec_driver_sql(statement)
    tables = {"users": f"{schema}.users", "items": f"{schema}.items", "interactions": f"{schema}.events",
              "ads": f"{schema}.ads"}
    try:
        db = PostgresSource(PG_URL, tables)
        assert db.features.user_columns == ("country",) and db.features.item_columns == ("price",)
        assert db.items()["is_ad"].to_list() == [False, False, True]
        assert db.days() == [dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 4)]
        assert db.interactions(dt.date(2026, 3, 1))["user_id"].to_list() == [1, 2]
        assert db.interactions(dt.date(2026, 3, 2))["day"].to_list() == [dt.date(2026, 3, 2)]
        with pytest.raises(SourceDataError, match=r"events \(interactions\).*column 'item_id': 1 of 1 interactions"):
            db.interactions(dt.date(2026, 3, 4))
        with pytest.raises(SourceDataError, match=r"table .*\.bad \(interactions\).*column 'user_id': wrong type TEXT"):
            PostgresSource(PG_URL, {**tables, "interactions": f"{schema}.bad"})
        with pytest.raises(SourceDataError, match=r"table .*\.nope \(users\).*no such table"):
            PostgresSource(PG_URL, {**tables, "users": f"{schema}.nope"})
        with pytest.raises(SourceDataError, match=r"column 'gender': declared feature"):
            PostgresSource(PG_URL, tables, features={"users": {"features": ["gender"]}})
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()

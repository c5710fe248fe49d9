"""A team's own human relevance labels (issue 17, "bring your own data"): the label table's
contract, its checks, the pairs it labels, their quality, and the synthetic world's labels
written in the same form.

The label table holds one row per rating (:data:`LABEL_REQUIRED`, :data:`LABEL_OPTIONAL`):

* required: ``context_id`` (integer), ``item_id`` (integer: an ad's item id), ``rater_id``
  (integer or text), ``label`` (integer 1..5, the 5-point scale), ``day`` (a date, ``YYYY-MM-DD``:
  when the pair was served and labelled), ``surface`` (one of :data:`SURFACES`) and
  ``content_type`` (one of :data:`CONTENT_TYPES`);
* optional (null where absent; an absent column is all null): the pair's signals ``text_match``,
  ``embedding_similarity``, ``image_similarity``, ``category_match`` (numbers) and
  ``query_intent`` (one of :data:`QUERY_INTENTS`).

Every rating of one (context_id, item_id) pair carries the same pair columns (:data:`PAIR_COLUMNS`).
:func:`check_ratings` checks and normalises a table, raising
:class:`~adrel_pipeline.sources.validate.SourceDataError` (where, column, problem, counts, example
rows); :func:`aggregate_ratings` makes one row per pair with its label (the lower median of its
ratings, whatever the panel's size), :func:`quality_of` measures the raters' agreement, and
:func:`simulated_ratings` writes the synthetic world's crowd labels as such a table (no truth).

polars, numpy and the ``krippendorff`` package; no Dagster.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import numpy as np
import polars as pl

from adrel_pipeline.contextual.labels import GRADES, RELEVANT_LABEL, three_point
from adrel_pipeline.contextual.spec import CandidateLogSpec, FunnelSpec, LabelSpec
from adrel_pipeline.sources.contract import DAY, ITEM_ID
from adrel_pipeline.sources.validate import SourceDataError, cast_id, fail, parse_days, require_columns
from adrel_pipeline.world.contexts import CONTENT_TYPES, QUERY_INTENTS, SIGNALS, SURFACES
from adrel_pipeline.world.spec import WorldSpec

CONTEXT_ID, RATER_ID, LABEL = "context_id", "rater_id", "label"
# The contract, declared once: column -> its normalised type (a tuple: the allowed values of text).
LABEL_REQUIRED: dict[str, pl.DataType | tuple[str, ...]] = {
    CONTEXT_ID: pl.Int64, ITEM_ID: pl.Int64, RATER_ID: pl.Utf8, LABEL: pl.Int8, DAY: pl.Date,
    "surface": SURFACES, "content_type": CONTENT_TYPES,
}
LABEL_OPTIONAL: dict[str, pl.DataType | tuple[str, ...]] = {
    **{signal: pl.Float64 for signal in SIGNALS}, "query_intent": QUERY_INTENTS,
}
LABEL_COLUMNS: tuple[str, ...] = (*LABEL_REQUIRED, *LABEL_OPTIONAL)
PAIR: tuple[str, str] = (CONTEXT_ID, ITEM_ID)
# What a pair carries, the same in each of its ratings.
PAIR_COLUMNS: tuple[str, ...] = tuple(c for c in LABEL_COLUMNS if c not in (*PAIR, RATER_ID, LABEL))
_ROW = "row"


def _with_row(df: pl.DataFrame) -> pl.DataFrame:
    # 1-based data row numbers, as a spreadsheet shows them below the header.
    return df.with_row_index(_ROW, offset=1)


def _bad(df: pl.DataFrame, mask: pl.Series) -> pl.DataFrame:
    return _with_row(df).filter(mask.alias("_bad"))


def _cast_integer(df: pl.DataFrame, column: str, where: str) -> pl.DataFrame:
    """``column`` as Int64 (integers, whole floats, integer text); else an error naming the values."""
    dtype = df.schema[column]
    if dtype == pl.Null:
        return df.with_columns(pl.col(column).cast(pl.Int64))
    if not (dtype.is_integer() or dtype.is_float() or dtype == pl.Utf8):
        raise fail(where, column, f"wrong type {dtype}: must be an integer")
    return cast_id(df, column, where)


def _require_not_null(df: pl.DataFrame, column: str, where: str) -> None:
    nulls = df[column].is_null()
    if nulls.any():
        raise fail(where, column, f"{int(nulls.sum())} of {df.height} values are null (a required column)",
                   _bad(df, nulls))


def _cast_rater(df: pl.DataFrame, where: str) -> pl.DataFrame:
    """``rater_id`` as text: integers (or whole floats) written out, text stripped."""
    dtype = df.schema[RATER_ID]
    if dtype.is_integer() or dtype.is_float():
        df = cast_id(df, RATER_ID, where)
        return df.with_columns(pl.col(RATER_ID).cast(pl.Utf8))
    if dtype in (pl.Utf8, pl.Categorical) or isinstance(dtype, pl.Enum):
        return df.with_columns(pl.col(RATER_ID).cast(pl.Utf8).str.strip_chars())
    if dtype == pl.Null:
        return df.with_columns(pl.col(RATER_ID).cast(pl.Utf8))
    raise fail(where, RATER_ID, f"wrong type {dtype}: must be an integer or text")


def _cast_text(df: pl.DataFrame, column: str, allowed: tuple[str, ...], where: str) -> pl.DataFrame:
    """``column`` as text of ``allowed`` values (nulls kept: the caller decides)."""
    dtype = df.schema[column]
    if not (dtype in (pl.Utf8, pl.Categorical, pl.Null) or isinstance(dtype, pl.Enum)):
        raise fail(where, column, f"wrong type {dtype}: must be text, one of {list(allowed)}")
    out = df.with_columns(pl.col(column).cast(pl.Utf8).str.strip_chars())
    unknown = out[column].is_not_null() & ~out[column].is_in(list(allowed))
    if unknown.any():
        values = sorted(out.filter(unknown.alias("_u"))[column].unique().to_list())
        raise fail(where, column, f"{int(unknown.sum())} of {df.height} values are not one of {list(allowed)} "
                                  f"(found {values[:10]})", _bad(df, unknown))
    return out


def _cast_number(df: pl.DataFrame, column: str, where: str) -> pl.DataFrame:
    """``column`` as Float64 (numbers, booleans, number text; NaN read as absent, null)."""
    dtype = df.schema[column]
    if dtype.is_numeric() or dtype in (pl.Boolean, pl.Null):
        return df.with_columns(pl.col(column).cast(pl.Float64).fill_nan(None))
    if dtype != pl.Utf8:
        raise fail(where, column, f"wrong type {dtype}: must be a number (null when absent)")
    text = df[column].str.strip_chars()
    parsed = text.replace("", None).cast(pl.Float64, strict=False)
    bad = parsed.is_null() & text.is_not_null() & (text != "")
    if bad.any():
        raise fail(where, column, f"{int(bad.sum())} of {df.height} values are not numbers", _bad(df, bad))
    return df.with_columns(parsed.fill_nan(None).alias(column))


def check_ratings(df: pl.DataFrame, where: str, ad_ids: pl.Series | None = None) -> pl.DataFrame:
    """``df`` (a label table, one row per rating) checked against the contract (see the module) and
    normalised: exactly :data:`LABEL_COLUMNS`, in that order (other columns dropped, absent optional
    ones all null), ids Int64, ``rater_id`` Utf8, ``label`` Int8, ``day`` Date, signals Float64,
    the categorical columns Utf8. With ``ad_ids``, every ``item_id`` must be one of them.

    Raises :class:`SourceDataError` naming ``where``, the column and the problem, with counts and
    example rows, for: a missing required column, no rows, a wrong type or unparsable values, nulls
    in a required column, a label outside 1..5, a value outside its vocabulary, an item that is not
    an ad, a rater rating the same pair twice, and a pair whose ratings disagree on a pair column.
    """
    require_columns(df.columns, tuple(LABEL_REQUIRED), where,
                    f"; a label table needs {list(LABEL_REQUIRED)}, optionally {list(LABEL_OPTIONAL)}")
    if df.height == 0:
        raise fail(where, None, "the label table has no rows (no ratings)")
    df = df.with_columns(pl.lit(None, dtype=pl.Null).alias(c) for c in LABEL_OPTIONAL if c not in df.columns)
    for column in (CONTEXT_ID, ITEM_ID, LABEL):
        df = _cast_integer(df, column, where)
    df = _cast_rater(df, where)
    for column, kind in (*LABEL_REQUIRED.items(), *LABEL_OPTIONAL.items()):
        if isinstance(kind, tuple):
            df = _cast_text(df, column, kind, where)
        elif kind == pl.Float64:
            df = _cast_number(df, column, where)
    for column in LABEL_REQUIRED:
        if column != DAY:  # parse_days names null and unparsable days itself
            _require_not_null(df, column, where)
    df = df.with_columns(parse_days(df, DAY, where))

    off_scale = (df[LABEL] < GRADES[0]) | (df[LABEL] > GRADES[-1])
    if off_scale.any():
        raise fail(where, LABEL, f"{int(off_scale.sum())} of {df.height} labels are outside the 5-point scale "
                                 f"{GRADES[0]}..{GRADES[-1]}", _bad(df, off_scale))
    df = df.select(pl.col(c).cast(pl.Utf8 if isinstance(k, tuple) else k)
                   for c, k in (*LABEL_REQUIRED.items(), *LABEL_OPTIONAL.items()))

    if ad_ids is not None:
        not_ads = ~df[ITEM_ID].is_in(ad_ids.cast(pl.Int64).implode())
        if not_ads.any():
            items = df.filter(not_ads.alias("_n"))[ITEM_ID].n_unique()
            raise fail(where, ITEM_ID, f"{int(not_ads.sum())} of {df.height} ratings name {items} item_ids that "
                                       "are not ads", _bad(df, not_ads))
    repeated = df.select(pl.struct(*PAIR, RATER_ID).is_duplicated()).to_series()
    if repeated.any():
        rows = _bad(df, repeated).sort(*PAIR, RATER_ID, _ROW)
        raise fail(where, RATER_ID, f"{int(repeated.sum())} of {df.height} ratings repeat a rater's rating of the "
                                    "same (context_id, item_id) pair (one rating per rater and pair)", rows)
    varying = df.group_by(PAIR).agg(pl.col(c).n_unique() > 1 for c in PAIR_COLUMNS)
    for column in PAIR_COLUMNS:
        pairs = varying.filter(pl.col(column)).select(PAIR)
        if pairs.height:
            rows = _with_row(df).join(pairs, on=PAIR, how="semi").sort(*PAIR, _ROW)
            raise fail(where, column, f"{pairs.height} (context_id, item_id) pairs have ratings that disagree on "
                                      f"{column} ({rows.height} ratings; a pair's ratings must carry the same "
                                      f"{list(PAIR_COLUMNS)})", rows.select(_ROW, *PAIR, RATER_ID, column))
    return df


def aggregate_ratings(ratings: pl.DataFrame) -> pl.DataFrame:
    """One row per (context_id, item_id) of ``ratings`` (checked, :func:`check_ratings`), sorted by
    (day, context_id, item_id): the pair columns, ``rater_ids`` and ``ratings`` (in rater_id
    order), ``raters`` (their count), ``label`` (the lower median of the ratings, as
    :func:`adrel_pipeline.contextual.labels.aggregate` for any panel size), ``label_3pt`` and
    ``relevant`` (label >= 4)."""
    pairs = (ratings.sort(*PAIR, RATER_ID)
             .group_by(PAIR, maintain_order=True)
             .agg(*[pl.col(c).first() for c in PAIR_COLUMNS],
                  pl.col(RATER_ID).alias("rater_ids"),
                  pl.col(LABEL).cast(pl.Int8).alias("ratings"),
                  pl.len().cast(pl.Int64).alias("raters"),
                  pl.col(LABEL).sort().get((pl.len() - 1) // 2).cast(pl.Int8).alias(LABEL))
             .sort(DAY, *PAIR))
    label = pairs[LABEL].to_numpy()
    return pairs.select(*PAIR, *PAIR_COLUMNS, "rater_ids", "ratings", "raters", LABEL).with_columns(
        pl.Series("label_3pt", three_point(label), dtype=pl.Utf8),
        (pl.col(LABEL) >= RELEVANT_LABEL).alias("relevant"))


def _grade_counts(pairs: pl.DataFrame) -> np.ndarray:
    """``(pairs, 5)``: how many of each pair's raters gave each grade."""
    exploded = pairs.select(pl.int_range(pl.len()).alias("_pair"), "ratings").explode("ratings")
    counts = np.zeros((pairs.height, len(GRADES)), dtype=np.int64)
    index = exploded["_pair"].to_numpy()
    grade = exploded["ratings"].to_numpy().astype(np.int64) - GRADES[0]
    np.add.at(counts, (index, grade), 1)
    return counts


def quality_of(pairs: pl.DataFrame) -> dict[str, float]:
    """The raters' agreement on ``pairs`` (:func:`aggregate_ratings`), for panels of any size:

    * ``disagreement_rate``: the share of pairs with two or more raters whose ratings are more
      than one point apart (NaN without such pairs);
    * ``krippendorff_alpha``: ordinal alpha from each pair's counts of every grade (the
      ``krippendorff`` package, as :func:`adrel_pipeline.contextual.labels.krippendorff_alpha`);
      a pair with one rater carries no agreement and is left out (NaN when no pair has two, or
      when all ratings are one grade: alpha is undefined);
    * ``relevant_share`` and ``single_rater_share``.
    """
    import krippendorff

    raters = pairs["raters"].to_numpy()
    panels = raters >= 2
    spread = pairs.select(pl.col("ratings").list.max() - pl.col("ratings").list.min()).to_series().to_numpy()
    counts = _grade_counts(pairs)[panels]
    if counts.size and np.count_nonzero(counts.sum(axis=0)) > 1:
        alpha = float(krippendorff.alpha(value_counts=counts, value_domain=list(GRADES),
                                         level_of_measurement="ordinal"))
    else:
        alpha = float("nan")
    return {"disagreement_rate": float(np.mean(spread[panels] > 1)) if panels.any() else float("nan"),
            "krippendorff_alpha": alpha,
            "relevant_share": float(pairs["relevant"].mean()) if pairs.height else float("nan"),
            "single_rater_share": float(np.mean(raters == 1)) if pairs.height else float("nan")}


SIMULATED_JOBS: tuple[str, ...] = ("candidates", "test")  # the jobs of the day's labels that a team would own


def simulated_ratings(world_spec: WorldSpec, users: pl.DataFrame, items: pl.DataFrame, days: Iterable[dt.date],
                      label_spec: LabelSpec, funnel_spec: FunnelSpec | None = None,
                      log_spec: CandidateLogSpec | None = None) -> pl.DataFrame:
    """The synthetic world's crowd labels of ``days`` as a team's label table (the contract's
    columns only, checked: no ``true_grade``, no ``relevance_probability``, no latent quality).

    Each day as the pipeline's first days run it, before any champion exists: the day's contexts
    and candidates (:func:`~adrel_pipeline.contextual.funnel.candidates`) served by the funnel
    with no relevance model and the world's pCTR (``serving_pctr`` without a GAT), logged
    (:func:`~adrel_pipeline.contextual.sampling.log_candidates`), the day's jobs drawn
    (:func:`~adrel_pipeline.contextual.sampling.draw_jobs`) and rated by the crowd exactly as
    :func:`~adrel_pipeline.contextual.labels.label_rows` rates them (the same keys, every job, so
    the draws are the pipeline's); the training sample and the test job are kept (the heuristic's
    sample is the old sampling, not a team's), one row per rating. ``funnel_spec`` and
    ``log_spec`` default to the deployment's defaults (the log's seed: the world's).
    """
    from adrel_pipeline.contextual.engagement import serving_pctr
    from adrel_pipeline.contextual.funnel import candidates, run_funnel
    from adrel_pipeline.contextual.labels import rate
    from adrel_pipeline.contextual.sampling import draw_jobs, log_candidates
    from adrel_pipeline.world.contexts import generate_ad_inventory, generate_contexts

    funnel_spec = funnel_spec or FunnelSpec()
    log_spec = log_spec or CandidateLogSpec(seed=world_spec.seed)
    inventory = generate_ad_inventory(world_spec, items)
    k = label_spec.raters_per_row
    parts = []
    for day in days:
        key = (day.toordinal(),)  # the assets' day key
        contexts = generate_contexts(world_spec, users, items, day)
        cands = candidates(world_spec, contexts, inventory, day)
        served = run_funnel(cands, serving_pctr(cands, None, world_spec, day).pctr, None, funnel_spec)
        rows = draw_jobs(log_candidates(served, log_spec, key), label_spec, key)
        raters, grades = rate(rows["true_grade"].to_numpy(), label_spec, key)
        kept = rows.with_columns(pl.Series("_raters", raters, dtype=pl.Array(pl.Int64, k)),
                                 pl.Series("_grades", grades, dtype=pl.Array(pl.Int8, k)),
                                 pl.lit(day, dtype=pl.Date).alias(DAY)
                                 ).filter(pl.col("job").is_in(SIMULATED_JOBS))
        parts.append(kept.select(CONTEXT_ID, pl.col("ad_id").alias(ITEM_ID), pl.col("_raters").arr.to_list()
                                 .alias(RATER_ID), pl.col("_grades").arr.to_list().alias(LABEL),
                                 *PAIR_COLUMNS).explode(RATER_ID, LABEL))
    if not parts:
        raise ValueError("no days to label")
    table = pl.concat(parts).sort(DAY, *PAIR, maintain_order=True)
    try:
        return check_ratings(table, "simulated labels", inventory["ad_id"])
    except SourceDataError as err:  # the generator broke the contract: a bug here, not bad data
        raise AssertionError(str(err)) from err

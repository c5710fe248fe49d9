"""Which columns of the users and items tables are node features, and how they are encoded.

A data source declares its :class:`FeatureSpec` (the synthetic world's is :data:`SYNTHETIC_FEATURES`;
a directory or database declares its own, see :mod:`adrel_pipeline.sources`); the graph builder
encodes whatever it names, so nothing downstream knows which source the tables came from.

* categorical columns (strings, booleans, categoricals and enums; any column with a declared
  vocabulary) become one-hots over ``vocabularies[column]`` when declared (fixed columns whatever
  values occur; a value outside it is an error), else over the sorted distinct values observed in the
  table, so the columns are deterministic. Booleans are the strings ``"false"`` / ``"true"``;
* numeric columns become one column each, standardised by the table's mean and (population) standard
  deviation; a constant column becomes zeros;
* ``cross`` = (user column, item column) names two categorical columns over one vocabulary ("the
  user's main interest is the ad's category"): their one-hots are aligned so that their product is
  the model's cross feature. The shared vocabulary is the declared one (of either column; both
  declared must agree), else the sorted union of both columns' values. None: no cross feature.

Nulls (and NaNs) in a feature column are an error, not imputed: a source knows what a missing value
means (its own category, the mean, 0) and says so by filling it before the builder sees it. A node type
without declared features gets one constant column, so that every node has a feature row. Items are
encoded over the whole items table (ads and organic pins alike), so both get the same columns.

Torch-free (numpy and polars only): sources declare and check their features without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

# The feature of a node type that declares none: x must exist for message passing and the model.
CONSTANT_FEATURE = "constant"


@dataclass(frozen=True)
class FeatureSpec:
    user_columns: tuple[str, ...] = ()
    item_columns: tuple[str, ...] = ()
    cross: tuple[str, str] | None = None
    vocabularies: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"user_columns": list(self.user_columns), "item_columns": list(self.item_columns),
                "cross": None if self.cross is None else list(self.cross),
                "vocabularies": {k: list(v) for k, v in self.vocabularies.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        return cls(user_columns=tuple(d.get("user_columns") or ()), item_columns=tuple(d.get("item_columns") or ()),
                   cross=None if not d.get("cross") else tuple(d["cross"]),
                   vocabularies={k: tuple(v) for k, v in (d.get("vocabularies") or {}).items()})


def synthetic_features() -> FeatureSpec:
    """The synthetic world's features: age group and main interest per user, category per item, the
    cross "main interest = category", over the world's fixed vocabularies."""
    from adrel_pipeline.world.spec import AGE_GROUPS, INTERESTS

    return FeatureSpec(user_columns=("age_group", "main_interest"), item_columns=("category",),
                       cross=("main_interest", "category"),
                       vocabularies={"age_group": AGE_GROUPS, "main_interest": INTERESTS, "category": INTERESTS})


@dataclass(frozen=True)
class EncodedFeatures:
    """A users and an items table's feature matrices (float32, rows in the tables' order), each
    column's name (``column=value`` for a one-hot, ``column`` for a numeric one) and the cross
    columns: (user column, item column, width) of the aligned one-hots, ``(0, 0, 0)`` without a cross."""

    user_x: np.ndarray
    item_x: np.ndarray
    user_names: tuple[str, ...]
    item_names: tuple[str, ...]
    cross_columns: tuple[int, int, int]


def _is_categorical(series: pl.Series, declared: bool) -> bool:
    dtype = series.dtype
    if declared or dtype in (pl.String, pl.Boolean, pl.Categorical) or isinstance(dtype, pl.Enum):
        return True
    if dtype.is_numeric():
        return False
    raise ValueError(f"feature column {series.name!r} has type {dtype}: neither categorical "
                     "(string, boolean, categorical, enum) nor numeric")


def _check_no_nulls(series: pl.Series, table: str) -> None:
    missing = series.null_count() + (int(series.is_nan().sum()) if series.dtype.is_float() else 0)
    if missing:
        raise ValueError(f"{table} feature column {series.name!r} has {missing} null/NaN values of "
                         f"{series.len()}: fill them in the source (the builder does not impute)")


def _as_strings(series: pl.Series) -> pl.Series:
    return series.cast(pl.String)  # booleans -> "false"/"true", categoricals/enums -> their labels


def _one_hot(values: pl.Series, vocabulary: tuple[str, ...], table: str) -> np.ndarray:
    outside = values.filter(~values.is_in(list(vocabulary)))
    if outside.len():
        examples = outside.unique(maintain_order=True).head(5).to_list()
        raise ValueError(f"{table} feature column {values.name!r}: {outside.len()} values outside its declared "
                         f"vocabulary of {len(vocabulary)}, e.g. {examples}")
    codes = values.cast(pl.Enum(vocabulary)).to_physical().to_numpy().astype(np.int64)
    out = np.zeros((values.len(), len(vocabulary)), dtype=np.float32)
    out[np.arange(values.len()), codes] = 1.0
    return out


def _standardised(series: pl.Series) -> np.ndarray:
    values = series.cast(pl.Float64).to_numpy()
    std = values.std() if values.size else 0.0
    # A constant column carries no information: zeros rather than a division by zero.
    scaled = (values - values.mean()) / std if std > 0 else np.zeros_like(values)
    return scaled.astype(np.float32)[:, None]


def _encode_table(table: pl.DataFrame, columns: tuple[str, ...], vocabularies: dict[str, tuple[str, ...]],
                  name: str) -> tuple[np.ndarray, tuple[str, ...], dict[str, int]]:
    """``table``'s feature matrix, column names and each one-hot block's first column."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} table lacks the declared feature columns {missing}")
    if not columns:
        return np.ones((table.height, 1), dtype=np.float32), (CONSTANT_FEATURE,), {}
    blocks, names, starts, width = [], [], {}, 0
    for column in columns:
        series = table[column]
        _check_no_nulls(series, name)
        if _is_categorical(series, column in vocabularies):
            values = _as_strings(series)
            vocabulary = vocabularies.get(column) or tuple(sorted(values.unique().to_list()))
            block = _one_hot(values, tuple(vocabulary), name)
            names += [f"{column}={v}" for v in vocabulary]
            starts[column] = width
        else:
            block = _standardised(series)
            names.append(column)
        blocks.append(block)
        width += block.shape[1]
    return np.concatenate(blocks, axis=1), tuple(names), starts


def _cross_vocabulary(spec: FeatureSpec, users: pl.DataFrame, items: pl.DataFrame) -> tuple[str, ...]:
    user_col, item_col = spec.cross
    if user_col not in spec.user_columns or item_col not in spec.item_columns:
        raise ValueError(f"cross {spec.cross}: {user_col!r} must be a user feature column and {item_col!r} "
                         f"an item feature column (declared: {spec.user_columns}, {spec.item_columns})")
    declared = [tuple(spec.vocabularies[c]) for c in spec.cross if c in spec.vocabularies]
    if len(declared) == 2 and declared[0] != declared[1]:
        raise ValueError(f"cross {spec.cross}: the two columns declare different vocabularies; "
                         "a cross needs one shared vocabulary")
    if declared:
        return declared[0]
    for table, column in ((users, user_col), (items, item_col)):
        if column in table.columns:
            _check_no_nulls(table[column], "users" if table is users else "items")
    values = pl.concat([_as_strings(users[user_col]).alias("v"), _as_strings(items[item_col]).alias("v")])
    return tuple(sorted(values.unique().to_list()))


def vocabularies_of(users: pl.DataFrame, items: pl.DataFrame, spec: FeatureSpec) -> dict[str, tuple[str, ...]]:
    """The declared vocabularies, and the cross columns' shared one."""
    vocabularies = {k: tuple(v) for k, v in spec.vocabularies.items()}
    if spec.cross is not None:
        shared = _cross_vocabulary(spec, users, items)
        vocabularies.update({spec.cross[0]: shared, spec.cross[1]: shared})
    return vocabularies


def category_column(items: pl.DataFrame, spec: FeatureSpec) -> str | None:
    """The item column that says what an item is about: the cross's item column, else the first
    categorical item feature; None when items have no categorical feature."""
    if spec.cross is not None:
        return spec.cross[1]
    return next((c for c in spec.item_columns if _is_categorical(items[c], c in spec.vocabularies)), None)


def encode_table(table: pl.DataFrame, columns: tuple[str, ...], vocabularies: dict[str, tuple[str, ...]],
                 name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """One table's feature matrix and column names (as :func:`encode` encodes it)."""
    x, names, _ = _encode_table(table, tuple(columns), vocabularies, name)
    return x, names


def encode(users: pl.DataFrame, items: pl.DataFrame, spec: FeatureSpec) -> EncodedFeatures:
    """Encode ``spec``'s columns of ``users`` and ``items`` in the declared order (module docstring)."""
    vocabularies = vocabularies_of(users, items, spec)
    user_x, user_names, user_starts = _encode_table(users, tuple(spec.user_columns), vocabularies, "users")
    item_x, item_names, item_starts = _encode_table(items, tuple(spec.item_columns), vocabularies, "items")
    cross = (0, 0, 0) if spec.cross is None else (
        user_starts[spec.cross[0]], item_starts[spec.cross[1]], len(vocabularies[spec.cross[0]]))
    return EncodedFeatures(user_x, item_x, user_names, item_names, cross)

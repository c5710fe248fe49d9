"""Data-quality rules behind the pipeline's asset checks, as plain functions (no Dagster).

Each rule guards a way the pipeline could go silently wrong, most of them defects the seed
notebook had: duplicated or unknown ids (features misaligned with nodes, edges silently dropped
by a join), values outside the one-hot vocabularies (an all-zero feature row), days lost or
duplicated by a backfill, NaN features, edge indices past the node count (PyG indexes out of
range or, worse, wraps), reverse edges that do not mirror forward ones, held-out edges left in
the message-passing graph (the leak that inflated the notebook's AUC), class balance other than
configured (AUC still fine, but precision-style numbers shift), and a test AUC above the
Bayes-optimal ceiling (only possible with leakage).

Every rule returns a :class:`CheckOutcome`: passed or not, one line saying what was found (with
up to five examples on failure) and a few scalar numbers for metadata. The Dagster wiring
(:mod:`adrel_pipeline.defs.checks`) turns outcomes into asset check results.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl
import torch
from torch_geometric.data import HeteroData

from adrel_pipeline.graph import AD, AD_USER, NON_AD_USER, USER_AD, USER_NON_AD

_EXAMPLES = 5
_SPLITS = ("train", "val", "test")
_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
# (forward, reverse) pairs whose reverse must be the flipped forward edge set.
_MIRRORED = ((USER_AD, AD_USER), (USER_NON_AD, NON_AD_USER))

Metadata = dict[str, int | float | str]


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    metadata: Metadata = field(default_factory=dict)


def _examples(values: Iterable) -> str:
    values = list(values)
    return f"e.g. {values[:_EXAMPLES]}"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _outcome(problems: list[str], success: str, metadata: Metadata) -> CheckOutcome:
    if problems:
        return CheckOutcome(False, "; ".join(problems), metadata)
    return CheckOutcome(True, success, metadata)


# --- tables ---------------------------------------------------------------------------------------


def ids_unique(df: pl.DataFrame, column: str) -> CheckOutcome:
    """No duplicated and no null ids: graph nodes are keyed by id, a duplicate would give one id two
    feature rows and make every later row misaligned with its node."""
    ids = df[column]
    nulls = ids.null_count()
    present = ids.drop_nulls()
    dup = present.filter(present.is_duplicated()).unique().sort()
    meta: Metadata = {"rows": df.height, "duplicated_ids": dup.len(), "null_ids": nulls}
    problems = []
    if dup.len():
        problems.append(f"{dup.len()} duplicated {column} values, {_examples(dup)}")
    if nulls:
        problems.append(f"{nulls} null {column} values")
    return _outcome(problems, f"{df.height} {column} values, all unique and non-null", meta)


def values_in_vocabulary(df: pl.DataFrame, column: str, vocabulary: Sequence[str]) -> CheckOutcome:
    """Every value (nulls included) is in ``vocabulary``: the one-hot encoders map anything else to an
    all-zero row or fail, depending on the cast."""
    values = df[column]
    vocab = list(vocabulary)
    # is_in gives null for a null value; `is_null() | ...` turns that into a violation.
    # Compared as strings, so an Enum/Categorical column cannot fail the cast of the vocabulary.
    bad = values.is_null() | ~values.cast(pl.Utf8).is_in(pl.Series(vocab, dtype=pl.Utf8).implode())
    n_bad = int(bad.sum())
    meta: Metadata = {"rows": df.height, "outside_vocabulary": n_bad, "nulls": values.null_count()}
    if n_bad:
        examples = values.filter(bad).unique(maintain_order=True)
        return CheckOutcome(False, f"{n_bad} {column} values outside {vocab} (nulls included), "
                                   f"{_examples(examples)}", meta)
    return CheckOutcome(True, f"all {df.height} {column} values in the {len(vocab)}-value vocabulary", meta)


def references_known(interactions: pl.DataFrame, users: pl.DataFrame, items: pl.DataFrame) -> CheckOutcome:
    """Every interaction names a known user and item: the graph builder's joins would otherwise drop
    (items) or reject (users) them, and the edge counts would no longer match the log."""
    meta: Metadata = {"interactions": interactions.height}
    problems = []
    for column, table in (("user_id", users), ("item_id", items)):
        refs = interactions[column]
        unknown = refs.filter(refs.is_null() | ~refs.is_in(table[column].drop_nulls().implode()))
        meta[f"unknown_{column}"] = unknown.len()
        if unknown.len():
            problems.append(f"{unknown.len()} interactions reference an unknown or null {column}, "
                            f"{_examples(unknown.unique(maintain_order=True))}")
    return _outcome(problems, f"all {interactions.height} interactions reference known users and items", meta)


def daily_counts(interactions: pl.DataFrame, expected: Mapping[dt.date, int]) -> CheckOutcome:
    """The days present are exactly ``expected``'s and each holds its expected number of rows: a
    backfill that lost, repeated or mixed up a day would otherwise train on the wrong window.

    A day expected to hold 0 rows cannot be present in the frame, so it is not reported missing.
    """
    expected_rows = int(sum(expected.values()))
    meta: Metadata = {"days": 0, "rows": interactions.height, "expected_rows": expected_rows}
    if "day" not in interactions.columns:
        return CheckOutcome(False, f"no day column in the interactions (columns: {interactions.columns})", meta)
    if interactions.schema["day"] != pl.Date:
        # A Datetime day would compare unequal to every expected date: say so instead.
        return CheckOutcome(False, f"day column has dtype {interactions.schema['day']}, expected Date", meta)
    null_days = interactions["day"].null_count()
    counts = interactions.filter(pl.col("day").is_not_null()).group_by("day").len()
    found = dict(zip(counts["day"].to_list(), counts["len"].to_list()))
    missing = sorted(d for d, n in expected.items() if n > 0 and d not in found)
    unexpected = sorted(d for d in found if d not in expected)
    wrong = sorted(d for d in found if d in expected and found[d] != expected[d])
    meta |= {"days": len(found), "missing_days": len(missing), "unexpected_days": len(unexpected),
             "wrong_count_days": len(wrong), "null_days": null_days}
    problems = []
    if missing:
        problems.append(f"{_n(len(missing), 'day')} missing: "
                        f"{_examples(f'{d} (expected {expected[d]} rows)' for d in missing)}")
    if unexpected:
        problems.append(f"{_n(len(unexpected), 'unexpected day')}: "
                        f"{_examples(f'{d} ({found[d]} rows)' for d in unexpected)}")
    if wrong:
        problems.append(f"{_n(len(wrong), 'day')} with the wrong count: "
                        f"{_examples(f'{d}: {found[d]} rows, expected {expected[d]}' for d in wrong)}")
    if null_days:
        problems.append(f"{_n(null_days, 'row')} with a null day")
    return _outcome(problems, f"{len(found)} days, {interactions.height} rows, each day as configured "
                              f"({expected_rows} rows expected)", meta)


# --- graph ----------------------------------------------------------------------------------------


def graph_features(graph: HeteroData) -> CheckOutcome:
    """Every node type has a 2-D, finite feature matrix with exactly one row per node (and per
    ``node_id``): an extra or missing row shifts every node's features, a NaN poisons the whole
    model after one message-passing step."""
    problems = []
    meta: Metadata = {}
    for node_type in graph.node_types:
        store = graph[node_type]
        x = store.get("x")
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            shape = None if not isinstance(x, torch.Tensor) else list(x.shape)
            problems.append(f"{node_type}: no 2-D feature matrix x (got shape {shape})")
            continue
        # PyG infers num_nodes from x when it is not set, so node_id is the independent witness.
        n = store.num_nodes
        ids = store.get("node_id")
        meta[f"rows/{node_type}"] = int(x.shape[0])
        meta[f"num_nodes/{node_type}"] = int(n)
        if x.shape[0] != n or (ids is not None and ids.numel() != x.shape[0]):
            problems.append(f"{node_type}: {x.shape[0]} feature rows for {n} nodes"
                            + ("" if ids is None else f" and {ids.numel()} node ids"))
        bad_rows = (~torch.isfinite(x)).any(dim=1).nonzero().flatten()
        meta[f"non_finite_rows/{node_type}"] = bad_rows.numel()
        if bad_rows.numel():
            problems.append(f"{node_type}: {bad_rows.numel()} feature rows with NaN/inf, "
                            f"{_examples(bad_rows.tolist())}")
    return _outcome(problems, f"{len(graph.node_types)} node types, one finite feature row per node", meta)


def _key_set(edge_index: torch.Tensor, num_dst: int) -> torch.Tensor:
    # int64 so that src * num_dst cannot overflow an int32 edge index.
    edge_index = edge_index.long()
    return torch.unique(edge_index[0] * num_dst + edge_index[1])


def _pairs(keys: torch.Tensor, num_dst: int) -> list[tuple[int, int]]:
    return [(int(k) // num_dst, int(k) % num_dst) for k in keys[:_EXAMPLES]]


def _name(edge_type: tuple[str, str, str]) -> str:
    return "__".join(edge_type)


def graph_edge_indices(graph: HeteroData) -> CheckOutcome:
    """Every edge index is an integer ``[2, E]`` tensor within its node types' counts, and reverse
    edges mirror forward ones: an index past the node count fails deep inside message passing (a
    negative one may silently count from the end), and a reverse type that drifted from its forward
    type would let messages flow over held-out edges."""
    problems = []
    meta: Metadata = {}
    for edge_type in graph.edge_types:
        src, _, dst = edge_type
        name = _name(edge_type)
        ei = graph[edge_type].get("edge_index")
        if not isinstance(ei, torch.Tensor):
            problems.append(f"{name}: no edge_index")
            continue
        meta[f"edges/{name}"] = int(ei.shape[-1]) if ei.dim() == 2 else -1
        if ei.dim() != 2 or ei.shape[0] != 2 or ei.dtype not in _INT_DTYPES:
            problems.append(f"{name}: edge_index must be an integer [2, E] tensor, got {ei.dtype} {list(ei.shape)}")
            continue
        for row, node_type in ((0, src), (1, dst)):
            n = graph[node_type].num_nodes
            bad = ((ei[row] < 0) | (ei[row] >= n)).nonzero().flatten()
            if bad.numel():
                problems.append(f"{name}: {bad.numel()} {'source' if row == 0 else 'target'} indices outside "
                                f"[0, {n}), {_examples(ei[row, bad].tolist())}")
    if problems:
        # Out-of-range indices make the integer keys below ambiguous: stop here.
        return CheckOutcome(False, "; ".join(problems), meta)
    for forward, reverse in _MIRRORED:
        has_fwd, has_rev = forward in graph.edge_types, reverse in graph.edge_types
        if has_fwd != has_rev:
            present, absent = (forward, reverse) if has_fwd else (reverse, forward)
            problems.append(f"{_name(present)} has no mirror edge type {_name(absent)}")
            continue
        if not has_fwd:
            continue
        num_dst = graph[forward[2]].num_nodes
        fwd = _key_set(graph[forward].edge_index, num_dst)
        rev = _key_set(graph[reverse].edge_index.flip(0), num_dst)
        only_fwd, only_rev = fwd[~torch.isin(fwd, rev)], rev[~torch.isin(rev, fwd)]
        meta[f"unmirrored/{_name(forward)}"] = only_fwd.numel() + only_rev.numel()
        if only_fwd.numel() or only_rev.numel():
            problems.append(
                f"{_name(reverse)} does not mirror {_name(forward)}: {only_fwd.numel()} forward edges without a "
                f"reverse, {_examples(_pairs(only_fwd, num_dst))}, {only_rev.numel()} reverse edges without a "
                f"forward, {_examples(_pairs(only_rev, num_dst))} (as ({forward[0]}, {forward[2]}) pairs)")
    return _outcome(problems, f"{len(graph.edge_types)} edge types, every index within its node count, "
                              "reverse edges mirror forward ones", meta)


# --- split ----------------------------------------------------------------------------------------


def _positives(data: HeteroData) -> torch.Tensor:
    store = data[USER_AD]
    return store.edge_label_index[:, store.edge_label == 1]


def split_without_leakage(split: Mapping[str, HeteroData]) -> CheckOutcome:
    """No positive supervision edge is visible, forward or reversed, to a message-passing graph that
    must not see it: the seed notebook scored the model on edges it had passed messages over, which
    is how its AUC came out above the Bayes-optimal ceiling.

    Rules: val and test positives are not in train's graph; each split's positives (train's too) are
    not in its own graph; test positives are not in val's graph.
    """
    # Pairs are encoded as src * base + dst; base covers every ad index seen, so that an index past
    # num_nodes (graph_edge_indices' business) cannot make two pairs collide here.
    tensors = [split[s][USER_AD].edge_index[1] for s in _SPLITS] + [split[s][AD_USER].edge_index[0] for s in _SPLITS]
    tensors += [split[s][USER_AD].edge_label_index[1] for s in _SPLITS]
    base = max([int(split["train"][AD].num_nodes)] + [int(t.max()) + 1 for t in tensors if t.numel()])
    sup = {s: _key_set(_positives(split[s]), base) for s in _SPLITS}
    mp = {s: (_key_set(split[s][USER_AD].edge_index, base), _key_set(split[s][AD_USER].edge_index.flip(0), base))
          for s in _SPLITS}

    rules = {  # rule name: (supervision of, message passing of)
        "val_in_train_graph": ("val", "train"),
        "test_in_train_graph": ("test", "train"),
        "train_supervision_in_train_graph": ("train", "train"),
        "val_in_val_graph": ("val", "val"),
        "test_in_test_graph": ("test", "test"),
        "test_in_val_graph": ("test", "val"),
    }
    meta: Metadata = {f"positives/{s}": sup[s].numel() for s in _SPLITS}
    problems = []
    for rule, (labels, graph) in rules.items():
        keys = sup[labels]
        forward, reverse = torch.isin(keys, mp[graph][0]), torch.isin(keys, mp[graph][1])
        leaked = keys[forward | reverse]
        meta[f"leaked/{rule}"] = leaked.numel()
        if leaked.numel():
            problems.append(f"{leaked.numel()} {labels} positives in the {graph} message-passing graph "
                            f"({int(forward.sum())} forward, {int(reverse.sum())} reverse), "
                            f"{_examples(_pairs(leaked, base))}")
    if problems:
        return CheckOutcome(False, "supervision leaks into message passing: " + "; ".join(problems)
                            + " (as (user, ad) pairs)", meta)
    return CheckOutcome(True, f"no leakage: {sum(s.numel() for s in sup.values())} positive supervision edges, "
                              "none (nor its reverse) in a graph that may not see it", meta)


def class_balance(split: Mapping[str, HeteroData], neg_ratio: float) -> CheckOutcome:
    """Val/test hold ``round(neg_ratio * positives)`` negatives (as :func:`split_links` draws them) and
    labels are 0/1; train supervision is positives only, its negatives being re-drawn every epoch.
    A different balance leaves AUC alone but shifts every threshold-based number."""
    problems = []
    meta: Metadata = {}
    for name in _SPLITS:
        store = split[name][USER_AD]
        label = store.edge_label
        pos, neg = int((label == 1).sum()), int((label == 0).sum())
        other = int(label.numel() - pos - neg)
        meta |= {f"{name}/positives": pos, f"{name}/negatives": neg,
                 f"{name}/positive_share": pos / max(pos + neg, 1)}
        if label.numel() != store.edge_label_index.shape[1]:
            problems.append(f"{name}: {label.numel()} labels for {store.edge_label_index.shape[1]} supervision pairs")
        if other:
            problems.append(f"{name}: {other} labels other than 0/1, "
                            f"{_examples(label[(label != 0) & (label != 1)].tolist())}")
        if name == "train":
            if neg:
                problems.append(f"train: {neg} stored negatives, expected none (drawn per epoch)")
            continue
        if not pos:
            # An AUC over no positives is undefined.
            problems.append(f"{name}: no positive supervision edges")
        expected = round(neg_ratio * pos)  # as split_links draws them
        if neg != expected:
            problems.append(f"{name}: {neg} negatives for {pos} positives, expected round({neg_ratio} x {pos}) "
                            f"= {expected}")
    return _outcome(problems, f"val/test negatives = round({neg_ratio} x positives) "
                              f"(val {meta['val/positives']}+/{meta['val/negatives']}-, "
                              f"test {meta['test/positives']}+/{meta['test/negatives']}-); "
                              f"train supervision {meta['train/positives']} positives only", meta)


# --- model ----------------------------------------------------------------------------------------


def _auc(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value:.4f}"


def auc_above_chance(test_auc: float, minimum: float) -> CheckOutcome:
    """A model that is not clearly better than chance must not be promoted (NaN fails too)."""
    meta: Metadata = {"test_auc": float(test_auc), "min_test_auc": float(minimum)}
    if not test_auc >= minimum:
        return CheckOutcome(False, f"test AUC {_auc(test_auc)} is below the minimum {minimum:.4f}: "
                                   "the model is not clearly better than chance", meta)
    return CheckOutcome(True, f"test AUC {_auc(test_auc)} >= {minimum:.4f}", meta)


def auc_within_ceiling(test_auc: float, oracle_auc: float, tolerance: float) -> CheckOutcome:
    """No honest model beats the Bayes-optimal scorer on the same test pairs by more than noise."""
    meta: Metadata = {"test_auc": float(test_auc), "oracle_auc": float(oracle_auc), "tolerance": float(tolerance),
                      "excess": float(test_auc - oracle_auc)}
    if not test_auc <= oracle_auc + tolerance:
        return CheckOutcome(False, f"test AUC {_auc(test_auc)} exceeds the Bayes-optimal AUC {_auc(oracle_auc)} by "
                                   f"more than {tolerance:.4f}: scoring above the Bayes-optimal ceiling means test "
                                   "information leaked into training (or the oracle has a bug)", meta)
    return CheckOutcome(True, f"test AUC {_auc(test_auc)} <= oracle {_auc(oracle_auc)} + {tolerance:.4f}", meta)


def auc_vs_champion(test_auc: float, champion_auc: float | None, margin: float) -> CheckOutcome:
    """A challenger clearly worse than the serving champion deserves a look (a WARN, not a block)."""
    if champion_auc is None:
        return CheckOutcome(True, "no champion to compare with: nothing to beat",
                            {"test_auc": float(test_auc), "margin": float(margin)})
    meta: Metadata = {"test_auc": float(test_auc), "champion_test_auc": float(champion_auc), "margin": float(margin),
                      "difference": float(test_auc - champion_auc)}
    if not test_auc >= champion_auc - margin:
        return CheckOutcome(False, f"test AUC {_auc(test_auc)} trails the champion's {_auc(champion_auc)} on the "
                                   f"same test split by more than {margin:.4f}", meta)
    return CheckOutcome(True, f"test AUC {_auc(test_auc)} vs champion {_auc(champion_auc)} (margin {margin:.4f})",
                        meta)


@dataclass(frozen=True)
class ModelCheckSpec:
    """Bounds of the model checks: ``min_test_auc`` and ``oracle_tolerance`` block, the champion
    margin only warns."""

    min_test_auc: float = 0.55
    oracle_tolerance: float = 0.02
    champion_margin: float = 0.01

    def __post_init__(self) -> None:
        for name, low, high in (("min_test_auc", 0.5, 1.0), ("oracle_tolerance", 0.0, 0.5),
                                ("champion_margin", 0.0, 0.5)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                    and low <= value <= high):
                raise ValueError(f"{name}={value!r} is out of range: must be a number in [{low}, {high}]")

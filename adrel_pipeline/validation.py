"""Data-quality rules behind the pipeline's asset checks, as plain functions (no Dagster).

Each rule guards a way the pipeline could go silently wrong, most of them defects the seed
notebook had: duplicated or unknown ids (features misaligned with nodes), values outside the
one-hot vocabularies (an all-zero feature row), days lost or duplicated by a backfill, NaN
features, edge indices past the node count (PyG indexes out of range or, worse, wraps), held-out
edges left in the message-passing graph (the leak that inflated the notebook's AUC), class
balance other than configured (AUC still fine, but precision-style numbers shift), and a test
AUC above the Bayes-optimal ceiling (only possible with leakage).

Every rule returns a :class:`CheckOutcome`: passed or not, one line saying what was found (with
up to five examples on failure) and a few scalar numbers for metadata.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl
import torch
from torch_geometric.data import HeteroData

from adrel_pipeline.graph import AD, AD_USER, NON_AD_USER, USER_AD, USER_NON_AD

_EXAMPLES = 5


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict[str, int | float | str] = field(default_factory=dict)


def _examples(values: Sequence | pl.Series) -> str:
    values = list(values)
    return f"e.g. {values[:_EXAMPLES]}"


def ids_unique(df: pl.DataFrame, column: str) -> CheckOutcome:
    ids = df[column]
    nulls = ids.null_count()
    dup = ids.drop_nulls().filter(ids.drop_nulls().is_duplicated()).unique().sort()
    meta = {"rows": df.height, "duplicated_ids": dup.len(), "null_ids": nulls}
    if dup.len() or nulls:
        problems = []
        if dup.len():
            problems.append(f"{dup.len()} duplicated {column} values, {_examples(dup)}")
        if nulls:
            problems.append(f"{nulls} null {column} values")
        return CheckOutcome(False, "; ".join(problems), meta)
    return CheckOutcome(True, f"{df.height} {column} values, all unique and non-null", meta)


def values_in_vocabulary(df: pl.DataFrame, column: str, vocabulary: Sequence[str]) -> CheckOutcome:
    values = df[column]
    bad = values.is_null() | ~values.is_in(list(vocabulary))
    n_bad = int(bad.sum())
    meta = {"rows": df.height, "outside_vocabulary": n_bad}
    if n_bad:
        examples = values.filter(bad).unique(maintain_order=True).to_list()
        return CheckOutcome(False, f"{n_bad} {column} values outside {list(vocabulary)} (nulls included), "
                                   f"{_examples(examples)}", meta)
    return CheckOutcome(True, f"all {df.height} {column} values in the {len(vocabulary)}-value vocabulary", meta)


def references_known(interactions: pl.DataFrame, users: pl.DataFrame, items: pl.DataFrame) -> CheckOutcome:
    meta: dict[str, int | float | str] = {"interactions": interactions.height}
    problems = []
    for column, table in (("user_id", users), ("item_id", items)):
        refs = interactions[column]
        unknown = refs.filter(refs.is_null() | ~refs.is_in(table[column].implode()))
        meta[f"unknown_{column}"] = unknown.len()
        if unknown.len():
            problems.append(f"{unknown.len()} interactions reference an unknown or null {column}, "
                            f"{_examples(unknown.unique(maintain_order=True))}")
    if problems:
        return CheckOutcome(False, "; ".join(problems), meta)
    return CheckOutcome(True, f"all {interactions.height} interactions reference known users and items", meta)


def daily_counts(interactions: pl.DataFrame, expected: Mapping[dt.date, int]) -> CheckOutcome:
    counts = interactions.group_by("day").len()
    found = dict(zip(counts["day"].to_list(), counts["len"].to_list()))
    meta = {"days": len(found), "rows": interactions.height, "expected_rows": int(sum(expected.values()))}
    # A day expected to be empty is present with 0 rows.
    missing = sorted(d for d, n in expected.items() if n > 0 and d not in found)
    unexpected = sorted(d for d in found if d not in expected)
    wrong = sorted(d for d in found if d in expected and found[d] != expected[d])
    problems = []
    if missing:
        problems.append(f"{len(missing)} days missing: {_examples([str(d) for d in missing])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected days: "
                        f"{_examples([f'{d} ({found[d]} rows)' for d in unexpected])}")
    if wrong:
        problems.append(f"{len(wrong)} days with the wrong count: "
                        f"{_examples([f'{d}: {found[d]} rows, expected {expected[d]}' for d in wrong])}")
    if problems:
        return CheckOutcome(False, "; ".join(problems), meta)
    return CheckOutcome(True, f"{len(expected)} days, {interactions.height} rows, each day as configured", meta)


def graph_features(graph: HeteroData) -> CheckOutcome:
    problems = []
    meta: dict[str, int | float | str] = {}
    for node_type in graph.node_types:
        store = graph[node_type]
        x = store.get("x")
        if x is None or x.dim() != 2:
            problems.append(f"{node_type}: no 2-D feature matrix x")
            continue
        n = store.num_nodes
        ids = store.get("node_id")
        meta[f"rows/{node_type}"] = int(x.shape[0])
        if x.shape[0] != n or (ids is not None and ids.numel() != x.shape[0]):
            problems.append(f"{node_type}: {x.shape[0]} feature rows for {n} nodes"
                            + ("" if ids is None else f" and {ids.numel()} node ids"))
        bad_rows = (~torch.isfinite(x)).any(dim=1).nonzero().flatten()
        if bad_rows.numel():
            problems.append(f"{node_type}: {bad_rows.numel()} feature rows with NaN/inf, "
                            f"{_examples(bad_rows.tolist())}")
    if problems:
        return CheckOutcome(False, "; ".join(problems), meta)
    return CheckOutcome(True, f"{len(graph.node_types)} node types, one finite feature row per node", meta)


def _key_set(edge_index: torch.Tensor, num_dst: int) -> torch.Tensor:
    return torch.unique(edge_index[0] * num_dst + edge_index[1])


def graph_edge_indices(graph: HeteroData) -> CheckOutcome:
    problems = []
    meta: dict[str, int | float | str] = {}
    for edge_type in graph.edge_types:
        src, _, dst = edge_type
        name = "__".join(edge_type)
        ei = graph[edge_type].edge_index
        meta[f"edges/{name}"] = int(ei.shape[-1]) if ei.dim() == 2 else -1
        if ei.dim() != 2 or ei.shape[0] != 2 or ei.dtype not in (torch.int64, torch.int32):
            problems.append(f"{name}: edge_index must be an integer [2, E] tensor, got {ei.dtype} {list(ei.shape)}")
            continue
        for row, node_type in ((0, src), (1, dst)):
            n = graph[node_type].num_nodes
            bad = ((ei[row] < 0) | (ei[row] >= n)).nonzero().flatten()
            if bad.numel():
                problems.append(f"{name}: {bad.numel()} {'source' if row == 0 else 'target'} indices outside "
                                f"[0, {n}), {_examples(ei[row, bad].tolist())}")
    if problems:
        return CheckOutcome(False, "; ".join(problems), meta)
    for forward, reverse in ((USER_AD, AD_USER), (USER_NON_AD, NON_AD_USER)):
        if forward in graph.edge_types and reverse in graph.edge_types:
            num_dst = graph[forward[2]].num_nodes
            if not torch.equal(_key_set(graph[forward].edge_index, num_dst),
                               _key_set(graph[reverse].edge_index.flip(0), num_dst)):
                problems.append(f"{'__'.join(reverse)} does not mirror {'__'.join(forward)}")
    if problems:
        return CheckOutcome(False, "; ".join(problems), meta)
    return CheckOutcome(True, f"{len(graph.edge_types)} edge types, every index within its node count, "
                              "reverse edges mirror forward ones", meta)


def _positives(data: HeteroData) -> torch.Tensor:
    store = data[USER_AD]
    return store.edge_label_index[:, store.edge_label == 1]


def _message_passing_keys(data: HeteroData, num_ads: int) -> tuple[torch.Tensor, torch.Tensor]:
    return (_key_set(data[USER_AD].edge_index, num_ads), _key_set(data[AD_USER].edge_index.flip(0), num_ads))


def split_without_leakage(split: Mapping[str, HeteroData]) -> CheckOutcome:
    num_ads = split["train"][AD].num_nodes
    sup = {name: _key_set(_positives(split[name]), num_ads) for name in ("train", "val", "test")}
    mp = {name: _message_passing_keys(split[name], num_ads) for name in ("train", "val", "test")}

    def leaked(keys: torch.Tensor, graph: str) -> int:
        forward, reverse = mp[graph]
        return int((torch.isin(keys, forward) | torch.isin(keys, reverse)).sum())

    rules = {
        "val_in_train_graph": leaked(sup["val"], "train"),
        "test_in_train_graph": leaked(sup["test"], "train"),
        "train_supervision_in_train_graph": leaked(sup["train"], "train"),
        "val_in_val_graph": leaked(sup["val"], "val"),
        "test_in_test_graph": leaked(sup["test"], "test"),
        "test_in_val_graph": leaked(sup["test"], "val"),
    }
    meta: dict[str, int | float | str] = {f"leaked/{k}": v for k, v in rules.items()}
    bad = {k: v for k, v in rules.items() if v}
    if bad:
        return CheckOutcome(False, "supervision edges (or their reverses) in a message-passing graph: "
                                   + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in bad.items()), meta)
    return CheckOutcome(True, f"no leakage: {sum(s.numel() for s in sup.values())} positive supervision edges, "
                              "none (nor its reverse) in a graph that may not see it", meta)


def class_balance(split: Mapping[str, HeteroData], neg_ratio: float) -> CheckOutcome:
    problems = []
    meta: dict[str, int | float | str] = {}
    for name in ("train", "val", "test"):
        label = split[name][USER_AD].edge_label
        pos, neg = int((label == 1).sum()), int((label == 0).sum())
        other = int(label.numel() - pos - neg)
        meta |= {f"{name}/positives": pos, f"{name}/negatives": neg}
        if other:
            problems.append(f"{name}: {other} labels other than 0/1")
        if name == "train":
            # Train negatives are re-drawn every epoch: the stored supervision is positives only.
            if neg:
                problems.append(f"train: {neg} stored negatives, expected none (drawn per epoch)")
            continue
        expected = int(round(neg_ratio * pos))
        meta[f"{name}/positive_share"] = pos / max(pos + neg, 1)
        if neg != expected:
            problems.append(f"{name}: {neg} negatives for {pos} positives, expected round({neg_ratio} x {pos}) "
                            f"= {expected}")
    if problems:
        return CheckOutcome(False, "; ".join(problems), meta)
    return CheckOutcome(True, f"val/test negatives = round({neg_ratio} x positives); train supervision positives only",
                        meta)


def auc_above_chance(test_auc: float, minimum: float) -> CheckOutcome:
    meta = {"test_auc": float(test_auc), "min_test_auc": float(minimum)}
    if not test_auc >= minimum:
        return CheckOutcome(False, f"test AUC {test_auc:.4f} is below the minimum {minimum:.4f}: "
                                   "the model is not clearly better than chance", meta)
    return CheckOutcome(True, f"test AUC {test_auc:.4f} >= {minimum:.4f}", meta)


def auc_within_ceiling(test_auc: float, oracle_auc: float, tolerance: float) -> CheckOutcome:
    meta = {"test_auc": float(test_auc), "oracle_auc": float(oracle_auc), "tolerance": float(tolerance),
            "excess": float(test_auc - oracle_auc)}
    if not test_auc <= oracle_auc + tolerance:
        return CheckOutcome(False, f"test AUC {test_auc:.4f} exceeds the Bayes-optimal AUC {oracle_auc:.4f} by more "
                                   f"than {tolerance:.4f}: no honest model can, so test information leaked into "
                                   "training (or the oracle is wrong)", meta)
    return CheckOutcome(True, f"test AUC {test_auc:.4f} <= oracle {oracle_auc:.4f} + {tolerance:.4f}", meta)


def auc_vs_champion(test_auc: float, champion_auc: float | None, margin: float) -> CheckOutcome:
    if champion_auc is None:
        return CheckOutcome(True, "no comparable champion on this test split: nothing to compare with",
                            {"test_auc": float(test_auc), "margin": float(margin)})
    meta = {"test_auc": float(test_auc), "champion_test_auc": float(champion_auc), "margin": float(margin),
            "difference": float(test_auc - champion_auc)}
    if not test_auc >= champion_auc - margin:
        return CheckOutcome(False, f"test AUC {test_auc:.4f} trails the champion's {champion_auc:.4f} on the same "
                                   f"test split by more than {margin:.4f}", meta)
    return CheckOutcome(True, f"test AUC {test_auc:.4f} vs champion {champion_auc:.4f} (margin {margin:.4f})", meta)


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
                raise ValueError(f"{name}={value!r} is out of range: must be in [{low}, {high}]")

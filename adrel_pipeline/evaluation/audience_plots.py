"""Audience-expansion figures, as PNG bytes: the blog's relative-gain bars (its Figures 4–6) and
absolute values beside the oracle (input: :func:`adrel_pipeline.evaluation.expansion.summarise`'s
frame), and the user embeddings' training loss."""

from __future__ import annotations

import numpy as np
import polars as pl

from adrel_pipeline.evaluation.expansion import BASELINE, METRICS
from adrel_pipeline.evaluation.plots import _png, _pyplot

LABELS = {"recall": "recall@k", "precision": "precision@k", "gt_precision": "ground-truth precision@k"}


def _buckets(summary: pl.DataFrame) -> list[str]:
    """Buckets by nominal seed size, then "all"."""
    named = {b for b in summary["bucket"].to_list() if b != "all"}
    return sorted(named, key=int) + (["all"] if "all" in summary["bucket"].to_list() else [])


def _bars(summary: pl.DataFrame, column: str, methods: list[str], ylabel: str, title: str,
          percent: bool, reference: float | None = None) -> bytes:
    if column.split("_gain")[0] not in METRICS:
        raise ValueError(f"unknown metric in {column!r}: expected one of {METRICS}")
    plt = _pyplot()
    buckets = _buckets(summary)
    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(buckets) * max(1, len(methods)) / 3, 3.6))
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(buckets))
    for i, method in enumerate(methods):
        rows = {r["bucket"]: r[column] for r in summary.filter(pl.col("method") == method).iter_rows(named=True)}
        values = np.array([np.nan if rows.get(b) is None else rows[b] for b in buckets], dtype=float)
        shown = values * 100 if percent else values
        # Undefined values (a gain over a zero baseline) get no bar and no label.
        bars = ax.bar(x + (i - (len(methods) - 1) / 2) * width, np.where(np.isfinite(shown), shown, 0.0), width,
                      label=method)
        for bar, v in zip(bars, shown, strict=True):
            if np.isfinite(v):
                ax.annotate(f"{v:+.0f}%" if percent else f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom" if v >= 0 else "top", fontsize=6)
    if reference is not None:
        ax.axhline(reference, color="grey", linewidth=1, linestyle=":" if reference else "-")
    ax.set_xticks(x, [f"seed ~{b}" if b != "all" else "all" for b in buckets], fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncols=min(len(methods), 5))
    fig.tight_layout()
    return _png(fig)


def gain_bars_png(summary: pl.DataFrame, metric: str) -> bytes:
    """Relative gain over the regression baseline per seed-size bucket, one bar per method (the
    blog's Figures 4–6); lr itself (0 by definition) and the oracle are left out."""
    methods = [m for m in dict.fromkeys(summary["method"].to_list()) if m not in (BASELINE, "oracle")]
    return _bars(summary, f"{metric}_gain_vs_lr", methods, f"{LABELS.get(metric, metric)} gain vs lr (%)",
                 f"{LABELS.get(metric, metric)}: relative gain over logistic regression", percent=True, reference=0.0)


def absolute_bars_png(summary: pl.DataFrame, metric: str) -> bytes:
    """Absolute values per bucket, every method and the oracle (the ceiling); precision's chance
    level, 0.5, is drawn."""
    methods = list(dict.fromkeys(summary["method"].to_list()))
    return _bars(summary, metric, methods, LABELS.get(metric, metric), f"{LABELS.get(metric, metric)} by seed-list size",
                 percent=False, reference=0.5 if metric == "precision" else None)


def embedding_loss_png(loss) -> bytes:
    """The user embeddings' BPR loss per epoch."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(range(1, len(loss) + 1), loss, color="tab:red")
    ax.set(xlabel="epoch", ylabel="BPR loss", title="user embeddings (LightGCN)")
    return _png(fig)

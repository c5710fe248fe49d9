"""Figures of the serving funnel: the truly relevant share through the stages (the seed's chart),
revenue against relevance over the ranking function's settings, the daily trend, and the A/A
spread. PNG bytes, as :mod:`adrel_pipeline.evaluation.plots`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from adrel_pipeline.evaluation.plots import _png, _pyplot


def funnel_png(panels: Mapping[str, Mapping[str, Sequence[float]]], stages: Sequence[str], title: str) -> bytes:
    """One panel per breakdown (``panels[breakdown][segment]`` = the share at each stage), a
    line per segment across the stages."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    x = np.arange(len(stages))
    for ax, (breakdown, segments) in zip(axes[0], panels.items()):
        for segment, values in segments.items():
            overall = segment.startswith("all")  # "all", and "all, holdout" dashed
            ax.plot(x, values, marker="o", linewidth=2.5 if overall else 1.2, color="black" if overall else None,
                    linestyle="--" if "holdout" in segment else "-", label=segment, zorder=3 if overall else 2)
        ax.set_xticks(x, [s.replace("_", "\n") for s in stages], fontsize=8)
        ax.set(title=f"by {breakdown}", ylabel="truly relevant share of survivors", ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def tradeoff_png(points: pl.DataFrame, chosen: tuple[float, float], title: str) -> bytes:
    """Revenue per context against the truly relevant share of served ads, one point per (arm,
    alpha, tau) of :func:`adrel_pipeline.contextual.measurement.sweep`: the production model's
    points joined by tau, the other arms' alpha curves at the chosen tau, the chosen setting ringed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    arms = points["arm"].unique(maintain_order=True).to_list()
    alpha, tau = chosen
    main = points.filter(pl.col("arm") == arms[0])
    for t in main["tau"].unique(maintain_order=True).to_list():
        line = main.filter(pl.col("tau") == t).sort("alpha")
        ax.plot(line["fraction_relevant"], line["revenue"], marker="o", markersize=3, linewidth=1,
                label=f"{arms[0]}, tau {t:g}")
    for arm in arms[1:]:
        line = points.filter((pl.col("arm") == arm) & (pl.col("tau") == tau)).sort("alpha")
        drawn = ax.plot(line["fraction_relevant"], line["revenue"], marker="s", markersize=4, linestyle="--",
                        linewidth=1.5, label=f"{arm}, tau {tau:g}")
        at = line.filter(pl.col("alpha") == alpha)
        # Where the production setting lands with this model: a calibrated swap lands where production does.
        ax.scatter(at["fraction_relevant"], at["revenue"], s=90, facecolors="none", edgecolors=drawn[0].get_color(),
                   linewidths=1.5, zorder=5)
    for row in main.filter(pl.col("tau") == tau).iter_rows(named=True):
        ax.annotate(f"alpha {row['alpha']:g}", (row["fraction_relevant"], row["revenue"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    hold = main.filter((pl.col("alpha") == 0) & (pl.col("tau") == 0))
    here = main.filter((pl.col("alpha") == alpha) & (pl.col("tau") == tau))
    for frame, label, marker in ((hold, "holdout (alpha 0, no trim)", "X"), (here, "production setting", "o")):
        if frame.height:
            ax.scatter(frame["fraction_relevant"], frame["revenue"], s=120, marker=marker, facecolors="none",
                       edgecolors="black", linewidths=1.5, zorder=5, label=label)
    ax.set(xlabel="truly relevant share of served ads", ylabel="expected revenue per context", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower left", ncol=2)
    fig.tight_layout()
    return _png(fig)


def trend_png(days: Sequence[str], series: Mapping[str, Sequence[float]], title: str) -> bytes:
    """Metrics over days (``series[name][i]`` on ``days[i]``; NaN where a day lacks one): the
    truly relevant share on one axis, nDCG on a second panel when present."""
    plt = _pyplot()
    share = {k: v for k, v in series.items() if "ndcg" not in k.lower()}
    ndcg = {k: v for k, v in series.items() if "ndcg" in k.lower()}
    panels = [p for p in (share, ndcg) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.4), squeeze=False)
    x = np.arange(len(days))
    for ax, panel, ylabel in zip(axes[0], panels, ("truly relevant share of served ads", "nDCG of served slates")):
        for name, values in panel.items():
            ax.plot(x, values, marker="o", label=name)
        ax.set_xticks(x, [d[5:] for d in days], fontsize=7, rotation=45 if len(days) > 10 else 0)
        ax.set(ylabel=ylabel, xlabel="day")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def aa_png(controlled: Sequence[float], uncontrolled: Sequence[float], metric: str, contexts: int) -> bytes:
    """Histograms of the A/A relative differences with and without the variance controls."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    values = np.concatenate([controlled, uncontrolled])
    bins = np.linspace(values.min(), values.max(), 31) if len(values) and values.min() < values.max() else 10
    for label, data in (("fixed query set and user contexts", controlled), ("freshly sampled contexts", uncontrolled)):
        ax.hist(data, bins=bins, alpha=0.55, label=f"{label} (sd {np.std(data, ddof=1):.2%})")
    ax.axvline(0, color="black", linewidth=1)
    ax.set(xlabel=f"relative difference in {metric} (B / A - 1)", ylabel="A/A repeats",
           title=f"A/A: one treatment against itself, {contexts} contexts per arm")
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:+.0%}"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)

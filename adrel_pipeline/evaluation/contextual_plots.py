"""Figures of the contextual relevance model: reliability curves per segment, one line per model,
and ECE against the labelling budget. PNG bytes, as :mod:`adrel_pipeline.evaluation.plots`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from adrel_pipeline.evaluation.plots import _png, _pyplot


def reliability_png(curves: Mapping[str, Mapping[str, Mapping]], title: str,
                    eces: Mapping[str, Mapping[str, float]] | None = None) -> bytes:
    """One panel per segment (``curves[model][segment]`` = a reliability curve), a line per model,
    the diagonal of perfect calibration; ``eces[model][segment]`` in the legend when given."""
    plt = _pyplot()
    segments = list(dict.fromkeys(s for by_segment in curves.values() for s in by_segment))
    fig, axes = plt.subplots(1, len(segments), figsize=(3.1 * len(segments), 3.3), squeeze=False)
    for ax, segment in zip(axes[0], segments):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        for model, by_segment in curves.items():
            if segment not in by_segment:
                continue
            curve = by_segment[segment]
            label = model if eces is None else f"{model} (ECE {eces[model][segment]:.3f})"
            ax.plot(curve["mean_score"], curve["mean_target"], marker=".", label=label)
        ax.set(title=segment, xlabel="predicted P(relevant)", xlim=(0, 1), ylim=(0, 1))
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7)
    axes[0][0].set_ylabel("share labelled relevant")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def ece_budget_png(budgets: Sequence[int], eces: Mapping[str, Sequence[float]], goal: float | None = None) -> bytes:
    """ECE against the labelling budget, one line per segment (log-scaled budget)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for label, values in eces.items():
        ax.plot(budgets, values, marker="o", label=label)
    if goal is not None:
        ax.axhline(goal, color="grey", linestyle="--", linewidth=1, label=f"goal {goal:g}")
    ax.set(xscale="log", xlabel="labelling budget (rows)", ylabel="ECE", title="calibration error vs budget")
    # One tick per budget, as written (the log axis' own ticks overlap the budgets' labels).
    ax.set_xticks(list(budgets), [f"{b:,}" for b in budgets], rotation=30, fontsize=7)
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)

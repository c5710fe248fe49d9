"""Figures a person would rather look at than read: learning curves and ROC curves, as PNG bytes.

matplotlib is imported inside the functions (Agg backend, no display needed): it costs about a
second of start-up that only the steps drawing a figure should pay.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np

DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # Fixed metadata: the same figure gives the same bytes.
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    _pyplot().close(fig)
    return buf.getvalue()


def learning_curves_png(history: Mapping[str, Sequence[float]], best_epoch: int) -> bytes:
    """Train loss, and train / val AUC per epoch, with the kept (best-validation) epoch marked."""
    plt = _pyplot()
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(9, 3.4))
    epochs = list(history["epoch"])
    ax_loss.plot(epochs, history["train_loss"], marker=".", color="tab:red")
    ax_loss.set(xlabel="epoch", ylabel="BCE loss", title="train loss")
    ax_auc.plot(epochs, history["train_auc"], marker=".", label="train (sampled supervision)")
    ax_auc.plot(epochs, history["val_auc"], marker=".", label="val")
    ax_auc.set(xlabel="epoch", ylabel="ROC AUC", title="AUC per epoch")
    for ax in (ax_loss, ax_auc):
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1)
        ax.grid(alpha=0.3)
    ax_auc.legend(loc="lower right", fontsize=8, title=f"kept epoch {best_epoch}", title_fontsize=8)
    fig.tight_layout()
    return _png(fig)


def roc_png(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], title: str) -> bytes:
    """ROC curves, one per scorer: ``{label: (fpr, tpr, auc)}``, with the chance diagonal."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    for label, (fpr, tpr, value) in curves.items():
        ax.plot(fpr, tpr, label=f"{label} (AUC {value:.4f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown embedding ``png`` as a data URL, for Dagster's ``MetadataValue.md``."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"

"""Full-batch training of the ad-relevance GAT with fresh negatives and early stopping."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch_geometric.data import HeteroData

from adrel_pipeline.determinism import deterministic
from adrel_pipeline.evaluation.metrics import auc
from adrel_pipeline.graph.build import AD, USER, USER_AD
from adrel_pipeline.graph.split import sample_negatives, with_message_passing
from adrel_pipeline.relevance.model import AdRelevanceModel, GATConfig, model_checkpoint
from adrel_pipeline.relevance.spec import TrainSpec


@dataclass
class TrainResult:
    checkpoint: dict                      # config + state_dict of the best-validation epoch
    history: dict[str, list[float]]       # per epoch: epoch, train_loss, train_auc, val_auc
    best_epoch: int
    best_val_auc: float
    epochs_run: int
    seconds: float
    spec: dict = field(default_factory=dict)

    def to_payload(self) -> dict:
        return {"checkpoint": self.checkpoint, "history": self.history, "best_epoch": self.best_epoch,
                "best_val_auc": self.best_val_auc, "epochs_run": self.epochs_run,
                "seconds": self.seconds, "spec": self.spec}

    @classmethod
    def from_payload(cls, payload: dict) -> TrainResult:
        """From :meth:`to_payload`'s dict; other keys (e.g. tracking records) are ignored."""
        return cls(**{f.name: payload[f.name] for f in fields(cls) if f.name in payload})


@torch.no_grad()
def predict(model: AdRelevanceModel, data: HeteroData, pairs: torch.Tensor | None = None) -> torch.Tensor:
    """Relevance probabilities for (user, ad) node-index pairs, by default ``data``'s label pairs."""
    model.eval()
    with deterministic():
        return torch.sigmoid(model(data, pairs))


def train_eval_pairs(train: HeteroData, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train supervision positives plus one fixed draw of negatives, to report a train AUC."""
    pos = train[USER_AD].edge_label_index
    known = torch.cat([train[USER_AD].edge_index, pos], dim=1)
    neg = sample_negatives(train[USER].num_nodes, train[AD].num_nodes, pos.shape[1], known,
                           torch.Generator().manual_seed(seed))
    return torch.cat([pos, neg], dim=1), torch.cat([torch.ones(pos.shape[1]), torch.zeros(neg.shape[1])])


def fit_wide(model: AdRelevanceModel, train: HeteroData, pairs: torch.Tensor, labels: torch.Tensor,
             max_iter: int = 100) -> float:
    """Fit the wide part alone (a convex logistic regression) to convergence with L-BFGS, on the
    train graph's supervision pairs; returns the final training loss."""
    model.use_encoder = False
    model.train()
    embedded = model.embed(train)
    optimizer = torch.optim.LBFGS(model.wide_parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model.decode(embedded, pairs), labels)
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    model.use_encoder = True
    return float(loss.detach())


def train_gat(
    split: dict[str, HeteroData],
    spec: TrainSpec,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train on ``split['train']``, early-stop on ``split['val']`` AUC, return the best epoch's weights.

    Two stages. Epoch 0 fits the wide part alone (:func:`fit_wide`), with the GAT gated off: the
    model starts where a logistic regression on the same features ends. Then the GAT and its gate
    train (the wide part frozen) with Adam, fresh supervision edges and negatives every epoch and
    an exponential moving average of the weights (``ema_decay``), early-stopping on validation
    AUC. The best validation epoch is kept, epoch 0 included: the GAT enters the model only as
    far as it helps on held-out links.
    """
    start = time.perf_counter()
    train, val = split["train"], split["val"]
    generator = torch.Generator().manual_seed(spec.seed)
    # Weight init and dropout draw from the global RNG: seed it without leaking state to the caller.
    with torch.random.fork_rng(), deterministic():
        torch.manual_seed(spec.seed)
        model = AdRelevanceModel(GATConfig.for_graph(
            train, hidden_channels=spec.hidden_channels, out_channels=spec.out_channels, heads=spec.heads,
            dropout=spec.dropout))
        val_label = val[USER_AD].edge_label
        history: dict[str, list[float]] = {"epoch": [], "train_loss": [], "train_auc": [], "val_auc": []}

        def record(row: dict) -> None:
            for k, v in row.items():
                history[k].append(v)
            if on_epoch is not None:
                on_epoch(row)

        pairs, labels = train_eval_pairs(train, spec.seed)
        loss = fit_wide(model, train, pairs, labels)
        val_auc = auc(val_label, predict(model, val))
        record({"epoch": 0, "train_loss": loss, "train_auc": auc(labels, predict(model, train, pairs)),
                "val_auc": val_auc})
        best = (val_auc, 0, model_checkpoint(model))

        optimizer = torch.optim.Adam(model.deep_parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
        averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(spec.ema_decay))
        # Every train edge, message passing and supervision alike. Each epoch re-draws which of
        # them are supervised (hidden from message passing) at the split's ratio, so the model
        # learns from all of them without ever being scored on an edge it can see.
        pool = torch.cat([train[USER_AD].edge_index, train[USER_AD].edge_label_index], dim=1)
        num_sup = train[USER_AD].edge_label_index.shape[1]
        num_users, num_ads = train[USER].num_nodes, train[AD].num_nodes
        target = torch.cat([torch.ones(num_sup), torch.zeros(num_sup)])
        for epoch in range(1, spec.epochs + 1):
            perm = torch.randperm(pool.shape[1], generator=generator)
            pos = pool[:, perm[:num_sup]]
            graph = with_message_passing(train, pool[:, perm[num_sup:]])
            neg = sample_negatives(num_users, num_ads, num_sup, pool, generator)

            model.train()
            optimizer.zero_grad()
            logits = model(graph, torch.cat([pos, neg], dim=1))
            loss = F.binary_cross_entropy_with_logits(logits, target)
            loss.backward()
            optimizer.step()
            averaged.update_parameters(model)

            val_auc = auc(val_label, predict(averaged.module, val))
            record({"epoch": epoch, "train_loss": loss.item(), "train_auc": auc(target, logits.detach()),
                    "val_auc": val_auc})
            if val_auc > best[0]:
                best = (val_auc, epoch, model_checkpoint(averaged.module))
            elif epoch - best[1] >= spec.patience:
                break

    return TrainResult(checkpoint=best[2], history=history, best_epoch=best[1], best_val_auc=best[0],
                       epochs_run=len(history["epoch"]) - 1, seconds=time.perf_counter() - start,
                       spec=spec.as_dict())

"""Training of the ad-relevance GAT with fresh negatives and early stopping: full-batch, or by
mini-batches over sampled subgraphs (:mod:`adrel_pipeline.graph.sampling`) when the graph is large."""

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
from adrel_pipeline.graph.build import AD, AD_USER, USER, USER_AD
from adrel_pipeline.graph.sampling import NeighbourSampler
from adrel_pipeline.graph.split import sample_negatives, with_message_passing
from adrel_pipeline.relevance.model import AdRelevanceModel, GATConfig, model_checkpoint, with_log_degree
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
def predict(model: AdRelevanceModel, data: HeteroData, pairs: torch.Tensor | None = None,
            batch_size: int = 0) -> torch.Tensor:
    """Relevance probabilities for (user, ad) node-index pairs, by default ``data``'s label pairs.
    ``batch_size > 0`` embeds the users that many at a time (:func:`embed_in_batches`, exact): memory
    bounded by a batch's neighbourhoods instead of the whole graph's edges."""
    model.eval()
    pairs = data[USER_AD].edge_label_index if pairs is None else pairs
    with deterministic():
        if batch_size <= 0:
            return torch.sigmoid(model(data, pairs))
        embedded = embed_in_batches(model, data, batch_size)
        return torch.cat([torch.sigmoid(model.decode(embedded, chunk)) for chunk in pairs.split(batch_size, dim=1)])


def node_features(data: HeteroData) -> dict[str, torch.Tensor]:
    """User and ad features with their log-degree in ``data``'s whole message-passing graph."""
    return with_log_degree({t: data[t].x for t in (USER, AD)}, data.edge_index_dict)


def ad_user_sampler(data: HeteroData) -> NeighbourSampler:
    """Sampler of the model's one message-passing hop: a user's ads, along ``ad -rev_to-> user``."""
    return NeighbourSampler({AD_USER: data[AD_USER].edge_index},
                            {USER: data[USER].num_nodes, AD: data[AD].num_nodes})


@torch.no_grad()
def embed_in_batches(model: AdRelevanceModel, data: HeteroData, batch_size: int) -> dict:
    """:meth:`AdRelevanceModel.embed` of every node, ``batch_size`` users at a time, each with all of
    its ads (the model's receptive field is one hop), so equal to the full-graph embedding."""
    x = node_features(data)
    if not model.use_encoder:
        return {"x": x, "z": None}
    sampler = ad_user_sampler(data)
    users = []
    for chunk in torch.arange(data[USER].num_nodes).split(batch_size):
        sub = sampler.sample({USER: chunk}, [-1])
        users.append(model.encode(sub.gather(x), sub.edge_index)["z"][USER][:chunk.numel()])
    return {"x": x, "z": {USER: torch.cat(users), AD: model.encoder.ads(x[AD])}}


def batch_logits(model: AdRelevanceModel, x: dict[str, torch.Tensor], sampler: NeighbourSampler,
                 pairs: torch.Tensor, fanout: int, generator: torch.Generator) -> torch.Tensor:
    """Logits of ``pairs`` from the subgraph around them: their users with ``fanout`` sampled ads each
    (0: all), their ads alone. ``x`` carries full-graph log-degrees, never the sample's."""
    users, user_row = torch.unique(pairs[0], return_inverse=True)
    ads, ad_row = torch.unique(pairs[1], return_inverse=True)
    sub = sampler.sample({USER: users, AD: ads}, [fanout if fanout > 0 else -1], generator)
    # The sampler puts each type's seeds first, in order: a pair's local rows are its unique() rows.
    return model.decode(model.encode(sub.gather(x), sub.edge_index), torch.stack([user_row, ad_row]))


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

    An epoch is one full-batch step (``batch_size=0``), or Adam steps over batches of
    ``batch_size`` supervision pairs, each on the subgraph sampled around its pairs: the model's
    receptive field is one hop (a user's ads; an ad reads only itself), so its users get
    ``fanout`` ads each (``[fanout]`` as the sampler's fan-out list), and every node keeps its
    log-degree in the epoch's whole message-passing graph. Validation is then scored in batches of
    users with all their ads, which equals the full graph's scores.
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
        val_auc = auc(val_label, predict(model, val, batch_size=spec.batch_size))
        record({"epoch": 0, "train_loss": loss,
                "train_auc": auc(labels, predict(model, train, pairs, batch_size=spec.batch_size)), "val_auc": val_auc})
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
            pairs = torch.cat([pos, neg], dim=1)

            model.train()
            if spec.batch_size == 0:
                optimizer.zero_grad()
                logits = model(graph, pairs)
                loss = F.binary_cross_entropy_with_logits(logits, target)
                loss.backward()
                optimizer.step()
                averaged.update_parameters(model)
                epoch_logits, epoch_target, epoch_loss = logits.detach(), target, loss.item()
            else:
                epoch_logits, epoch_target, epoch_loss = train_mini_batches(
                    model, optimizer, averaged, graph, pairs, target, spec, generator)

            val_auc = auc(val_label, predict(averaged.module, val, batch_size=spec.batch_size))
            record({"epoch": epoch, "train_loss": epoch_loss, "train_auc": auc(epoch_target, epoch_logits),
                    "val_auc": val_auc})
            if val_auc > best[0]:
                best = (val_auc, epoch, model_checkpoint(averaged.module))
            elif epoch - best[1] >= spec.patience:
                break

    return TrainResult(checkpoint=best[2], history=history, best_epoch=best[1], best_val_auc=best[0],
                       epochs_run=len(history["epoch"]) - 1, seconds=time.perf_counter() - start,
                       spec=spec.as_dict())


def train_mini_batches(model: AdRelevanceModel, optimizer: torch.optim.Optimizer, averaged: AveragedModel,
                       graph: HeteroData, pairs: torch.Tensor, target: torch.Tensor, spec: TrainSpec,
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One epoch of Adam steps over shuffled batches of ``spec.batch_size`` supervision pairs, each on
    the subgraph sampled around its pairs (:func:`batch_logits`) from the epoch's message-passing
    ``graph``. The degrees and the sampler's CSR are the whole graph's, computed once per epoch.
    Returns the epoch's logits and targets (in the order trained) and its mean loss."""
    x = node_features(graph)
    sampler = ad_user_sampler(graph)
    order = torch.randperm(pairs.shape[1], generator=generator)
    logits, targets, total = [], [], 0.0
    for batch in order.split(spec.batch_size):
        optimizer.zero_grad()
        out = batch_logits(model, x, sampler, pairs[:, batch], spec.fanout, generator)
        loss = F.binary_cross_entropy_with_logits(out, target[batch])
        loss.backward()
        optimizer.step()
        averaged.update_parameters(model)
        logits.append(out.detach())
        targets.append(target[batch])
        total += loss.item() * batch.numel()
    return torch.cat(logits), torch.cat(targets), total / pairs.shape[1]

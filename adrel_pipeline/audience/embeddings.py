"""Universal user embeddings: LightGCN on the organic user→pin graph, trained with BPR.

The blog feeds "normalized user embeddings trained using organic <user, pin> interactions" to its
per-advertiser models; they are learned once, for every user, without any advertiser's labels.
Here: PyG's :class:`~torch_geometric.nn.models.LightGCN` over the bipartite graph of distinct
organic (user, pin) pairs, full-batch BPR (each training edge against one pin drawn per step,
popular pins more often), a share of the edges held out to report how well the embeddings predict
unseen organic links, and a linear probe of how much of the users' latent taste they carry.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from adrel_pipeline.audience.features import organic_edges
from adrel_pipeline.audience.spec import AudienceSpec


@dataclass
class EmbeddingResult:
    user_ids: np.ndarray              # users' row order, as given
    embeddings: torch.Tensor          # (num_users, dim) float32, every row of L2 norm 1
    state: dict                       # LightGCN state_dict: nodes are users (rows), then item_ids
    item_ids: np.ndarray              # the organic pins with at least one edge, in node order
    history: dict[str, list[float]]   # per epoch: epoch, loss
    link_auc: float                   # held-out organic links against non-edges of the same users
    num_edges: int                    # distinct organic (user, pin) pairs, held-out ones included
    users_without_edges: int          # users whose embedding is their main interest's mean (see below)
    seconds: float


class _SymmetricPropagation(torch.autograd.Function):
    """``A @ x`` for a symmetric sparse ``A``: the gradient is ``A @ grad`` too.

    LightGCN's normalised adjacency ``D^-1/2 A D^-1/2`` is symmetric. On the default world (2 CPU
    cores) a 2-layer forward and backward takes ~0.04 s this way, 0.29 s with PyG's propagation over
    an ``edge_index`` (scatter-adds) and 0.07 s with a generic sparse product (whose backward
    transposes the matrix every step). The result equals ``LightGCN.get_embedding(edge_index)``
    (tested); LightGCN itself holds the embeddings and the layer weights.
    """

    @staticmethod
    def forward(ctx, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return adjacency @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, ctx.adjacency @ grad


@contextmanager
def flush_denormal() -> Iterator[None]:
    """Denormal floats flushed to zero, then back to the default (off).

    Once margins grow, gradients and Adam's second moments underflow into denormals, and every
    kernel touching them runs ~10x slower on CPU (seen: 60 ms LightGCN epochs becoming 600 ms).
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def normalized_adjacency(pairs: torch.Tensor, num_users: int, num_nodes: int) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the undirected bipartite graph of (user row, item node) ``pairs``, as CSR."""
    index = torch.cat([pairs, pairs.flip(0)], dim=1)
    degree = torch.bincount(index[0], minlength=num_nodes).double()
    inv_sqrt = degree.pow(-0.5).masked_fill(degree == 0, 0.0)
    values = (inv_sqrt[index[0]] * inv_sqrt[index[1]]).float()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_coo_tensor(index, values, (num_nodes, num_nodes),
                                       check_invariants=False).coalesce().to_sparse_csr()


class LightGCN(torch.nn.Module):
    """LightGCN's parameters exactly as PyG's :class:`~torch_geometric.nn.models.LightGCN` holds them
    (the same ``state_dict`` keys, the same initialisation from the same seed; tested), without
    importing PyG, which costs ~2.5 s per process; the propagation is :func:`propagate`."""

    def __init__(self, num_nodes: int, embedding_dim: int, num_layers: int):
        super().__init__()
        self.num_nodes, self.embedding_dim, self.num_layers = num_nodes, embedding_dim, num_layers
        self.embedding = torch.nn.Embedding(num_nodes, embedding_dim)
        self.register_buffer("alpha", torch.full((num_layers + 1,), 1.0 / (num_layers + 1)))
        torch.nn.init.xavier_uniform_(self.embedding.weight)


def propagate(model, adjacency: torch.Tensor) -> torch.Tensor:
    """``model.get_embedding`` (the alpha-weighted sum of the layers' embeddings) over ``adjacency``."""
    x = model.embedding.weight
    out = x * model.alpha[0]
    for layer in range(model.num_layers):
        x = _SymmetricPropagation.apply(adjacency, x)
        out = out + x * model.alpha[layer + 1]
    return out


# Slots of the negative-sampling table: an item's share is its weight's to within half a slot.
NEGATIVE_TABLE_SLOTS = 2**20


def _negative_table(items: torch.Tensor, num_items: int, exponent: float) -> torch.Tensor:
    """Items repeated in proportion to ``degree ** exponent`` (at least once each): a uniform draw
    from it is a draw in proportion to the weights, one gather per negative instead of a binary
    search (word2vec's unigram table).

    Uniform negatives (exponent 0) are told apart from the positives by popularity alone, and the
    embeddings spend their capacity on it; degree-matched ones make them learn what else a user's
    pins share (their taste).
    """
    weight = torch.bincount(items, minlength=num_items).double().pow(exponent)
    slots = torch.clamp((weight / weight.sum() * NEGATIVE_TABLE_SLOTS).round().long(), min=1)
    return torch.repeat_interleave(torch.arange(num_items), slots)


def _non_edges(users: np.ndarray, num_items: int, known: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniformly drawn item per entry of ``users`` that is not a known edge (codes user * num_items + item)."""
    items = rng.integers(0, num_items, size=len(users))
    for _ in range(100):
        clash = np.isin(users * num_items + items, known)
        if not clash.any():
            return items
        items[clash] = rng.integers(0, num_items, size=int(clash.sum()))
    raise ValueError("could not draw non-edges: the users' organic graph is nearly complete")


def train_user_embeddings(users: pl.DataFrame, items: pl.DataFrame, interactions: pl.DataFrame,
                          spec: AudienceSpec) -> EmbeddingResult:
    """LightGCN user embeddings of every user in ``users`` (row order), L2-normalised.

    ``link_holdout_fraction`` of the distinct organic edges are held out: training propagates over
    and ranks only the rest, and ``link_auc`` is the AUC of held-out edges against as many non-edges
    of the same users (the embeddings' dot product, so a user's own ranking of pins counts, not
    its activity). The returned embeddings then propagate over every edge, held-out ones too: the
    holdout measures the embeddings, it should not make them worse.

    A user without organic edges (only ads, or no interactions) has nothing to propagate: its
    embedding is the normalised mean embedding of the users sharing its main interest (an observed
    feature), else of all users with edges — deterministic, and no more specific than what is known.
    """
    from sklearn.metrics import roc_auc_score

    from adrel_pipeline.determinism import deterministic

    start = time.perf_counter()
    user_rows = users.select("user_id").with_row_index("row")
    edges = organic_edges(interactions, items).join(user_rows, on="user_id")
    if edges.height == 0:
        raise ValueError("no organic (user, pin) edges: user embeddings need organic interactions")
    item_ids, item_index = np.unique(edges["item_id"].to_numpy(), return_inverse=True)
    num_users, num_items = users.height, len(item_ids)
    user_index = edges["row"].to_numpy().astype(np.int64)
    codes = user_index * num_items + item_index

    rng = np.random.default_rng([spec.seed, 1])
    num_held = round(spec.link_holdout_fraction * len(codes))
    held = np.zeros(len(codes), dtype=bool)
    held[rng.permutation(len(codes))[:num_held]] = True
    pairs = torch.from_numpy(np.stack([user_index, item_index + num_users]))
    train_pairs = pairs[:, ~held]
    adjacency = normalized_adjacency(train_pairs, num_users, num_users + num_items)

    generator = torch.Generator().manual_seed(spec.seed)
    history: dict[str, list[float]] = {"epoch": [], "loss": []}
    with torch.random.fork_rng(), deterministic(), flush_denormal():
        torch.manual_seed(spec.seed)
        model = LightGCN(num_users + num_items, spec.embedding_dim, spec.embedding_layers)
        optimizer = torch.optim.Adam(model.parameters(), lr=spec.embedding_lr)
        src, dst = train_pairs
        negatives = _negative_table(dst - num_users, num_items, spec.embedding_negative_exponent) + num_users
        for epoch in range(1, spec.embedding_epochs + 1):
            neg = negatives[torch.randint(negatives.numel(), (src.numel(),), generator=generator)]
            out = propagate(model, adjacency)
            # BPR: log sigmoid(x_u . x_i - x_u . x_j), x_u gathered once.
            margin = (out.index_select(0, src) * (out.index_select(0, dst) - out.index_select(0, neg))).sum(-1)
            loss = (-torch.nn.functional.logsigmoid(margin).mean()
                    + spec.embedding_reg * model.embedding.weight.pow(2).sum(1).mean())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history["epoch"].append(epoch)
            history["loss"].append(loss.item())

        with torch.no_grad():
            out = propagate(model, adjacency)
            link_auc = float("nan")
            if num_held:
                held_users = user_index[held]
                negatives = _non_edges(held_users, num_items, codes, rng)
                u = torch.from_numpy(np.concatenate([held_users, held_users]))
                i = torch.from_numpy(np.concatenate([item_index[held], negatives]) + num_users)
                link_auc = float(roc_auc_score(np.r_[np.ones(num_held), np.zeros(num_held)],
                                               (out[u] * out[i]).sum(-1).numpy()))
            full = normalized_adjacency(pairs, num_users, num_users + num_items)
            embeddings = torch.nn.functional.normalize(propagate(model, full)[:num_users], dim=1)

    has_edges = np.zeros(num_users, dtype=bool)
    has_edges[user_index] = True
    embeddings = _fill_without_edges(embeddings, has_edges, users["main_interest"].to_numpy())
    return EmbeddingResult(
        user_ids=users["user_id"].to_numpy(), embeddings=embeddings.contiguous(), state=model.state_dict(),
        item_ids=item_ids, history=history, link_auc=link_auc, num_edges=len(codes),
        users_without_edges=int((~has_edges).sum()), seconds=time.perf_counter() - start)


def _fill_without_edges(embeddings: torch.Tensor, has_edges: np.ndarray, group: np.ndarray) -> torch.Tensor:
    """Rows without edges := the normalised mean of their group's rows with edges (else of all such rows)."""
    missing = ~has_edges
    if not missing.any():
        return embeddings
    embeddings = embeddings.clone()
    codes, inverse = np.unique(group, return_inverse=True)
    sums = torch.zeros(len(codes), embeddings.shape[1]).index_add_(
        0, torch.from_numpy(inverse[has_edges]), embeddings[torch.from_numpy(has_edges)])
    overall = embeddings[torch.from_numpy(has_edges)].sum(0)
    fill = torch.where(sums.norm(dim=1, keepdim=True) > 0, sums, overall)
    embeddings[torch.from_numpy(missing)] = torch.nn.functional.normalize(fill, dim=1)[torch.from_numpy(inverse[missing])]
    return embeddings


def linear_probe_r2(features, target, seed: int, folds: int = 5) -> float:
    """Cross-validated R² of a ridge regression from ``features`` to the (multi-output) ``target``.

    ``folds``-fold out-of-fold predictions of standardised features, the ridge penalty chosen
    inside each training fold (efficient leave-one-out); R² pools the outputs by their variance.
    How much of the latent taste a linear read-out recovers: high for embeddings that learned it
    from behaviour, low for the raw demographic and category features that do not carry it.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 7)))
    predicted = cross_val_predict(model, x, y, cv=KFold(folds, shuffle=True, random_state=seed % 2**32))
    return float(r2_score(y, predicted, multioutput="variance_weighted"))

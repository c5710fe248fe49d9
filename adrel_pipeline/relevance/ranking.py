"""Rank candidate ads for a user with a trained model (seed cell 26, on real ids), or every ad for a
batch of users at once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch_geometric.data import HeteroData

from adrel_pipeline.determinism import deterministic
from adrel_pipeline.graph.build import AD, USER
from adrel_pipeline.relevance.model import AdRelevanceModel

# Score-matrix cells ranked at once: 16 MB of float32 scores and 32 MB of int64 sort keys.
BLOCK_CELLS = 2**22
_LOW32 = np.int64(0xFFFFFFFF)
_SIGN = np.int32(0x7FFFFFFF)


def _ordered_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> int32 preserving order (negative floats' magnitude bits flipped); an involution,
    so it also maps the ints back to the floats' bits."""
    bits = x.view(np.int32)
    out = (bits >> 31) & _SIGN
    out ^= bits
    return out


class _IdIndex:
    """Rows of original ids in a node table, looked up for whole arrays at once (binary search)."""

    def __init__(self, ids: torch.Tensor, what: str):
        self.ids = ids.numpy().astype(np.int64)
        self.order = np.argsort(self.ids, kind="stable")
        self.sorted = self.ids[self.order]
        self.what = what

    def rows(self, ids) -> np.ndarray:
        wanted = np.asarray(ids, dtype=np.int64).reshape(-1)
        pos = np.searchsorted(self.sorted, wanted).clip(0, max(len(self.sorted) - 1, 0))
        found = self.sorted[pos] == wanted if len(self.sorted) else np.zeros(len(wanted), dtype=bool)
        if not found.all():
            raise KeyError(f"{self.what} not in the trained graph: {wanted[~found][:10].tolist()}")
        return self.order[pos]


class AdRanker:
    """Scores (user, ad) pairs by original ``user_id`` / ``item_id``.

    Embeddings are computed once, over every known interaction in ``graph``; ranking a user's
    candidates is then a gather and a dot product. :meth:`top_ads` and :meth:`rank_ads_batch` rank
    for many users at once through the model's score matrix.
    """

    def __init__(self, model: AdRelevanceModel, graph: HeteroData):
        self.model = model.eval()
        with torch.no_grad(), deterministic():
            self._z = model.embed(graph)
        self._users = _IdIndex(graph[USER].node_id, "user_id")
        self._ads = _IdIndex(graph[AD].node_id, "ad item_id")
        # The ads' embeddings in ascending id order, so a score matrix's column order is the ads' id
        # order: the tie order of the batch rankings.
        self._by_id = self._ad_columns(torch.from_numpy(self._ads.order))

    def _ad_columns(self, rows: torch.Tensor) -> dict:
        """The embeddings with the ads restricted to (and ordered as) ``rows``: what the model's
        ``score_matrix`` reads, scoring only those columns."""
        z = self._z["z"]
        return {"x": {USER: self._z["x"][USER], AD: self._z["x"][AD][rows]},
                "z": None if z is None else {USER: z[USER], AD: z[AD][rows]}}

    @torch.no_grad()
    def score(self, user_ids: Sequence[int], ad_ids: Sequence[int]) -> torch.Tensor:
        """Relevance probabilities for aligned sequences of user ids and ad (item) ids."""
        if len(user_ids) != len(ad_ids):
            raise ValueError(f"user_ids ({len(user_ids)}) and ad_ids ({len(ad_ids)}) differ in length")
        pairs = torch.from_numpy(np.stack([self._users.rows(user_ids), self._ads.rows(ad_ids)]))
        return torch.sigmoid(self.model.decode(self._z, pairs.reshape(2, -1)))

    def rank_ads(self, user_id: int, candidate_ad_ids: Sequence[int]) -> list[tuple[int, float]]:
        """``(ad_id, probability)`` for each candidate, most relevant first (ties by ad id): the
        one-user case of :meth:`rank_ads_batch`, so both order (and score) alike."""
        if len(candidate_ad_ids) == 0:
            return []
        ids, probs = self.rank_ads_batch([user_id], candidate_ad_ids)
        return list(zip(ids[0].tolist(), probs[0].tolist()))

    def top_ads(self, user_ids: Sequence[int], k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Each user's ``k`` most relevant ads (default: every ad), most relevant first, ties by
        ascending ad id: ``(ad_ids, probabilities)``, both ``(len(user_ids), k)`` (int64, float32).

        Vectorised: per block of users, the model's score matrix against every ad, then one sort of
        packed keys (below). Ordered by the score matrix's logit (the probability is monotone in it;
        two logits a float32 probability cannot tell apart keep their order); ties are equal logits,
        e.g. ads whose features and degrees are identical, and go by ascending ad id. The
        probabilities agree with :meth:`score`'s per-pair ones to float32 rounding (the matrix sums
        in another order); so do two calls whose blocks differ (other users or candidates change the
        matrix products' shapes, hence possibly a logit's last bit and the order of two ads within
        it of each other). The same call gives the same result.
        """
        return self._rank(self._users.rows(user_ids), self._by_id, self._ads.sorted, k)

    def rank_ads_batch(self, user_ids: Sequence[int], candidate_ad_ids: Sequence[int],
                       k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`rank_ads` for many users over one candidate list, as :meth:`top_ads` ranks: per
        user the ``k`` (default: all) most relevant candidates and their probabilities, ties by
        ascending ad id (a candidate listed twice appears twice)."""
        candidates = np.asarray(candidate_ad_ids, dtype=np.int64).reshape(-1)
        by_id = np.argsort(candidates, kind="stable")
        columns = self._ad_columns(torch.from_numpy(self._ads.rows(candidates[by_id])))
        return self._rank(self._users.rows(user_ids), columns, candidates[by_id], k)

    @torch.no_grad()
    def _rank(self, user_rows: np.ndarray, columns: dict, column_ids: np.ndarray,
              k: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        n_cols = len(column_ids)
        k = n_cols if k is None else min(int(k), n_cols)
        if k < 0:
            raise ValueError(f"k={k} must be at least 0")
        ids = np.empty((len(user_rows), k), dtype=np.int64)
        probs = np.empty((len(user_rows), k), dtype=np.float32)
        if k == 0:
            return torch.from_numpy(ids), torch.from_numpy(probs)
        # Key = ~(the logit's ordered bits) << 32 | column: distinct per column, so sorting the keys
        # alone orders by score, then by column (the ads' id order), deterministically; numpy's
        # vectorised sort of int64 values runs ~10x faster than an argsort of the scores. Ranked by
        # the logit, not the probability: the sigmoid then runs on the k kept only, and cannot merge
        # distinct logits into ties, nor (a vectorised float32 sigmoid's last bit depends on the
        # element's position in the block) reorder them.
        column = np.arange(n_cols, dtype=np.int64)
        step = max(1, BLOCK_CELLS // n_cols)
        with deterministic():
            for start in range(0, len(user_rows), step):
                block = torch.from_numpy(user_rows[start:start + step])
                logits = self.model.score_matrix(columns, block).add_(0.0).numpy()  # -0.0 -> +0.0
                ordered = _ordered_bits(logits)
                np.invert(ordered, out=ordered)
                key = ordered.astype(np.int64)
                np.left_shift(key, 32, out=key)
                np.bitwise_or(key, column, out=key)
                if k < n_cols:
                    key = np.partition(key, k - 1, axis=1)[:, :k]
                key.sort(axis=1)
                ids[start:start + len(block)] = column_ids[key & _LOW32]
                high = np.invert((key >> 32).astype(np.int32))
                chosen = _ordered_bits(high).view(np.float32).astype(np.float64)
                # In float64, then rounded: one float32 probability per logit, wherever it sits in
                # the block (tanh: no overflow at any logit).
                probs[start:start + len(block)] = 0.5 * (1.0 + np.tanh(0.5 * chosen))
        return torch.from_numpy(ids), torch.from_numpy(probs)

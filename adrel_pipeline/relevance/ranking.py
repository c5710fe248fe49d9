"""Rank candidate ads for a user with a trained model (seed cell 26, on real ids)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch_geometric.data import HeteroData

from adrel_pipeline.determinism import deterministic
from adrel_pipeline.graph.build import AD, USER
from adrel_pipeline.relevance.model import AdRelevanceModel


class AdRanker:
    """Scores (user, ad) pairs by original ``user_id`` / ``item_id``.

    Embeddings are computed once, over every known interaction in ``graph``; ranking a user's
    candidates is then a gather and a dot product.
    """

    def __init__(self, model: AdRelevanceModel, graph: HeteroData):
        self.model = model.eval()
        with torch.no_grad(), deterministic():
            self._z = model.embed(graph)
        self._user_index = {int(i): n for n, i in enumerate(graph[USER].node_id.tolist())}
        self._ad_index = {int(i): n for n, i in enumerate(graph[AD].node_id.tolist())}

    def _indices(self, ids: Iterable[int], index: dict[int, int], what: str) -> list[int]:
        ids = [int(i) for i in ids]
        unknown = [i for i in ids if i not in index]
        if unknown:
            raise KeyError(f"{what} not in the trained graph: {unknown[:10]}")
        return [index[i] for i in ids]

    @torch.no_grad()
    def score(self, user_ids: Sequence[int], ad_ids: Sequence[int]) -> torch.Tensor:
        """Relevance probabilities for aligned sequences of user ids and ad (item) ids."""
        if len(user_ids) != len(ad_ids):
            raise ValueError(f"user_ids ({len(user_ids)}) and ad_ids ({len(ad_ids)}) differ in length")
        pairs = torch.tensor([self._indices(user_ids, self._user_index, "user_id"),
                              self._indices(ad_ids, self._ad_index, "ad item_id")], dtype=torch.long)
        return torch.sigmoid(self.model.decode(self._z, pairs.reshape(2, -1)))

    def rank_ads(self, user_id: int, candidate_ad_ids: Sequence[int]) -> list[tuple[int, float]]:
        """``(ad_id, probability)`` for each candidate, most relevant first (ties by ad id)."""
        candidates = [int(a) for a in candidate_ad_ids]
        if not candidates:
            return []
        probs = self.score([user_id] * len(candidates), candidates).tolist()
        return sorted(zip(candidates, probs), key=lambda p: (-p[1], p[0]))

"""Uniform neighbour sampling over a message-passing graph, with torch ops only.

PyG's ``NeighborLoader``/``LinkNeighborLoader`` need ``pyg-lib`` or ``torch-sparse``, which cannot be
installed here; this is the part of them that mini-batch training needs (issue 15):

* :class:`CSR`: one edge type's edges grouped by destination (``argsort`` + ``bincount``/``cumsum``),
  built once per message-passing graph;
* :func:`sample_neighbours`: for every seed, ``min(fanout, degree)`` distinct incoming neighbours drawn
  uniformly without replacement, vectorised over seeds (a random key per edge slot, then each row's
  ``fanout`` smallest keys: every subset of that size is equally likely);
* :class:`NeighbourSampler`: multi-hop sampling over several edge types with a fan-out per hop,
  returning a :class:`Subgraph` whose local rows map back to global rows.

Edges point from the node that sends a message to the node that receives it (PyG's convention), so
sampling walks edges backwards: a seed's neighbours are its in-neighbours. The relevance model's
receptive field is one hop (users attend over their ads along ``ad -rev_to-> user``; ads embed their
own features), so it samples with one fan-out: ``fanouts=[f]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

EdgeType = tuple[str, str, str]


@dataclass(frozen=True)
class CSR:
    """Incoming edges grouped by destination: row ``v``'s sources are ``col[rowptr[v]:rowptr[v + 1]]``."""

    rowptr: Tensor  # [num_dst + 1]
    col: Tensor     # [num_edges] source of each edge, grouped by destination

    @classmethod
    def from_edge_index(cls, edge_index: Tensor, num_dst: int) -> CSR:
        # Stable, so a row's sources keep the edge list's order (deterministic for any sort kernel).
        order = torch.argsort(edge_index[1], stable=True)
        rowptr = torch.zeros(num_dst + 1, dtype=torch.long)
        rowptr[1:] = torch.cumsum(torch.bincount(edge_index[1], minlength=num_dst), dim=0)
        return cls(rowptr=rowptr, col=edge_index[0, order])

    def degree(self, rows: Tensor | None = None) -> Tensor:
        deg = self.rowptr[1:] - self.rowptr[:-1]
        return deg if rows is None else deg[rows]


def sample_neighbours(csr: CSR, seeds: Tensor, fanout: int,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``min(fanout, degree)`` distinct in-neighbours of every seed, uniformly without replacement
    (``fanout < 0``: all of them). Returns ``(source, seed_position)``: each sampled edge's global
    source node and the position in ``seeds`` of its destination, grouped by seed."""
    start = csr.rowptr[seeds]
    deg = csr.rowptr[seeds + 1] - start
    total = int(deg.sum())
    owner = torch.repeat_interleave(torch.arange(seeds.numel()), deg)  # the seed of each edge slot
    first = torch.cumsum(deg, dim=0) - deg                              # each seed's first slot
    slot = start[owner] + torch.arange(total) - first[owner]
    if 0 <= fanout < (int(deg.max()) if deg.numel() else 0):
        # Random keys, then group by seed keeping the keys' order: each seed's first `fanout` slots
        # are a uniform subset of its edges.
        # float64 keys: ties (which would favour earlier slots) are vanishingly rare.
        order = torch.argsort(torch.rand(total, generator=generator, dtype=torch.float64), stable=True)
        order = order[torch.argsort(owner[order], stable=True)]
        keep = (torch.arange(total) - first[owner[order]]) < fanout
        owner, slot = owner[order][keep], slot[order][keep]
    return csr.col[slot], owner


@dataclass(frozen=True)
class Subgraph:
    """A sampled subgraph. ``nodes[t][i]`` is the global row of local node ``i`` of type ``t``; a
    type's seeds come first, in the order given. ``edge_index`` holds local rows."""

    nodes: dict[str, Tensor]
    edge_index: dict[EdgeType, Tensor]

    def gather(self, x_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """The subgraph's rows of full-graph node features (e.g. with full-graph degrees)."""
        return {t: x[self.nodes[t]] for t, x in x_dict.items() if t in self.nodes}


def _local(nodes: Tensor, global_rows: Tensor) -> Tensor:
    """Positions in ``nodes`` (distinct) of ``global_rows`` (all present in ``nodes``)."""
    sorted_nodes, perm = torch.sort(nodes)
    return perm[torch.searchsorted(sorted_nodes, global_rows)]


class NeighbourSampler:
    """Multi-hop uniform neighbour sampling over the given edge types (see the module docstring).

    The CSRs are built once; :meth:`sample` then costs the sampled neighbourhoods, never the graph.
    """

    def __init__(self, edge_index_dict: dict[EdgeType, Tensor], num_nodes: dict[str, int]):
        self.num_nodes = dict(num_nodes)
        self.csr = {t: CSR.from_edge_index(e, num_nodes[t[2]]) for t, e in edge_index_dict.items()}

    def sample(self, seeds: dict[str, Tensor], fanouts: list[int],
               generator: torch.Generator | None = None) -> Subgraph:
        """Hop ``k`` samples ``fanouts[k]`` in-neighbours (``-1``: all) of the nodes the previous hop
        added (the seeds for hop 0) along every edge type. ``seeds[t]`` must be distinct rows."""
        nodes = {t: torch.empty(0, dtype=torch.long) for t in self.num_nodes}
        nodes |= {t: s.long() for t, s in seeds.items()}
        frontier = dict(nodes)
        edges: dict[EdgeType, list[tuple[Tensor, Tensor]]] = {t: [] for t in self.csr}
        for fanout in fanouts:
            found: dict[str, list[Tensor]] = {t: [] for t in self.num_nodes}
            for edge_type, csr in self.csr.items():
                src_type, _, dst_type = edge_type
                if frontier[dst_type].numel() == 0:
                    continue
                src, pos = sample_neighbours(csr, frontier[dst_type], fanout, generator)
                edges[edge_type].append((src, frontier[dst_type][pos]))
                found[src_type].append(src)
            for t, parts in found.items():
                new = torch.unique(torch.cat(parts)) if parts else torch.empty(0, dtype=torch.long)
                new = new[~torch.isin(new, nodes[t])]
                nodes[t] = torch.cat([nodes[t], new])
                frontier[t] = new
        edge_index = {}
        for (src_type, rel, dst_type), parts in edges.items():
            src = torch.cat([p[0] for p in parts]) if parts else torch.empty(0, dtype=torch.long)
            dst = torch.cat([p[1] for p in parts]) if parts else torch.empty(0, dtype=torch.long)
            edge_index[(src_type, rel, dst_type)] = torch.stack([_local(nodes[src_type], src),
                                                                 _local(nodes[dst_type], dst)])
        return Subgraph(nodes=nodes, edge_index=edge_index)

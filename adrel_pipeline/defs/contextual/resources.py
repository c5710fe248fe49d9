"""The serving funnel's settings as a Dagster resource: a deployment setting shared by every asset
that serves traffic (the day's candidate log, the funnel's metrics, the trend and the experiments),
so the log and the measurements see the same funnel."""

from __future__ import annotations

import dagster as dg
from pydantic import create_model

from adrel_pipeline.contextual.spec import FunnelSpec
from adrel_pipeline.defs.shared.params import spec_fields


class _FunnelBase(dg.ConfigurableResource):
    """How production serves a context after retrieval: the relevance trim (tau), the ranking
    score bid x pCTR x P(relevant)^alpha, and a generalised second-price auction over the slots."""

    def spec(self) -> FunnelSpec:
        """The validated settings; raises ``ContextualConfigError`` naming the bad field and its range."""
        return FunnelSpec(**self.model_dump())

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # A bad setting fails the run before any step writes anything.
        self.spec()


FunnelResource = create_model("FunnelResource", __base__=_FunnelBase, **spec_fields(FunnelSpec))

"""A small contextual world shared by the contextual tests: one day's contexts through the funnel."""

import datetime as dt

import pytest

from adrel_pipeline.contextual.engagement import serving_pctr
from adrel_pipeline.contextual.funnel import candidates as retrieved_candidates
from adrel_pipeline.contextual.funnel import run_funnel
from adrel_pipeline.contextual.spec import FunnelSpec
from adrel_pipeline.world import WorldSpec, generate_items, generate_users
from adrel_pipeline.world.contexts import generate_ad_inventory, generate_contexts
from adrel_pipeline_tests.conftest import SMALL_WORLD

# 2,000 contexts of up to 40 candidates: ~70,000 candidates, 6,000 of them served, in well under a second.
CONTEXT_WORLD = {**SMALL_WORLD, "contexts_per_day": 2000, "candidates_per_context": 40}
DAY = dt.date(2026, 1, 13)
SLOTS = 3
# A trim that drops about a fifth of the candidates with the relevance score below.
FUNNEL = FunnelSpec(slots=SLOTS, trim_threshold=0.2)


def grade_relevance(frame):
    """A relevance score that knows the truth: (true grade - 1) / 4, in (0, 1)."""
    return ((frame["true_grade"] - 1.0) / 4.0).to_numpy()


@pytest.fixture(scope="session")
def ctx_spec() -> WorldSpec:
    return WorldSpec(**CONTEXT_WORLD)


@pytest.fixture(scope="session")
def ctx_tables(ctx_spec):
    """``(users, items, inventory, contexts)`` of DAY."""
    users, items = generate_users(ctx_spec), generate_items(ctx_spec)
    inventory = generate_ad_inventory(ctx_spec, items)
    return users, items, inventory, generate_contexts(ctx_spec, users, items, DAY)


@pytest.fixture(scope="session")
def retrieved(ctx_spec, ctx_tables):
    """Every candidate DAY's retrieval returns, with signals and truth (not yet served)."""
    _, _, inventory, contexts = ctx_tables
    return retrieved_candidates(ctx_spec, contexts, inventory, DAY)


@pytest.fixture(scope="session")
def candidates(ctx_spec, retrieved):
    """Every candidate of DAY through the funnel (FUNNEL, a relevance score that knows the truth):
    some dropped at each stage."""
    return run_funnel(retrieved, serving_pctr(retrieved, None, ctx_spec, DAY).pctr, grade_relevance(retrieved),
                      FUNNEL)

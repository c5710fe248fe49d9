"""What the funnel does to relevance, engagement and revenue, and whether a measured difference is real.

* :func:`funnel_metrics`: on a served funnel (:func:`adrel_pipeline.contextual.funnel.run_funnel`),
  the share of truly relevant candidates (``true_grade >= 3.5``) among the survivors of each
  stage, overall and per ad category, content type and surface; trim rates; the served slate's
  nDCG against the true grade; expected clicks, CTR and revenue per context.
* :class:`Traffic` and :func:`measure`: a pool of contexts with their candidates scored once
  (relevance by each model, the engagement model's mean pCTR), served again and again cheaply
  with fresh request-level randomness, on a chosen set of contexts.
* :func:`compare`: the difference between two arms of contexts, relative (``B / A - 1``), with a
  confidence interval from the per-context values (delta method on the log of a ratio of sums),
  paired when both arms served the same contexts, unpaired otherwise.
* :func:`aa_test`: the same treatment against itself ``repeats`` times, with the seed's variance
  controls (a fixed query set with fixed user contexts, both arms on it) or without (each arm a
  freshly sampled set): the spread of the relative differences and how often the interval covers 0;
  :func:`ab_test`: two treatments on one fixed query set, paired.
* :func:`sweep`: revenue against relevance over the ranking's alpha and the trim's tau;
  :func:`overconfident`: the planted miscalibration of the swap test; :func:`fixed_query_set`: the
  trend's contexts, the same every day.

numpy and polars only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist

import numpy as np
import polars as pl

from adrel_pipeline.contextual.engagement import request_noise
from adrel_pipeline.contextual.funnel import (
    DROP_STAGES,
    SURVIVOR_STAGES,
    Served,
    context_groups,
    position_in_group,
    serve,
)
from adrel_pipeline.contextual.spec import FunnelSpec
from adrel_pipeline.world.contexts import RELEVANT_GRADE, generate_contexts
from adrel_pipeline.world.spec import WorldSpec

# The trend's fixed query set is drawn once, from the stream of a day before any day of traffic.
TREND_DRAW_DAY = dt.date(2025, 12, 31)

_SURVIVES = {
    "retrieval": pl.lit(True),
    "trim": pl.col("dropped_at").is_null() | (pl.col("dropped_at") != "trim"),
    "ranking": pl.col("dropped_at").is_null() | (pl.col("dropped_at") == "auction"),
    "auction_winners": pl.col("dropped_at").is_null(),
}
# Per-context values of each measured metric: (numerator, denominator) summed over contexts.
METRICS: tuple[str, ...] = ("fraction_relevant", "ndcg", "ctr", "clicks", "revenue", "trim_rate")


def survivors(stage: str) -> pl.Expr:
    """True for the candidates that passed ``stage`` (one of :data:`SURVIVOR_STAGES`)."""
    return _SURVIVES[stage]


def fraction_relevant(frame: pl.DataFrame, by: str | None = None) -> pl.DataFrame:
    """The truly relevant share of each stage's survivors: one row (or one per ``by`` value), a
    column per stage (null where a stage kept nothing)."""
    relevant = pl.col("true_grade") >= RELEVANT_GRADE
    aggs = [relevant.filter(survivors(s)).mean().alias(s) for s in SURVIVOR_STAGES]
    if by is None:
        return frame.select(aggs)
    return frame.group_by(by).agg(aggs).sort(by)


def ideal_dcg(groups: np.ndarray, grade: np.ndarray, slots: int) -> np.ndarray:
    """Per context (``groups`` 0..n-1, rows grouped by context): the DCG of its best ``slots``
    candidates by true grade (gain ``grade - 1``, discounted by ``log2(position + 2)``)."""
    groups, gain = np.asarray(groups), np.asarray(grade, dtype=np.float64) - 1.0
    order = np.lexsort((-gain, groups))
    position = position_in_group(groups[order])
    top = position < slots
    return np.bincount(groups[order][top], gain[order][top] / np.log2(position[top] + 2.0),
                       minlength=int(groups.max()) + 1 if len(groups) else 0)


def slate_ndcg(groups: np.ndarray, grade: np.ndarray, slot: np.ndarray, ideal: np.ndarray) -> np.ndarray:
    """Per context: the DCG of the served slate (a winner in slot ``s`` gains ``grade - 1``
    discounted by ``log2(s + 2)``; ``slot`` is -1 for the rest) over the context's ``ideal`` DCG
    (:func:`ideal_dcg`); NaN where the ideal is 0 (nothing relevant to serve)."""
    won = slot >= 0
    dcg = np.bincount(groups[won], (np.asarray(grade)[won] - 1.0) / np.log2(slot[won] + 2.0), minlength=len(ideal))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ideal > 0, dcg / ideal, np.nan)


def _per_context(groups: np.ndarray, served: Served, grade: np.ndarray, ideal: np.ndarray
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(numerator, denominator) per context of each metric in :data:`METRICS`."""
    won, n_groups = served.won, len(ideal)
    count = lambda weights: np.bincount(groups, weights, minlength=n_groups)
    impressions = count(won.astype(np.float64))
    clicks = count(served.expected_clicks)
    ndcg = slate_ndcg(groups, grade, served.slot, ideal)
    ones = np.ones(n_groups)
    return {
        "fraction_relevant": (count((won & (grade >= RELEVANT_GRADE)).astype(np.float64)), impressions),
        "ctr": (clicks, impressions),
        "revenue": (count(served.revenue), ones),
        "clicks": (clicks, ones),
        "ndcg": (np.nan_to_num(ndcg), (~np.isnan(ndcg)).astype(np.float64)),
        "trim_rate": (count((served.dropped_at == DROP_STAGES.index("trim")).astype(np.float64)),
                      count(np.ones(len(groups)))),
    }


def ratio(values: tuple[np.ndarray, np.ndarray]) -> float:
    numerator, denominator = values
    return float(numerator.sum() / denominator.sum()) if denominator.sum() else float("nan")


def funnel_metrics(frame: pl.DataFrame, spec: FunnelSpec) -> dict[str, float]:
    """The served funnel's metrics (see the module): ``fraction_relevant/<stage>`` and
    ``.../<ad category>``, ``fraction_relevant_by_content_type/<stage>/<type>``,
    ``fraction_relevant_by_surface/<stage>/<surface>``; ``trim_rate`` (and
    ``trim_rate/<surface>/<content type>``); ``ndcg`` of the served slates, ``ctr``,
    ``clicks_per_context``, ``revenue_per_context``, ``served_per_context``; ``contexts``,
    ``candidates``."""
    out: dict[str, float] = {}
    overall = fraction_relevant(frame).row(0, named=True)
    out |= {f"fraction_relevant/{s}": _float(v) for s, v in overall.items()}
    for column, prefix in (("ad_category", "fraction_relevant"), ("content_type", "fraction_relevant_by_content_type"),
                           ("surface", "fraction_relevant_by_surface")):
        for row in fraction_relevant(frame, column).iter_rows(named=True):
            out |= {f"{prefix}/{s}/{row[column]}": _float(row[s]) for s in SURVIVOR_STAGES}
    out |= trim_rates(frame)
    groups = context_groups(frame["context_id"].to_numpy())
    slot = frame["slot"].fill_null(-1).to_numpy().astype(np.int64)
    price = frame["price"].fill_null(np.nan).to_numpy()
    clicks = frame["expected_clicks"].fill_null(0.0).to_numpy()
    dropped = frame["dropped_at"].replace_strict({s: i for i, s in enumerate(DROP_STAGES)}, default=-1,
                                                 return_dtype=pl.Int8).fill_null(-1).to_numpy()
    served = Served(frame["rank_score"].to_numpy(), dropped, slot, price, clicks)
    grade = frame["true_grade"].to_numpy()
    ideal = ideal_dcg(groups, grade, spec.slots)
    n_groups = len(ideal)
    values = _per_context(groups, served, grade, ideal)
    out |= {"ndcg": ratio(values["ndcg"]), "ctr": ratio(values["ctr"]),
            "clicks_per_context": ratio(values["clicks"]), "revenue_per_context": ratio(values["revenue"]),
            "served_per_context": float(values["fraction_relevant"][1].mean()) if n_groups else float("nan"),
            "contexts": float(n_groups), "candidates": float(frame.height)}
    return out


def trim_rates(frame: pl.DataFrame) -> dict[str, float]:
    """``trim_rate``: the share of retrieved candidates the trim dropped; ``trim_rate/<surface>/<content type>``."""
    trimmed = (pl.col("dropped_at") == "trim").fill_null(False)
    out = {"trim_rate": float(frame.select(trimmed.mean()).item())}
    for row in frame.group_by("surface", "content_type").agg(trimmed.mean().alias("rate")).iter_rows(named=True):
        out[f"trim_rate/{row['surface']}/{row['content_type']}"] = float(row["rate"])
    return out


def _float(value) -> float:
    return float("nan") if value is None else float(value)


@dataclass
class Traffic:
    """A pool of contexts and their candidates (rows grouped by context), scored once: the
    engagement model's mean pCTR and each relevance model's P(relevant); served by :func:`measure`."""

    groups: np.ndarray  # context index 0..contexts-1 of each row
    bid: np.ndarray
    base_pctr: np.ndarray
    click_probability: np.ndarray
    grade: np.ndarray
    relevance: dict[str, np.ndarray] = field(default_factory=dict)
    _ideal: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # slots -> ideal DCG per context

    @classmethod
    def of(cls, cands: pl.DataFrame, base_pctr: np.ndarray, relevance: Mapping[str, np.ndarray]) -> Traffic:
        return cls(context_groups(cands["context_id"].to_numpy()), cands["bid"].to_numpy(), np.asarray(base_pctr),
                   cands["click_probability"].to_numpy(), cands["true_grade"].to_numpy(), dict(relevance))

    @property
    def contexts(self) -> int:
        return int(self.groups.max()) + 1 if len(self.groups) else 0

    def ideal(self, slots: int) -> np.ndarray:
        """The ideal DCG of ``slots`` slots of every context of the pool (computed once)."""
        if slots not in self._ideal:
            self._ideal[slots] = ideal_dcg(self.groups, self.grade, slots)
        return self._ideal[slots]

    def rows_of(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows of the given contexts (indices into the pool), context by context, and each
        row's context as its position in ``contexts``."""
        starts = np.searchsorted(self.groups, contexts, side="left")
        lengths = np.searchsorted(self.groups, contexts, side="right") - starts
        before = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        rows = np.arange(lengths.sum()) + np.repeat(starts - before, lengths)
        return rows, np.repeat(np.arange(len(contexts)), lengths)


@dataclass(frozen=True)
class Arm:
    """A treatment: which relevance model (None: the zero-relevance holdout) and funnel settings."""

    model: str | None
    spec: FunnelSpec
    transform: Callable[[np.ndarray], np.ndarray] | None = None  # applied to the model's scores


def measure(traffic: Traffic, arm: Arm, contexts: np.ndarray, rng: np.random.Generator
            ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Serve ``contexts`` (sorted indices into the pool) under ``arm``, each request with a fresh
    engagement error from ``rng``: per context, (numerator, denominator) of each metric."""
    rows, groups = traffic.rows_of(contexts)
    relevance = None
    if arm.model is not None:
        relevance = traffic.relevance[arm.model][rows]
        if arm.transform is not None:
            relevance = arm.transform(relevance)
    pctr = traffic.base_pctr[rows] * request_noise(len(rows), rng)
    served = serve(groups, traffic.bid[rows], pctr, relevance, traffic.click_probability[rows], arm.spec)
    return _per_context(groups, served, traffic.grade[rows], traffic.ideal(arm.spec.slots)[contexts])


@dataclass(frozen=True)
class Difference:
    """B against A on one metric: the values, ``B / A - 1`` and its confidence interval."""

    metric: str
    a: float
    b: float
    relative: float
    low: float
    high: float
    paired: bool

    @property
    def covers_zero(self) -> bool:
        return self.low <= 0.0 <= self.high

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}/{self.metric}/a": self.a, f"{prefix}/{self.metric}/b": self.b,
                f"{prefix}/{self.metric}/relative": self.relative, f"{prefix}/{self.metric}/low": self.low,
                f"{prefix}/{self.metric}/high": self.high}


def _log_ratio_terms(values: tuple[np.ndarray, np.ndarray]) -> tuple[float, np.ndarray]:
    """The log of a ratio of sums and each context's linearised contribution to it (delta method);
    NaN for a ratio of 0 (no relative difference from nothing)."""
    numerator, denominator = values
    r = numerator.sum() / denominator.sum() if denominator.sum() else 0.0
    if not r > 0:
        return float("nan"), np.full(len(numerator), np.nan)
    terms = (numerator - r * denominator) / (r * denominator.mean())
    return float(np.log(r)), terms


def compare(a: Mapping[str, tuple[np.ndarray, np.ndarray]], b: Mapping[str, tuple[np.ndarray, np.ndarray]],
            metric: str, confidence: float, paired: bool) -> Difference:
    """``B / A - 1`` of ``metric`` (a ratio of per-context sums) with its ``confidence`` interval:
    on the log scale, from the linearised per-context terms (their differences when ``paired``:
    both arms served the same contexts, row for row), mapped back by ``exp(.) - 1``."""
    log_a, terms_a = _log_ratio_terms(a[metric])
    log_b, terms_b = _log_ratio_terms(b[metric])
    if paired:
        d = terms_b - terms_a
        se = float(d.std(ddof=1) / np.sqrt(len(d)))
    else:
        se = float(np.sqrt(terms_a.var(ddof=1) / len(terms_a) + terms_b.var(ddof=1) / len(terms_b)))
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    diff = log_b - log_a
    return Difference(metric, ratio(a[metric]), ratio(b[metric]), float(np.expm1(diff)), float(np.expm1(diff - z * se)),
                      float(np.expm1(diff + z * se)), paired)


def fixed_contexts(traffic: Traffic, n: int, seed: Sequence[int]) -> np.ndarray:
    """A fixed query set: ``n`` contexts of the pool drawn once (sorted indices)."""
    if n > traffic.contexts:
        raise ValueError(f"experiment_contexts={n} is out of range: the pool holds only {traffic.contexts} contexts "
                         "(lower experiment_contexts, or raise contexts_per_day)")
    return np.sort(np.random.default_rng(list(seed)).choice(traffic.contexts, size=n, replace=False))


def ab_test(traffic: Traffic, a: Arm, b: Arm, contexts: np.ndarray, confidence: float, seed: Sequence[int],
            metrics: Sequence[str] | None = None) -> dict[str, Difference]:
    """A against B on the same fixed contexts (paired), each arm with its own request randomness;
    every metric of :data:`METRICS` by default, but the trim rate when A trims nothing (the
    holdout: no relative change from nothing)."""
    if metrics is None:
        metrics = tuple(m for m in METRICS if a.model is not None or m != "trim_rate")
    rng = np.random.default_rng(list(seed))
    ma, mb = measure(traffic, a, contexts, rng), measure(traffic, b, contexts, rng)
    return {m: compare(ma, mb, m, confidence, paired=True) for m in metrics}


@dataclass(frozen=True)
class AAResult:
    """``repeats`` A/A comparisons of one metric, with and without the variance controls."""

    metric: str
    controlled: tuple[Difference, ...]
    uncontrolled: tuple[Difference, ...]
    confidence: float

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {"confidence": self.confidence}
        for name, diffs in (("controlled", self.controlled), ("uncontrolled", self.uncontrolled)):
            rel = np.array([d.relative for d in diffs])
            widths = np.array([d.high - d.low for d in diffs])
            out |= {f"{name}/sd": float(rel.std(ddof=1)), f"{name}/min": float(rel.min()),
                    f"{name}/max": float(rel.max()), f"{name}/p05": float(np.quantile(rel, 0.05)),
                    f"{name}/p95": float(np.quantile(rel, 0.95)),
                    f"{name}/coverage": float(np.mean([d.covers_zero for d in diffs])),
                    f"{name}/mean_interval_width": float(widths.mean())}
        return out


def aa_test(traffic: Traffic, arm: Arm, n_contexts: int, repeats: int, confidence: float, seed: Sequence[int],
            metric: str = "fraction_relevant") -> AAResult:
    """``arm`` against itself ``repeats`` times. Controlled: both arms serve one fixed query set
    (fixed user contexts), only the request randomness is fresh; uncontrolled: each arm serves its
    own freshly sampled ``n_contexts`` contexts as well."""
    fixed = fixed_contexts(traffic, n_contexts, (*seed, 0))
    rng = np.random.default_rng([*seed, 1])
    controlled, uncontrolled = [], []
    for _ in range(repeats):
        first, second = measure(traffic, arm, fixed, rng), measure(traffic, arm, fixed, rng)
        controlled.append(compare(first, second, metric, confidence, paired=True))
        fresh = [np.sort(rng.choice(traffic.contexts, size=n_contexts, replace=False)) for _ in range(2)]
        first, second = measure(traffic, arm, fresh[0], rng), measure(traffic, arm, fresh[1], rng)
        uncontrolled.append(compare(first, second, metric, confidence, paired=False))
    return AAResult(metric, tuple(controlled), tuple(uncontrolled), confidence)


def overconfident(p: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """A model's scores pushed away from 1/2 (``sigmoid(factor x logit(p))``): the same order of
    ads, the calibration broken. The planted miscalibration of the swap test."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1 - 1e-9)
    return 1.0 / (1.0 + np.exp(-factor * np.log(p / (1 - p))))


SWEEP_ALPHAS: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
SWEEP_TAUS: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4)


def sweep(traffic: Traffic, arms: Mapping[str, Arm], contexts: np.ndarray, seed: Sequence[int],
          alphas: Sequence[float] = SWEEP_ALPHAS, taus: Sequence[float] = SWEEP_TAUS) -> pl.DataFrame:
    """Each arm served at every (alpha, tau) on the same contexts and the same request randomness
    (common random numbers: the settings differ by their effect alone): one row per arm and
    setting with its ``fraction_relevant``, ``revenue`` per context, ``ctr``, ``ndcg`` and ``trim_rate``."""
    rows = []
    for name, arm in arms.items():
        for alpha in alphas:
            for tau in taus:
                spec = replace(arm.spec, relevance_exponent=alpha, trim_threshold=tau)
                values = measure(traffic, replace(arm, spec=spec), contexts, np.random.default_rng(list(seed)))
                rows.append({"arm": name, "alpha": alpha, "tau": tau,
                             **{m: ratio(values[m]) for m in ("fraction_relevant", "revenue", "ctr", "ndcg",
                                                              "trim_rate")}})
    return pl.DataFrame(rows)


def fixed_query_set(spec: WorldSpec, users: pl.DataFrame, items: pl.DataFrame, n: int) -> pl.DataFrame:
    """The trend's ``n`` contexts: queries and the users who issue them, drawn once and the same on
    every day (the seed's fixed user contexts); each day retrieves and serves them afresh."""
    return generate_contexts(replace(spec, contexts_per_day=n), users, items, TREND_DRAW_DAY)


# The arms of the calibration swap, beside the production model ("full"): a second fit of equal
# calibration, and the production model's scores miscalibrated.
SWAP_ARMS = {"reseeded (equal calibration)": ("reseeded", None),
             "full, overconfident (miscalibrated)": ("full", overconfident)}


def swap_sweep(traffic: Traffic, spec: FunnelSpec, contexts: np.ndarray, seed: Sequence[int]) -> pl.DataFrame:
    """The production model (``full``) over the whole alpha x tau grid, and the :data:`SWAP_ARMS`
    over alpha at the production tau: where a calibrated swap lands against a miscalibrated one."""
    return pl.concat([
        sweep(traffic, {"full": Arm("full", spec)}, contexts, seed),
        sweep(traffic, {name: Arm(model, spec, transform) for name, (model, transform) in SWAP_ARMS.items()},
              contexts, seed, taus=(spec.trim_threshold,))])


def ab_tests(spec: FunnelSpec) -> dict[str, tuple[Arm, Arm]]:
    """The day's A/B tests, ``name: (A, B)`` (read as B / A - 1): the category-match launch (the
    legacy feature set -> the full model), the swap to a second model of equal calibration, the
    swap to a miscalibrated copy, and production against the zero-relevance holdout."""
    production = Arm("full", spec)
    return {"category_match_launch": (Arm("no_category_match", spec), production),
            "swap_equal_calibration": (production, Arm("reseeded", spec)),
            "swap_miscalibrated": (production, Arm("full", spec, overconfident)),
            "production_vs_holdout": (Arm(None, spec), production)}

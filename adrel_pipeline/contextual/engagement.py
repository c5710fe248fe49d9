"""pCTR, the engagement part of the ranking score, for each candidate of a funnel.

* **The engagement model** (every surface but home, and home when no GAT is available): the
  pair's click probability times a mean-one log-normal error, ``exp(sigma e - sigma^2 / 2)`` with
  ``sigma = PCTR_NOISE``: unbiased (calibrated), and noisy. The error is drawn per request, so a
  measurement repeated with fresh randomness sees fresh errors (the platform variance that the
  A/A tests measure).
* **Home** (a user's feed, where the user is the whole context): the relevance pipeline's champion
  GAT scores (user, ad). Its output is the probability that the user interacts with the ad within
  a week, not the click probability of an impression, so it is calibrated to clicks first: a
  logistic regression of a click on the GAT's logit and the content type, fitted on a share of
  the day's home candidates shown as exploration traffic (clicks drawn from the world's click
  model). The same per-request error follows.

numpy and scikit-learn; the GAT arrives as a plain function of (user ids, ad ids).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from adrel_pipeline.world.contexts import CONTENT_TYPES
from adrel_pipeline.world.spec import WorldSpec

PCTR_NOISE = 0.3  # log-normal error of the engagement model's pCTR, per request
EXPLORATION_RATE = 0.1  # share of the day's home candidates whose clicks calibrate the GAT
_EPS = 1e-6
_STREAM_ENGAGEMENT = 32

GatScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def request_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """A mean-one log-normal multiplier per request."""
    return np.exp(PCTR_NOISE * rng.standard_normal(n) - PCTR_NOISE**2 / 2)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _design(gat: np.ndarray, content_type: np.ndarray) -> np.ndarray:
    onehot = (content_type[:, None] == np.asarray(CONTENT_TYPES)[None, :]).astype(np.float64)
    return np.column_stack([_logit(gat), onehot[:, 1:]])


@dataclass(frozen=True)
class HomeCalibration:
    """The logistic map from the GAT's score (and content type) to P(click) on home."""

    intercept: float
    coefficients: tuple[float, ...]  # GAT logit, then each content type but the first
    rows: int  # exploration impressions it was fitted on
    clicks: int

    def predict(self, gat: np.ndarray, content_type: np.ndarray) -> np.ndarray:
        z = self.intercept + _design(gat, content_type) @ np.asarray(self.coefficients)
        return 1.0 / (1.0 + np.exp(-z))


def fit_home_calibration(gat: np.ndarray, content_type: np.ndarray, click_probability: np.ndarray,
                         rng: np.random.Generator, rate: float = EXPLORATION_RATE) -> HomeCalibration:
    """Fit :class:`HomeCalibration` on a ``rate`` share of the rows, each shown once with a click
    drawn from its click probability."""
    from sklearn.linear_model import LogisticRegression

    shown = rng.random(len(gat)) < rate
    clicks = rng.random(int(shown.sum())) < click_probability[shown]
    if clicks.all() or not clicks.any():
        raise ValueError(f"the home exploration sample holds {int(shown.sum())} impressions and {int(clicks.sum())} "
                         "clicks: too few to calibrate the GAT (more contexts_per_day)")
    fit = LogisticRegression(C=1e4, max_iter=1000).fit(_design(gat[shown], content_type[shown]), clicks)
    return HomeCalibration(float(fit.intercept_[0]), tuple(float(c) for c in fit.coef_[0]), int(shown.sum()),
                           int(clicks.sum()))


def base_pctr(cands: pl.DataFrame, gat: GatScorer | None, rng: np.random.Generator
              ) -> tuple[np.ndarray, HomeCalibration | None]:
    """The engagement model's mean pCTR of each candidate before the request error: the click
    probability, except on home with a GAT (the calibrated GAT score). With the calibration used."""
    ctr = cands["click_probability"].to_numpy()
    if gat is None:
        return ctr, None
    home = (cands["surface"] == "home").to_numpy()
    if not home.any():
        return ctr, None
    content = cands["content_type"].to_numpy()[home]
    scores = np.asarray(gat(cands["user_id"].to_numpy()[home], cands["ad_id"].to_numpy()[home]), dtype=np.float64)
    calibration = fit_home_calibration(scores, content, ctr[home], rng)
    out = ctr.copy()
    out[home] = calibration.predict(scores, content)
    return out, calibration


@dataclass(frozen=True)
class Engagement:
    """The pCTR of a day's candidates: its mean (before the request errors) and as served."""

    base: np.ndarray
    pctr: np.ndarray
    calibration: HomeCalibration | None  # the GAT's map to clicks on home, when a GAT was used


def serving_pctr(cands: pl.DataFrame, gat: GatScorer | None, spec: WorldSpec, day: dt.date) -> Engagement:
    """:func:`base_pctr` and the day's request errors, from streams keyed by (world seed, day):
    the same candidates served twice on one day (the log, the funnel's metrics) get the same pCTR."""
    base, calibration = base_pctr(cands, gat, spec.rng(_STREAM_ENGAGEMENT, day.toordinal(), 0))
    return Engagement(base, base * request_noise(len(base), spec.rng(_STREAM_ENGAGEMENT, day.toordinal(), 1)),
                      calibration)

"""pCTR: the engagement model's unbiased noisy click probability, and the GAT mapped to clicks on home."""

import numpy as np
import polars as pl
import pytest

from adrel_pipeline.contextual.engagement import PCTR_NOISE, base_pctr, fit_home_calibration, serving_pctr
from adrel_pipeline.world.contexts import CONTENT_TYPES
from adrel_pipeline_tests.contextual.conftest import DAY


def test_pctr_is_an_unbiased_noisy_click_probability(ctx_spec, retrieved):
    pctr = serving_pctr(retrieved, None, ctx_spec, DAY)
    assert pctr.calibration is None
    np.testing.assert_array_equal(pctr.base, retrieved["click_probability"].to_numpy())
    ratio = pctr.pctr / pctr.base
    # log-normal with mean 1 (the -sigma^2/2 shift): sd sqrt(exp(sigma^2) - 1).
    sd = np.sqrt(np.exp(PCTR_NOISE**2) - 1)
    assert abs(ratio.mean() - 1) < 5 * sd / np.sqrt(len(ratio))
    assert np.log(ratio).std() == pytest.approx(PCTR_NOISE, rel=0.05)
    # The day's requests draw the same errors every time; another day draws others.
    np.testing.assert_array_equal(serving_pctr(retrieved, None, ctx_spec, DAY).pctr, pctr.pctr)
    other = serving_pctr(retrieved, None, ctx_spec, DAY.replace(day=DAY.day + 1))
    assert not np.array_equal(other.pctr, pctr.pctr)


def _gat_from(table: pl.DataFrame, score):
    """A stand-in GAT: a function of (user ids, ad ids) that looks each pair's score up in ``table``
    (a pair in several contexts gets one of their scores)."""
    lookup = dict(zip(zip(table["user_id"].to_list(), table["ad_id"].to_list()), score))

    def gat(users, ads):
        return np.array([lookup[(u, a)] for u, a in zip(users.tolist(), ads.tolist())])

    return gat


def _close_to_rate(predicted: np.ndarray, ctr: np.ndarray, sds: float = 4.0) -> bool:
    """The mean prediction is within ``sds`` binomial standard errors of the mean click probability
    (a logistic fit with a term per content type matches the clicks it saw in each, exactly)."""
    p = ctr.mean()
    return abs(predicted.mean() - p) <= sds * np.sqrt(p * (1 - p) / len(ctr))


def test_a_gat_on_home_is_mapped_to_clicks_and_other_surfaces_keep_the_engagement_model(ctx_spec, retrieved):
    ctr = retrieved["click_probability"].to_numpy()
    home = (retrieved["surface"] == "home").to_numpy()
    # A GAT whose score ranks clicks perfectly but on another scale (P(interaction) is not P(click)).
    gat = _gat_from(retrieved, 1 / (1 + np.exp(-(3 * np.log(ctr / (1 - ctr)) + 8))))
    pctr = serving_pctr(retrieved, gat, ctx_spec, DAY)
    # What the GAT says of each pair (one score per user and ad, whatever the context).
    score = gat(retrieved["user_id"].to_numpy(), retrieved["ad_id"].to_numpy())
    np.testing.assert_array_equal(pctr.base[~home], ctr[~home])
    # Fitted on the exploration share of home's candidates, with their clicks.
    assert pctr.calibration.rows == pytest.approx(0.1 * home.sum(), rel=0.1) and pctr.calibration.clicks > 0
    assert not np.allclose(pctr.base[home], score[home])  # mapped, not the GAT's own scale
    # Within a content type the map is increasing in the GAT's score: it keeps the GAT's order.
    content = retrieved["content_type"].to_numpy()
    for c in CONTENT_TYPES:
        rows = home & (content == c)
        assert np.all(np.diff(pctr.base[rows][np.argsort(score[rows], kind="stable")]) >= 0), c


def test_the_home_map_matches_the_click_rate_of_each_content_type(retrieved):
    home = retrieved.filter(pl.col("surface") == "home")
    ctr, content = home["click_probability"].to_numpy(), home["content_type"].to_numpy()
    score = 1 / (1 + np.exp(-(3 * np.log(ctr / (1 - ctr)) + 8)))
    calibration = fit_home_calibration(score, content, ctr, np.random.default_rng(0), rate=1.0)
    predicted = calibration.predict(score, content)
    for c in CONTENT_TYPES:
        assert _close_to_rate(predicted[content == c], ctr[content == c]), c


def test_a_gat_that_knows_nothing_gives_each_content_type_its_mean_click_rate(retrieved):
    rng = np.random.default_rng(0)
    home = retrieved.filter(pl.col("surface") == "home")
    ctr, content = home["click_probability"].to_numpy(), home["content_type"].to_numpy()
    calibration = fit_home_calibration(rng.random(home.height), content, ctr, np.random.default_rng(1), rate=1.0)
    predicted = calibration.predict(rng.random(home.height), content)
    for c in CONTENT_TYPES:
        assert predicted[content == c].std() < 0.2 * predicted[content == c].mean()
        assert _close_to_rate(predicted[content == c], ctr[content == c]), c


def test_too_few_home_clicks_to_calibrate_fail_saying_what_to_raise(retrieved):
    home = retrieved.filter(pl.col("surface") == "home").head(5)
    with pytest.raises(ValueError, match="too few to calibrate the GAT"):
        fit_home_calibration(np.full(5, 0.5), home["content_type"].to_numpy(), np.zeros(5), np.random.default_rng(0))


def test_without_home_contexts_no_gat_is_asked(retrieved):
    no_home = retrieved.filter(pl.col("surface") != "home")
    base, calibration = base_pctr(no_home, lambda *_: pytest.fail("the GAT was asked"), np.random.default_rng(0))
    assert calibration is None
    np.testing.assert_array_equal(base, no_home["click_probability"].to_numpy())

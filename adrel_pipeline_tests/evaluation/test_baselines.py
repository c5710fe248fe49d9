"""The baselines on hand-built graphs and on the small world's split."""


import numpy as np
import torch
from torch_geometric.data import HeteroData

from adrel_pipeline.evaluation.baselines import LogisticBaseline, baseline_scores, pair_features, popularity_scores
from adrel_pipeline.evaluation.metrics import auc
from adrel_pipeline.graph.build import AD, AD_USER, NON_AD, NON_AD_USER, USER, USER_AD, USER_NON_AD
from adrel_pipeline.graph.split import with_message_passing
from adrel_pipeline.relevance.training import train_eval_pairs
from adrel_pipeline.world.spec import AGE_GROUPS, INTERESTS


def tiny_graph() -> HeteroData:
    """Users 0..2 (user 0: 3 ad edges + 2 organic, user 1: 1 ad edge, user 2: none); ad 0 has 1 edge,
    ad 1 has 3."""
    g = HeteroData()
    age = torch.eye(len(AGE_GROUPS))[[0, 1, 3]]
    interest = torch.eye(len(INTERESTS))[[2, 5, 2]]
    g[USER].x = torch.cat([age, interest], dim=1)
    g[AD].x = torch.eye(len(INTERESTS))[[2, 5]]
    g[NON_AD].x = torch.eye(len(INTERESTS))[[0, 0]]
    ua = torch.tensor([[0, 0, 1, 0], [0, 1, 1, 1]])  # (0, 1) twice: a multi-edge still counts
    un = torch.tensor([[0, 0], [0, 1]])
    g[USER_AD].edge_index, g[AD_USER].edge_index = ua, ua.flip(0)
    g[USER_NON_AD].edge_index, g[NON_AD_USER].edge_index = un, un.flip(0)
    return g


def test_popularity_is_user_degree_times_ad_degree():
    g = tiny_graph()
    pairs = torch.tensor([[0, 1, 2, 0], [1, 1, 1, 0]])
    # user degrees 5, 1, 0 (organic edges count); ad degrees 1, 3
    assert popularity_scores(g, pairs).tolist() == [15.0, 3.0, 0.0, 5.0]
    # A user with more edges scores higher on the same ad.
    s = popularity_scores(g, torch.tensor([[0, 1], [1, 1]]))
    assert s[0] > s[1]


def test_pair_features_are_observed_degrees_interest_match_and_age():
    g = tiny_graph()
    features = pair_features(g, torch.tensor([[0, 1, 2], [0, 0, 1]]))
    np.testing.assert_allclose(features[:, 0], np.log1p([5, 1, 0]), rtol=1e-6)
    np.testing.assert_allclose(features[:, 1], np.log1p([1, 1, 3]), rtol=1e-6)
    assert features[:, 2].tolist() == [1.0, 0.0, 0.0]  # interest 2 vs category 2, 5 vs 2, 2 vs 5
    assert features[:, 3:].argmax(axis=1).tolist() == [0, 1, 3]


def test_the_regression_is_fitted_on_the_train_split_alone(split):
    pairs, labels = train_eval_pairs(split["train"], 0)
    fitted = LogisticBaseline.fit(split["train"], pairs, labels)
    # Held-out edges leaking into the val/test graphs change nothing the regression learned from.
    leaky = dict(split)
    for name in ("val", "test"):
        g = split[name]
        pos = g[USER_AD].edge_label_index[:, g[USER_AD].edge_label.bool()]
        leaky[name] = with_message_passing(g, torch.cat([g[USER_AD].edge_index, pos], dim=1))
    again = LogisticBaseline.fit(leaky["train"], pairs, labels)
    np.testing.assert_array_equal(fitted.coef, again.coef)
    # Scores use the degrees of the graph they score on, like the model.
    clean, dirty = baseline_scores(split, pairs, labels), baseline_scores(leaky, pairs, labels)
    assert not np.array_equal(clean["logreg"], dirty["logreg"])


def test_the_regression_learns_the_worlds_signal(split):
    pairs, labels = train_eval_pairs(split["train"], 0)
    scores = baseline_scores(split, pairs, labels)
    test_labels = split["test"][USER_AD].edge_label
    # Degree and interest match are the generator's whole truth: both baselines beat chance, the
    # regression (which also sees the match) beats popularity.
    assert auc(test_labels, scores["popularity"]) > 0.55
    assert auc(test_labels, scores["logreg"]) > auc(test_labels, scores["popularity"])


def test_the_regression_is_scikit_learns_default_logistic_regression(split):
    """The torch fit reaches scikit-learn's optimum (L2, C = 1, unpenalised intercept): the same
    coefficients and the same ranking of the test pairs."""
    from sklearn.linear_model import LogisticRegression

    pairs, labels = train_eval_pairs(split["train"], 0)
    ours = LogisticBaseline.fit(split["train"], pairs, labels)
    reference = LogisticRegression(max_iter=10_000, tol=1e-10).fit(pair_features(split["train"], pairs),
                                                                   labels.numpy().astype(int))
    np.testing.assert_allclose(ours.coef, reference.coef_[0], atol=1e-4)
    np.testing.assert_allclose(ours.intercept, reference.intercept_[0], atol=1e-4)
    test = split["test"]
    test_pairs = test[USER_AD].edge_label_index
    np.testing.assert_allclose(ours.scores(test, test_pairs),
                               reference.predict_proba(pair_features(test, test_pairs))[:, 1], atol=1e-5)
    # A stronger penalty shrinks the coefficients: c is the inverse regularisation strength.
    assert np.abs(LogisticBaseline.fit(split["train"], pairs, labels, c=1e-3).coef).sum() < np.abs(ours.coef).sum()

"""Ranking metrics, ROC curves, the oracle's score matrix and the plots."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_curve as sk_roc_curve
from torch_geometric.data import HeteroData

from adrel_pipeline.evaluation.metrics import auc, oracle_score_matrix, ranking_metrics, roc_curve
from adrel_pipeline.evaluation.plots import learning_curves_png, markdown_image, roc_png
from adrel_pipeline.graph.build import AD, USER, USER_AD
from adrel_pipeline.world import interaction_probability

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def toy(num_users=2, num_ads=5, known=((0, 0),), positives=((0, 1), (1, 2))):
    data = HeteroData()
    data[USER].num_nodes, data[AD].num_nodes = num_users, num_ads
    data[USER_AD].edge_index = torch.tensor(known, dtype=torch.long).T.reshape(2, -1)
    pos = torch.tensor(positives, dtype=torch.long).T
    data[USER_AD].edge_label_index = torch.cat([pos, torch.tensor([[0], [4]])], dim=1)  # one negative
    data[USER_AD].edge_label = torch.tensor([1.0] * pos.shape[1] + [0.0])
    return data


def test_ranking_metrics_of_a_perfect_scorer():
    data = toy()
    perfect = torch.zeros(2, 5)
    perfect[0, 1] = perfect[1, 2] = 1.0
    m = ranking_metrics(data, lambda users: perfect[users], ks=(1, 3))
    assert (m["hits_at_1"], m["hits_at_3"], m["mrr"]) == pytest.approx((1.0, 1.0, 1.0), abs=1e-12)


def test_ranking_filters_known_ads_and_breaks_ties_in_expectation():
    data = toy()
    # Known ad 0 outscores everything for user 0 but is filtered out; the rest tie.
    scores = torch.zeros(2, 5)
    scores[0, 0] = 10.0
    m = ranking_metrics(data, lambda users: scores[users], ks=(1, 2))
    # User 0: ads 1..4 tie (4 candidates); user 1: ads 0..4 tie (5 candidates).
    assert m["hits_at_1"] == pytest.approx((1 / 4 + 1 / 5) / 2)
    assert m["hits_at_2"] == pytest.approx((2 / 4 + 2 / 5) / 2)
    expected_rr = lambda n: sum(1 / r for r in range(1, n + 1)) / n
    assert m["mrr"] == pytest.approx((expected_rr(4) + expected_rr(5)) / 2)


def test_ranking_metrics_in_batches_equal_one_batch(split):
    test = split["test"]
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(test[USER].num_nodes, test[AD].num_nodes, generator=g)
    one = ranking_metrics(test, lambda u: scores[u])
    batched = ranking_metrics(test, lambda u: scores[u], batch_size=7)
    assert one == pytest.approx(batched)
    # Random scores: hits@k is about k over the number of candidates.
    assert one["hits_at_100"] == pytest.approx(100 / test[AD].num_nodes, rel=0.3)


def test_roc_curve_matches_sklearn_and_its_area_is_the_auc():
    rng = np.random.default_rng(1)
    y = rng.random(400) < 0.5
    s = np.round(rng.random(400) + 0.4 * y, 1)
    fpr, tpr = roc_curve(y, s)
    sk_fpr, sk_tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc(y, s), abs=1e-12)


def test_oracle_score_matrix_equals_pairwise_probabilities(spec, world, split):
    users, items, _ = world
    test = split["test"]
    user_index = torch.tensor([0, 5, 17])
    matrix = oracle_score_matrix(spec, users, items, test)(user_index).numpy()
    uu, aa = np.meshgrid(test[USER].node_id[user_index].numpy(), test[AD].node_id.numpy(), indexing="ij")
    np.testing.assert_array_equal(matrix, interaction_probability(spec, users, items, uu.ravel(), aa.ravel())
                                  .reshape(uu.shape))


def test_plots_are_png_and_embed_as_markdown():
    history = {"epoch": [1, 2, 3], "train_loss": [0.7, 0.6, 0.65], "train_auc": [0.6, 0.7, 0.7],
               "val_auc": [0.6, 0.68, 0.66]}
    curves = learning_curves_png(history, best_epoch=2)
    fpr, tpr = roc_curve([0, 1, 0, 1], [0.1, 0.9, 0.4, 0.3])
    roc = roc_png({"model": (fpr, tpr, 0.75)}, title="test")
    assert curves[:8] == PNG_MAGIC and roc[:8] == PNG_MAGIC
    assert curves == learning_curves_png(history, best_epoch=2), "same figure, same bytes"
    md = markdown_image(roc, "ROC")
    assert md.startswith("![ROC](data:image/png;base64,iVBORw0KGgo") and md.endswith(")")

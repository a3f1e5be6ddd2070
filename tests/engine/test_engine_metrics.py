"""Metric formulas against hand-computed values (docs/protocol.md definitions)."""

import math

import pytest
import torch

from crane.engine.metrics import metric_columns, ranking_metrics


def test_hand_computed_user_with_three_held_out_items():
    # ranks 1 and 3 are hits; |T_u| = 3
    hits = torch.tensor([[1, 0, 1, 0, 0]], dtype=torch.bool)
    m = ranking_metrics(hits, torch.tensor([3]), ks=(1, 3, 5))
    idcg3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["recall@1"].item() == pytest.approx(1 / 3)
    assert m["precision@1"].item() == pytest.approx(1.0)
    assert m["ndcg@1"].item() == pytest.approx(1.0)          # IDCG over min(3, 1) = 1 rank
    assert m["map@1"].item() == pytest.approx(1.0)
    assert m["recall@3"].item() == pytest.approx(2 / 3)
    assert m["precision@3"].item() == pytest.approx(2 / 3)
    assert m["ndcg@3"].item() == pytest.approx(1.5 / idcg3)
    assert m["map@3"].item() == pytest.approx((1 + 2 / 3) / 3)
    assert m["recall@5"].item() == pytest.approx(2 / 3)
    assert m["precision@5"].item() == pytest.approx(2 / 5)
    assert m["ndcg@5"].item() == pytest.approx(1.5 / idcg3)
    assert m["map@5"].item() == pytest.approx((1 + 2 / 3) / 3)


def test_hand_computed_late_single_hit_and_capped_denominators():
    hits = torch.tensor([[0, 0, 0, 0, 1],     # |T| = 1, hit at rank 5
                         [1, 1, 0, 0, 0]],    # |T| = 10: MAP and IDCG capped at K
                        dtype=torch.bool)
    m = ranking_metrics(hits, torch.tensor([1, 10]), ks=(2, 5))
    assert m["recall@5"].tolist() == pytest.approx([1.0, 0.2])
    assert m["ndcg@5"][0].item() == pytest.approx(1 / math.log2(6))
    assert m["map@5"][0].item() == pytest.approx(0.2)
    assert m["recall@2"][0].item() == 0.0
    # user 2: two hits in the first two ranks with 10 relevant: perfect at K = 2
    assert m["ndcg@2"][1].item() == pytest.approx(1.0)
    assert m["map@2"][1].item() == pytest.approx(1.0)
    assert m["map@5"][1].item() == pytest.approx(2 / 5)
    idcg5 = sum(1 / math.log2(r + 1) for r in range(1, 6))
    assert m["ndcg@5"][1].item() == pytest.approx((1 + 1 / math.log2(3)) / idcg5)


def test_metric_column_names_are_lower_case_and_complete():
    names = metric_columns()
    assert len(names) == 16 and "recall@20" in names and "map@50" in names
    assert all(n == n.lower() for n in names)


def test_rejects_users_without_held_out_items_and_short_rankings():
    with pytest.raises(ValueError, match="held-out"):
        ranking_metrics(torch.zeros((1, 5), dtype=torch.bool), torch.tensor([0]), ks=(5,))
    with pytest.raises(ValueError, match="K=10"):
        ranking_metrics(torch.zeros((1, 5), dtype=torch.bool), torch.tensor([1]), ks=(10,))

"""Full-ranking evaluation: masking, agreement with a per-user reference, chunking."""

import math

import numpy as np
import pytest
import torch

from crane.data.processed import TEST, TRAIN, VALID, Interactions
from crane.engine.evaluate import FullRankingEvaluator
from crane.models.base import Recommender, TrainData


class FixedScores(Recommender):
    """Scores come from a given matrix (a stand-in model for evaluator tests)."""

    def __init__(self, scores: np.ndarray):
        n_users, n_items = scores.shape
        super().__init__(TrainData(n_users, n_items, np.zeros(0, np.int64),
                                   np.zeros(0, np.int64)), {})
        self.register_buffer("table", torch.as_tensor(scores, dtype=torch.float32))

    def score(self, users):
        return self.table[users]


def random_split(n_users=40, n_items=70, seed=0) -> Interactions:
    rng = np.random.default_rng(seed)
    users, items, split = [], [], []
    for u in range(n_users):
        chosen = rng.choice(n_items, size=rng.integers(3, 15), replace=False)
        parts = rng.integers(0, 3, size=len(chosen))
        parts[0] = TRAIN
        users += [u] * len(chosen); items += chosen.tolist(); split += parts.tolist()
    return Interactions(n_users, n_items, np.array(users), np.array(items),
                        np.array(split, dtype=np.int8))


def reference_metrics(scores, inter: Interactions, which: int, mask_splits, k):
    """A deliberately plain per-user loop, independent of crane.engine.metrics."""
    per_user = {"recall": [], "ndcg": [], "precision": [], "map": []}
    for u in range(inter.n_users):
        truth = set(inter.item[(inter.user == u) & (inter.split == which)].tolist())
        if not truth:
            continue
        masked = set(inter.item[(inter.user == u) & np.isin(inter.split, mask_splits)].tolist())
        candidates = [i for i in np.argsort(-scores[u], kind="stable") if i not in masked][:k]
        hits = [i in truth for i in candidates]
        dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits) if h)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(truth), k)))
        ap = sum(sum(hits[:r + 1]) / (r + 1) for r, h in enumerate(hits) if h)
        per_user["recall"].append(sum(hits) / len(truth))
        per_user["precision"].append(sum(hits) / k)
        per_user["ndcg"].append(dcg / idcg)
        per_user["map"].append(ap / min(len(truth), k))
    return {f"{name}@{k}": float(np.mean(v)) for name, v in per_user.items()}


@pytest.mark.parametrize("which,mask_valid", [(VALID, False), (TEST, False), (TEST, True)])
def test_matches_per_user_reference(which, mask_valid):
    inter = random_split()
    # distinct scores: no ties, so the reference's ordering is the only possible one
    scores = np.random.default_rng(1).permutation(inter.n_users * inter.n_items)
    scores = scores.reshape(inter.n_users, inter.n_items).astype(np.float32)
    evaluator = FullRankingEvaluator.for_split(inter, which, mask_valid_in_test=mask_valid,
                                               batch_size=7)
    result = evaluator.evaluate(FixedScores(scores))
    mask_splits = [TRAIN, VALID] if mask_valid else [TRAIN]
    for k in (5, 10, 20, 50):
        expected = reference_metrics(scores, inter, which, mask_splits, k)
        for name, value in expected.items():
            assert result.metrics[name] == pytest.approx(value, abs=1e-12), name
    frame = result.user_metrics
    assert list(frame.columns[:3]) == ["user_id", "n_train", "n_test"]
    assert frame["n_test"].min() >= 1
    assert frame["recall@20"].mean() == pytest.approx(result.metrics["recall@20"])


def test_training_items_are_never_ranked_and_valid_mask_is_optional():
    inter = random_split(seed=3)
    train = inter.csr(TRAIN)
    valid = inter.csr(VALID)
    # the model prefers exactly the items it must not recommend
    scores = (train.toarray() * 10 + valid.toarray() * 5).astype(np.float32)
    scores += np.random.default_rng(0).random(scores.shape).astype(np.float32)
    model = FixedScores(scores)
    for mask_valid in (False, True):
        evaluator = FullRankingEvaluator.for_split(inter, TEST, mask_valid_in_test=mask_valid)
        result = evaluator.evaluate(model, topk=20)
        top = result.topk
        users = evaluator.users
        assert not train[users[:, None], top].toarray().any()
        valid_ranked = valid[users[:, None], top].toarray().any()
        assert valid_ranked == (not mask_valid)


def test_chunk_size_does_not_change_anything():
    inter = random_split(seed=5)
    scores = np.random.default_rng(2).random((inter.n_users, inter.n_items)).astype(np.float32)
    whole = FullRankingEvaluator.for_split(inter, VALID, batch_size=4096).evaluate(
        FixedScores(scores), topk=10)
    single = FullRankingEvaluator.for_split(inter, VALID, batch_size=1).evaluate(
        FixedScores(scores), topk=10)
    assert whole.metrics == single.metrics
    assert np.array_equal(whole.topk, single.topk)


def test_fewer_items_than_k_counts_missing_ranks_as_misses():
    inter = Interactions(2, 4, np.array([0, 0, 1, 1]), np.array([0, 1, 2, 3]),
                         np.array([0, 2, 0, 2], dtype=np.int8))
    result = FullRankingEvaluator.for_split(inter, TEST).evaluate(
        FixedScores(np.zeros((2, 4), np.float32)))
    assert result.metrics["recall@50"] == 1.0
    assert result.metrics["precision@5"] == pytest.approx(1 / 5)


def test_model_cache_is_not_modified_by_masking():
    inter = random_split(seed=7)
    table = np.random.default_rng(0).random(inter.n_items).astype(np.float32)

    class SharedRow(FixedScores):
        def score(self, users):  # an expanded view of one shared row
            return self.table[0].expand(len(users), -1)

    model = SharedRow(np.tile(table, (inter.n_users, 1)))
    before = model.table.clone()
    FullRankingEvaluator.for_split(inter, TEST).evaluate(model)
    assert torch.equal(model.table, before)


def test_wrong_score_shape_is_reported():
    inter = random_split(seed=8)

    class Broken(FixedScores):
        def score(self, users):
            return self.table[users][:, :-1]

    with pytest.raises(ValueError, match="score returned shape"):
        FullRankingEvaluator.for_split(inter, VALID).evaluate(
            Broken(np.zeros((inter.n_users, inter.n_items), np.float32)))


@pytest.mark.parametrize("threads", [1, 2])
def test_tied_scores_rank_the_lower_item_first(threads):
    inter = random_split(n_users=30, n_items=900, seed=9)
    scores = np.random.default_rng(1).integers(0, 4, (30, 900)).astype(np.float32)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # 2: chunks of 4 users on two threads
    try:
        result = FullRankingEvaluator.for_split(inter, TEST, batch_size=4).evaluate(
            FixedScores(scores), topk=50)
    finally:
        torch.set_num_threads(before)
    train = inter.csr(TRAIN).toarray() > 0
    for row, user in enumerate(result.users):
        masked = np.where(train[user], -np.inf, scores[user]).astype(np.float32)
        expected = np.argsort(-masked, kind="stable")[:50]
        np.testing.assert_array_equal(result.topk[row], expected)

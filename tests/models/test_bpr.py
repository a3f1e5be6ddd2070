"""BPR-MF: MMRec's loss terms, the one-node loss bit for bit against the separate kernels,
scoring in any chunking, and learning the graph's structure."""

from __future__ import annotations

import pytest
import torch

from crane.engine.runner import fit_and_evaluate
from crane.engine.settings import TrainingConfig
from crane.models import get
from crane.ops.gather import gather_rows
from crane.ops.losses import dot_bpr_loss, emb_loss
from crane.synthetic import random_train_data, styled_and_grouped
from tests.models.checks import assert_scores_agree_across_chunks, model_defaults


def build(data, **overrides):
    torch.manual_seed(0)
    return get("bpr")(data, {**model_defaults("bpr"), **overrides})


def test_loss_terms_follow_mmrec():
    model = build(random_train_data(modalities=()), reg_weight=0.5)
    users, pos, neg = torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5])
    terms = model.loss(users, pos, neg)
    u, p, n = (model.user_embedding.weight[users], model.item_embedding.weight[pos],
               model.item_embedding.weight[neg])
    expected_reg = 0.5 * (u.norm() + p.norm() + n.norm()) / 2
    expected_bpr = -torch.log(1e-10 + torch.sigmoid((u * p).sum(1) - (u * n).sum(1))).mean()
    assert torch.allclose(terms["reg"], expected_reg) and torch.allclose(terms["bpr"], expected_bpr)


@pytest.mark.parametrize("zero_users", [False, True], ids=["plain", "zero-user-rows"])
def test_one_node_loss_equals_the_separate_functions_bit_for_bit(zero_users):
    """BPR-MF's loss against gather_rows + dot_bpr_loss + reg * emb_loss: the same loss values
    and table gradients, bitwise, with repeated users and items and (second case) a batch
    whose user rows are all zero (EmbLoss's norm-0 branch)."""
    data = random_train_data(modalities=())
    model = build(data, reg_weight=0.3)
    generator = torch.Generator().manual_seed(3)
    users = torch.randint(data.n_users, (64,), generator=generator)
    pos, neg = (torch.randint(data.n_items, (64,), generator=generator) for _ in range(2))
    if zero_users:
        with torch.no_grad():
            model.user_embedding.weight[users] = 0.0
    terms = model.loss(users, pos, neg)
    (terms["bpr"] + terms["reg"]).backward()
    fused = [terms["bpr"], terms["reg"], model.user_embedding.weight.grad,
             model.item_embedding.weight.grad]

    model.zero_grad()
    user_e = gather_rows(model.user_embedding.weight, users)
    pos_e, neg_e = gather_rows(model.item_embedding.weight, torch.cat([pos, neg])).split(64)
    bpr = dot_bpr_loss(user_e, pos_e, neg_e)
    reg = model.config.reg_weight * emb_loss(user_e, pos_e, neg_e)
    (bpr + reg).backward()
    separate = [bpr, reg, model.user_embedding.weight.grad, model.item_embedding.weight.grad]
    for got, want in zip(fused, separate):
        assert torch.equal(got, want)
    assert fused[2].abs().sum() > 0 and fused[3].abs().sum() > 0


def test_scores_are_dot_products_in_any_chunking():
    model = build(random_train_data(modalities=()))
    assert_scores_agree_across_chunks(model)
    with torch.no_grad():
        expected = model.user_embedding.weight @ model.item_embedding.weight.T
        torch.testing.assert_close(model.score(torch.arange(model.n_users)), expected)


def test_learns_the_graph_structure():
    """Groups that only the interactions reveal: BPR ranks held-out items well above
    popularity."""
    synthetic = styled_and_grouped(cold_share=0.0, modalities=(), seed=1)
    training = TrainingConfig(epochs=40, patience=40, batch_size=256, learning_rate=5e-3)

    def recall(model, hparams):
        return fit_and_evaluate(synthetic.data, synthetic.interactions, model, hparams, 0,
                                training, log=lambda _: None).test["recall@20"]

    assert recall("bpr", model_defaults("bpr")) > 2 * recall("mostpop", {})

"""crane.ops.losses: hand-written backward passes against plain autograd, and BPR-MF's
one-node loss bit for bit against the separate kernels."""

import pytest
import torch
import torch.nn.functional as F

from crane.ops.gather import gather_rows
from crane.ops.losses import (bpr_loss, bpr_mf_loss, dot_bpr_loss, emb_loss,
                              logsigmoid_bpr_loss, reference_bpr_mf_loss,
                              reference_dot_bpr_loss, reference_emb_loss)
from crane.ops.threads import torch_threads


def tables(*shapes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=generator, requires_grad=True) for shape in shapes]


@pytest.mark.parametrize("loss, reference", [(dot_bpr_loss, reference_dot_bpr_loss),
                                             (emb_loss, reference_emb_loss)])
def test_hand_written_backward_equals_autograd(loss, reference):
    ours, theirs = tables((64, 8), (64, 8), (64, 8)), tables((64, 8), (64, 8), (64, 8))
    value, expected = loss(*ours), reference(*theirs)
    assert torch.equal(value, expected)          # the forward is the reference's own ops
    (3.0 * value).backward()
    (3.0 * expected).backward()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def test_bpr_loss_of_scores_is_the_dot_product_form():
    u, p, n = tables((16, 4), (16, 4), (16, 4))
    assert torch.equal(bpr_loss((u * p).sum(1), (u * n).sum(1)), dot_bpr_loss(u, p, n))


def test_logsigmoid_bpr_is_mmrecs_formula():
    u, p, n = tables((16, 4), (16, 4), (16, 4))
    pos_scores, neg_scores = (u * p).sum(1), (u * n).sum(1)
    assert torch.equal(logsigmoid_bpr_loss(u, p, n),
                       -F.logsigmoid(pos_scores - neg_scores).mean())


def test_bpr_backward_with_saturated_scores_stays_finite():
    u, p, n = tables((4, 3), (4, 3), (4, 3))
    with torch.no_grad():
        p.mul_(100.0), n.mul_(-100.0)   # sigmoid -> 1 and -> 0 across the rows
    dot_bpr_loss(u, p, -p).backward()
    assert all(torch.isfinite(t.grad).all() for t in (u, p))


def test_emb_loss_of_a_zero_table_has_zero_gradient():
    zero, other = torch.zeros(5, 4, requires_grad=True), tables((5, 4))[0]
    emb_loss(zero, other).backward()
    assert torch.equal(zero.grad, torch.zeros(5, 4))
    torch.testing.assert_close(other.grad, other.detach() / other.detach().norm() / 5)


def bpr_mf_batch(zero_users: bool):
    generator = torch.Generator().manual_seed(3)
    user_table, item_table = tables((30, 8), (20, 8), seed=4)
    users = torch.randint(30, (64,), generator=generator)          # with repeats
    items = torch.randint(20, (128,), generator=generator)         # positives, negatives
    if zero_users:
        with torch.no_grad():
            user_table[users] = 0.0
    return user_table, item_table, users, items


@pytest.mark.parametrize("zero_users", [False, True], ids=["plain", "zero-user-rows"])
def test_bpr_mf_loss_equals_the_separate_kernels_bit_for_bit(zero_users):
    """The one-node loss against gather_rows + dot_bpr_loss + reg * emb_loss: the same values
    and table gradients, bitwise, with repeated users and items and (second case) user rows
    that are all zero (EmbLoss's norm-0 branch)."""
    user_table, item_table, users, items = bpr_mf_batch(zero_users)
    with torch_threads(1):
        bpr, reg = bpr_mf_loss(user_table, item_table, users, items, 0.3)
        (bpr + reg).backward()
        fused = [bpr, reg, user_table.grad.clone(), item_table.grad.clone()]
        user_table.grad = item_table.grad = None
        user_e = gather_rows(user_table, users)
        pos_e, neg_e = gather_rows(item_table, items).split(64)
        bpr = dot_bpr_loss(user_e, pos_e, neg_e)
        reg = 0.3 * emb_loss(user_e, pos_e, neg_e)
        (bpr + reg).backward()
    separate = [bpr, reg, user_table.grad, item_table.grad]
    for got, want in zip(fused, separate):
        assert torch.equal(got, want)
    assert fused[2].abs().sum() > 0 and fused[3].abs().sum() > 0


def test_bpr_mf_loss_equals_plain_autograd():
    user_table, item_table, users, items = bpr_mf_batch(False)
    bpr, reg = bpr_mf_loss(user_table, item_table, users, items, 0.3)
    (bpr + reg).backward()
    grads = user_table.grad.clone(), item_table.grad.clone()
    user_table.grad = item_table.grad = None
    ref_bpr, ref_reg = reference_bpr_mf_loss(user_table, item_table, users, items, 0.3)
    assert torch.equal(bpr, ref_bpr) and torch.equal(reg, ref_reg)
    (ref_bpr + ref_reg).backward()
    for got, want in zip(grads, (user_table.grad, item_table.grad)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)

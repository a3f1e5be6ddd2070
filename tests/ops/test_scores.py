"""crane.ops.scores.dot_scores: users @ items.T, through numpy's BLAS outside autograd."""

import torch

from crane.ops.scores import dot_scores, reference_dot_scores


def test_dot_scores_equal_torch_matmul_and_keep_autograd():
    users, items = torch.randn(30, 16), torch.randn(50, 16)
    with torch.no_grad():
        torch.testing.assert_close(dot_scores(users, items), reference_dot_scores(users, items))
    users.requires_grad_()
    out = dot_scores(users, items)
    assert out.grad_fn is not None  # with gradients it stays torch's product
    out.sum().backward()
    torch.testing.assert_close(users.grad, items.sum(0).expand(30, -1))

"""Dot-product scores of users against items for full ranking.

`dot_scores(users, items)` = users @ items.T; on CPU outside autograd through numpy's BLAS,
which runs these (users x d) @ (d x items) products faster than torch's here. The two
libraries sum in different orders, so scores may differ in the last bit from
`reference_dot_scores` (tests/ops/test_scores.py).
"""

from __future__ import annotations

import numpy as np
import torch


def dot_scores(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """users @ items.T (with gradients, or off CPU: torch's own product)."""
    needs_grad = torch.is_grad_enabled() and (users.requires_grad or items.requires_grad)
    if (users.device.type != "cpu" or needs_grad or users.dtype != torch.float32
            or items.dtype != torch.float32):
        return users @ items.T
    return torch.from_numpy(np.matmul(users.detach().numpy(), items.detach().numpy().T))


def reference_dot_scores(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    return users @ items.T

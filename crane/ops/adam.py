"""Adam for the engine: torch's fused kernel, called without the per-step bookkeeping.

torch's `Adam.step` spends time in Python on every call (grouping tensors by device and
dtype, capture checks) before its two kernels run. `FusedAdam.step` issues the same two
kernels directly whenever the step is the plain case; anything else (a first step, a missing
gradient, AMP scaling, options without the fused kernel) goes through torch's own `step`.
The update is the same bit for bit, and the state dict is Adam's (tests/ops/test_adam.py).
"""

from __future__ import annotations

from typing import Any

import torch


class FusedAdam(torch.optim.Adam):
    """`torch.optim.Adam(fused=True)` whose plain steps skip torch's per-call bookkeeping."""

    def step(self, closure: Any = None) -> Any:
        if closure is None and self._step_directly():
            return None
        # this method is already wrapped in the optimiser hooks: call Adam's step unwrapped,
        # or the hooks would run twice
        adam_step = torch.optim.Adam.step
        if getattr(adam_step, "hooked", False):
            adam_step = adam_step.__wrapped__
        return adam_step(self, closure)

    def _step_directly(self) -> bool:
        """Run the step as torch's `_fused_adam` would for a single device and dtype, and
        say whether it did; False (nothing done) whenever the step is not that case."""
        if any(getattr(self, name, None) is not None for name in ("grad_scale", "found_inf")):
            return False  # AMP's gradient scaling
        batches = []
        device = dtype = None
        for group in self.param_groups:
            if (not group.get("fused") or group["amsgrad"] or group["capturable"]
                    or group["differentiable"] or not isinstance(group["lr"], float)):
                return False
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for param in group["params"]:
                state = self.state.get(param)
                grad = param.grad
                if grad is None or grad.is_sparse or not state or "step" not in state:
                    return False  # torch's step skips or initialises these
                if device is None:
                    if param.dtype.is_complex:
                        return False  # torch's step views complex tensors as real first
                    device, dtype = param.device, param.dtype
                if (param.device != device or param.dtype != dtype or grad.dtype != dtype
                        or state["step"].device != device):
                    return False
                params.append(param)
                grads.append(grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            batches.append((group, params, grads, exp_avgs, exp_avg_sqs, steps))
        with torch.no_grad():
            for group, params, grads, exp_avgs, exp_avg_sqs, steps in batches:
                if not params:
                    continue
                torch._foreach_add_(steps, 1)
                kernel = (torch._fused_adamw_ if group.get("decoupled_weight_decay")
                          else torch._fused_adam_)
                beta1, beta2 = group["betas"]
                kernel(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                       lr=group["lr"], beta1=float(beta1), beta2=float(beta2),
                       weight_decay=group["weight_decay"], eps=group["eps"],
                       maximize=group["maximize"], grad_scale=None, found_inf=None)
        return True


def make_adam(params: list[torch.nn.Parameter], lr: float,
              weight_decay: float) -> torch.optim.Adam:
    """Adam; the fused kernel (same update, one pass over memory) wherever torch has it."""
    try:
        return FusedAdam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):  # e.g. a device or dtype without the fused kernel
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)

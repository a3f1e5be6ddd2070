"""Hand-written kernels under mixed precision.

A kernel's forward and backward are written for one dtype (they share buffers between the
two passes and between directions). Under autocast (`training.precision: bf16`) a kernel
therefore runs in float32 on float32 copies of its inputs, as autocast itself runs softmax,
sums and losses in float32; the dense products around it (projections, attention) run in
bf16. Outside autocast nothing changes: the kernel gets its inputs as they are.
"""

from __future__ import annotations

from typing import Any

import torch


def _device_type(args: tuple[Any, ...]) -> str | None:
    for arg in args:
        if isinstance(arg, torch.Tensor):
            return arg.device.type
    return None


def apply_in_float32(function: type[torch.autograd.Function], *args: Any) -> Any:
    """`function.apply(*args)`, in float32 with autocast off when autocast is on."""
    device_type = _device_type(args)
    if device_type is None or not torch.is_autocast_enabled(device_type):
        return function.apply(*args)
    args = tuple(arg.float() if isinstance(arg, torch.Tensor) and arg.is_floating_point()
                 else arg for arg in args)
    with torch.autocast(device_type, enabled=False):
        return function.apply(*args)

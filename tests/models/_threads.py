"""One torch thread while tiny test models run."""

from __future__ import annotations

from contextlib import AbstractContextManager

from crane.ops.threads import torch_threads


def one_torch_thread() -> AbstractContextManager[None]:
    """These models are tiny: a second intra-op thread only fights the other test processes
    for the cores, so use one while they run."""
    return torch_threads(1)

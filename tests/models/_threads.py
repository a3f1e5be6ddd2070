"""One torch thread while tiny test models run."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """These models are tiny: a second intra-op thread only fights the other test processes
    on a shared 2-core machine (10x slower epochs measured), so use one while they run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)

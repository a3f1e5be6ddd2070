"""Process-wide settings of a training run: seeds, deterministic CPU kernels, the allocator.

The thread count of a training step is crane.ops.threads' policy (the loop applies it);
nothing here changes a value a run computes, except `seed_everything`, which fixes them.
"""

from __future__ import annotations

import contextlib
import ctypes
import random
from typing import Iterator

import numpy as np
import torch

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
HEAP_BLOCK_BYTES = 32 << 20  # glibc's largest allowed M_MMAP_THRESHOLD on 64-bit


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's global generators, from one seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def keep_freed_memory_for_reuse() -> bool:
    """glibc: serve blocks under 32 MiB from the heap and keep freed heap memory mapped.

    Every batch allocates and frees the same dense gradient tables (zero-filled, then
    scattered into by the embedding backward). By default glibc may return such blocks to
    the kernel and page-fault them in again on the next batch, depending on the heap's
    layout. Values are unaffected. False where the C library has no mallopt (not glibc).
    Tested in tests/engine/test_engine_runtime.py (no page faults for reused tables).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, HEAP_BLOCK_BYTES)
                and mallopt(_M_TRIM_THRESHOLD, 4 * HEAP_BLOCK_BYTES))


@contextlib.contextmanager
def deterministic_cpu_ops(device: torch.device) -> Iterator[None]:
    """On CPU, torch's deterministic algorithms inside the block (restored after).

    Why: on two or more threads the backward of `table[index]` with repeated indices adds
    the rows in whatever order the threads reach them, so gradients differ in the last bits
    from run to run and a seed would not fix a run. In deterministic mode torch adds them in
    index order (the same values as on one thread). The loop applies it to training epochs
    only: the evaluator's masking (`index_put_`) takes a slower sorted path in this mode and
    its results do not depend on it. Not on GPUs: their deterministic kernels cost time and
    cuBLAS needs settings of its own, and the project promises reproducible runs on CPU.
    """
    if device.type != "cpu":
        yield
        return
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)

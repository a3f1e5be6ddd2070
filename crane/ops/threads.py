"""Who uses the run's CPU threads during a training step.

Two kinds of work share a step. Large sparse products (graph propagation) are split by hand
into pieces that run on a small thread pool (scipy releases the GIL). Everything else in an
ID-only model's step is torch work on batch-sized tensors, where torch's own intra-op threads
cost more than they bring.

`batch_ops_on_one_thread()` runs a block with one torch thread while
`sparse_product_threads()` keeps reporting the run's thread budget to the code that splits
products. The policy lives here, not in the model files: `ONE_THREAD_STEP_MODELS` names the
models whose steps run on one torch thread (BPR-MF and LightGCN), and
`training_step_threads` gives the engine the context for a model's step. Models with feature
projections are not listed: their dense products want every thread. tests/ops/test_threads.py.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, ContextManager, Iterator, TypeVar

import torch
from threadpoolctl import ThreadpoolController

T = TypeVar("T")
_PRODUCT_THREADS: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "sparse_product_threads", default=None)


def sparse_product_threads() -> int:
    """Threads that hand-split sparse products may use: the run's budget, even inside
    `batch_ops_on_one_thread()`."""
    budget = _PRODUCT_THREADS.get()
    return budget if budget is not None else torch.get_num_threads()


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op threads at `count` inside the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def batch_ops_on_one_thread() -> Iterator[None]:
    """torch at one intra-op thread inside the block; sparse products keep the budget."""
    token = _PRODUCT_THREADS.set(sparse_product_threads())
    try:
        with torch_threads(1):
            yield
    finally:
        _PRODUCT_THREADS.reset(token)


def run_pair(first: Callable[[], T], second: Callable[[], T]) -> tuple[T, T]:
    """(first(), second()), on two threads when the budget allows (the callables must
    release the GIL to gain: scipy's sparse products do)."""
    if sparse_product_threads() < 2:
        return first(), second()
    future: Future = _helper().submit(first)
    second_result = second()
    return future.result(), second_result


@functools.cache
def _helper() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="sparse-product")


# Models whose training step is torch work on batch-sized tensors plus hand-split sparse
# products: one torch thread runs their steps faster than two.
ONE_THREAD_STEP_MODELS = frozenset({"bpr", "lightgcn"})


def training_step_threads(model_name: str, device: torch.device) -> ContextManager[None]:
    """The thread context a training epoch's steps of `model_name` run in."""
    if model_name in ONE_THREAD_STEP_MODELS and torch.device(device).type == "cpu":
        return batch_ops_on_one_thread()
    return contextlib.nullcontext()


@contextmanager
def single_threaded_kernels() -> Iterator[None]:
    """torch, BLAS and OpenMP at one thread each inside the block (restored after): the
    evaluator runs several such blocks side by side, one per worker."""
    with torch_threads(1), _thread_pools().limit(limits=1):
        yield


@functools.cache
def _thread_pools() -> ThreadpoolController:
    """The loaded BLAS / OpenMP libraries (found once: the scan is not free)."""
    return ThreadpoolController()

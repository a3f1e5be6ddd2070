"""crane.engine.runtime: seeds, deterministic CPU kernels, the allocator setting."""

import random
import resource

import numpy as np
import pytest
import torch

from crane.engine.runtime import (deterministic_cpu_ops, keep_freed_memory_for_reuse,
                                  seed_everything)


def test_one_seed_fixes_python_numpy_and_torch():
    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    seed_everything(3)
    first = draws()
    seed_everything(3)
    assert draws() == first
    seed_everything(4)
    assert draws() != first


def test_deterministic_mode_is_on_inside_the_block_on_cpu_only_and_restored():
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_cpu_ops(torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_cpu_ops(torch.device("cuda")):  # only asks for the device type
        assert not torch.are_deterministic_algorithms_enabled()
    with pytest.raises(KeyError):
        with deterministic_cpu_ops(torch.device("cpu")):
            raise KeyError("inside")
    assert not torch.are_deterministic_algorithms_enabled()


def test_freed_batch_tables_are_reused_without_page_faults():
    if not keep_freed_memory_for_reuse():
        pytest.skip("the C library has no mallopt (not glibc)")

    def batch():  # two gradient-sized tables, freed in the order glibc trims
        big, small = np.ones(2_000_000, np.float32), np.ones(1_000_000, np.float32)
        del big, small

    batch()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        batch()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 50

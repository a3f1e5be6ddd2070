"""crane.ops.threads: the one-thread block keeps the product budget; run_pair's contract."""

import threading

import pytest
import torch

from crane.ops.threads import (batch_ops_on_one_thread, run_pair, sparse_product_threads,
                               torch_threads, training_step_threads)


def test_one_thread_block_keeps_the_budget_for_products():
    with torch_threads(2):
        with batch_ops_on_one_thread():
            assert torch.get_num_threads() == 1
            assert sparse_product_threads() == 2
            names = run_pair(lambda: threading.current_thread().name,
                             lambda: threading.current_thread().name)
            assert names[0] != names[1]          # the pair really ran on two threads
        assert torch.get_num_threads() == 2 and sparse_product_threads() == 2
        torch.set_num_threads(1)
        names = run_pair(lambda: threading.current_thread().name,
                         lambda: threading.current_thread().name)
        assert names[0] == names[1] == threading.current_thread().name


def test_run_pair_returns_results_in_order_and_raises_errors():
    with torch_threads(2):
        assert run_pair(lambda: "first", lambda: "second") == ("first", "second")
        with pytest.raises(ZeroDivisionError):
            run_pair(lambda: 1 / 0, lambda: 2)


def test_only_listed_models_step_on_one_thread_and_only_on_cpu():
    with torch_threads(2):
        with training_step_threads("bpr", torch.device("cpu")):
            assert torch.get_num_threads() == 1
        with training_step_threads("freedom", torch.device("cpu")):
            assert torch.get_num_threads() == 2
        with training_step_threads("bpr", torch.device("cuda")):
            assert torch.get_num_threads() == 2

"""Every model test module runs on one torch thread (tests/models/_threads.py says why)."""

from __future__ import annotations

import pytest

from tests.models._threads import one_torch_thread


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread_per_module():
    with one_torch_thread():
        yield

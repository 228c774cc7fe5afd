"""Shared fixtures."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """These nets are tiny: on a shared 2-core machine a second OpenMP thread only spin-waits (measured 20x more
    CPU). Restored afterwards, so nothing outside the module sees it. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

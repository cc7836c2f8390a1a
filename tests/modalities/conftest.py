"""Shared by the modality tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models on a shared CPU: one torch thread is faster and steadier than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

"""Shared test set-up: deterministic seeds and few threads so the suite runs on 2 cores."""

import pytest
import torch

import mpt_plugin.compat  # noqa: F401  (must precede any basicsr import)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


@pytest.fixture
def one_thread():
    """Tiny networks run faster on one intra-op thread, above all when the 2 cores are shared."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(2)

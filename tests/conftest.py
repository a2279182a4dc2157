"""Shared test set-up: GPU-marked tests are skipped (reported as skipped) where there is no CUDA."""

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _few_threads():
    """The CI box has 2 cores: keep torch from oversubscribing them."""
    torch.set_num_threads(2)
    yield

"""Shared test set-up: GPU-marked tests are skipped (reported as skipped) where there is no CUDA."""

import os

import pytest
import torch

from unified_fixtures import make_assets, tiny_model


def pytest_collection_modifyitems(config, items):
    # Slow tests first (a stable sort: the rest keep their order). Under pytest-xdist the workers
    # take tests in this order, so the long ones start at once instead of one of them starting
    # last and running alone while the other worker idles.
    items.sort(key=lambda item: "slow" not in item.keywords)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# The CI box has 2 cores. Under pytest-xdist (-n 2) each worker gets its share: two workers of 2
# torch threads each would have OpenMP threads waiting on descheduled peers at every parallel op.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, (os.cpu_count() or 2) // WORKERS))
if WORKERS > 1:  # and the scripts the tests start (each a torch of its own) take no more
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep torch from oversubscribing the cores (THREADS)."""
    torch.set_num_threads(THREADS)
    yield


@pytest.fixture(scope="session")
def script_helps(tmp_path_factory):
    """Every entry script's `--help` (help_fixtures.py), computed once for all xdist workers:
    their base temp folders share a parent, which is this session's alone (without xdist the
    parent holds earlier sessions' folders, so the base folder itself is used)."""
    from help_fixtures import script_helps as helps

    base = tmp_path_factory.getbasetemp()
    return helps(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """unified_fixtures.make_assets once per test module: the tiny RDPM tokenizer (T = 10), its
    folder and the vocabulary. tests/model/objectives/ overrides it with a T = 1 tokenizer."""
    return make_assets(tmp_path_factory.mktemp("assets"))


@pytest.fixture(scope="module")
def vocab(assets):
    return assets[3]


@pytest.fixture
def model(assets):
    """A fresh tiny unified model (eval mode) on `assets`."""
    _, tok_dir, tok, vocab, vocab_cfg = assets
    return tiny_model(vocab, vocab_cfg, tok, tok_dir).eval()

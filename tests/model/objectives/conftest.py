"""The T = 1 image tokenizer the next_token and masked tests share (built once per package)."""

import pytest

from unified_fixtures import make_assets


@pytest.fixture(scope="package")
def assets(tmp_path_factory):
    """A T = 1 image tokenizer (plain VQ, K = 64, 8x8 codes) and its vocabulary."""
    return make_assets(tmp_path_factory.mktemp("assets_t1"), code_maps=1)

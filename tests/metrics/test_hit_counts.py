"""The checkers' shared accumulator: rates per key, None for a key never counted, the prompt total."""

import pytest

from unimodal.metrics.hit_counts import HitCounts


class Counts(HitCounts):
    KEYS = ("prompt", "color", "never")
    TOTAL_KEY = "clips"


def test_rates_pool_every_hit_and_name_the_total():
    counts = Counts()
    counts._add("prompt", [True])
    counts._add("prompt", [False])
    counts._add("color", [True, True, False])   # several objects of one prompt pool together
    counts._add("color", [1])
    out = counts.compute()
    assert out == {"prompt": 0.5, "color": pytest.approx(0.75), "never": None, "clips": 2}
    assert HitCounts().compute() == {"images": 0}

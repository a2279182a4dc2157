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


def test_builtin_keys_give_seed_and_index_and_other_keys_none():
    from unimodal.metrics.hit_counts import builtin_spec

    def spec(seed, index):
        return seed, index

    assert builtin_spec("notes-3-00000007", "notes", spec) == (3, 7)
    assert builtin_spec("shapes-0-00000001", "notes", spec) is None
    assert builtin_spec("folder/a.png", "shapes", spec) is None
    assert builtin_spec("shapes-1-2-3", "shapes", spec) is None


class Hits(HitCounts):
    KEYS = ("prompt",)

    def update(self, score, spec):
        self._add("prompt", [score == spec])


def test_update_by_key_scores_only_samples_whose_key_has_a_spec():
    counts = Hits()
    specs = {"a": 1, "b": 2}
    scored = counts.update_by_key([1, 5, 9], ["a", "b", "other"],
                                  lambda key, sample: specs.get(key), lambda sample, spec: sample)
    assert scored == 2 and counts.compute() == {"prompt": 0.5, "images": 2}

"""One source's shards as an endless, resumable stream for one reader
(unimodal/data/shard_reader.py): disjoint shares, a fresh order each epoch, exact resume from the
cursor, and broken shards counted (once) rather than swallowed."""

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mixture_fixtures import CLASSES, code_record, truncate, write_tar
from unimodal.data.image_sources import BadSampleCounter, DataError
from unimodal.data.shard_reader import SourceShardReader, read_whole_shard, sample_keys_in_tar


def small_shards(folder: Path, shards: int, per_shard: int) -> list[str]:
    """shards tars of per_shard samples keyed `shard-index`, each holding its key as txt."""
    paths = []
    for s in range(shards):
        records = [{"__key__": f"{s}-{i:03d}", "txt": f"{s}-{i:03d}".encode()}
                   for i in range(per_shard)]
        paths.append(write_tar(folder / f"s-{s:06d}.tar", records))
    return paths


def reader(paths, unit=0, num_units=1, seed=0, counter=None):
    return SourceShardReader("src", 0, paths, unit=unit, num_units=num_units, seed=seed,
                             counter=counter or BadSampleCounter(max_bad_fraction=1.0))


def keys(r: SourceShardReader, n: int) -> list[str]:
    return [r.next()[1]["__key__"] for _ in range(n)]


@pytest.mark.parametrize("shards,per_shard,units", [(4, 6, 2), (4, 6, 4), (2, 12, 4), (3, 5, 4)])
def test_readers_split_one_epoch_into_a_partition(tmp_path, shards, per_shard, units):
    """Each sample belongs to exactly one of the `units` readers: by shard (shards[unit::units])
    when there are enough shards, else by sample ((i + j) % units == unit within shard j)."""
    paths = small_shards(tmp_path, shards, per_shard)
    seen = []
    for unit in range(units):
        r = reader(paths, unit, units)
        if shards >= units:
            assert r.shards == paths[unit::units]
            share = sum(per_shard for _ in paths[unit::units])
        else:
            share = sum((i + j) % units == unit for j in range(shards) for i in range(per_shard))
        got = keys(r, share)
        assert len(set(got)) == share and r.cursor["epoch"] == 0    # one whole epoch, no repeat
        seen += got
    assert sorted(seen) == sorted(f"{s}-{i:03d}" for s in range(shards) for i in range(per_shard))


def test_epochs_reshuffle_and_the_order_is_a_function_of_the_seed(tmp_path):
    paths = small_shards(tmp_path, 3, 8)
    first = reader(paths, seed=7)
    epoch0, epoch1 = keys(first, 24), keys(first, 24)
    assert sorted(epoch0) == sorted(epoch1) and epoch0 != epoch1      # resampled, not exhausted
    assert first.cursor["epoch"] == 1
    assert keys(reader(paths, seed=7), 48) == epoch0 + epoch1
    assert keys(reader(paths, seed=8), 24) != epoch0
    assert keys(SourceShardReader("src", 1, paths, 0, 1, 7, BadSampleCounter()), 24) != epoch0
    # the in-shard order is shuffled, not file order
    assert epoch0[:8] != sorted(epoch0[:8])


def test_resume_from_the_cursor_gives_the_same_samples(tmp_path):
    paths = small_shards(tmp_path, 3, 5)
    reference = keys(reader(paths, unit=1, num_units=2, seed=3), 40)
    for cut in (0, 1, 4, 5, 9, 17, 30):           # mid-shard, shard ends, a later epoch
        r = reader(paths, unit=1, num_units=2, seed=3)
        keys(r, cut)
        state = r.state()
        assert set(state) == {"epoch", "shard", "sample"}
        resumed = reader(paths, unit=1, num_units=2, seed=3)
        resumed.load_state({k: str(v) for k, v in state.items()})     # ints or strings
        assert keys(resumed, 10) == reference[cut:cut + 10], cut
    r.cursor["sample"] += 100        # state() is a copy: changing the live cursor does not leak
    assert state != r.state()


def test_a_truncated_shard_counts_once_and_keeps_what_was_read(tmp_path):
    """A tar cut inside its 6th member: the 5 samples before the cut are read, the break is one bad
    sample, counted when the shard is entered at sample 0, and not again on a mid-shard resume."""
    paths = small_shards(tmp_path, 2, 10)
    data = Path(paths[1]).read_bytes()
    Path(paths[1]).write_bytes(data[:5 * 1024 + 700])   # one 512-byte header + data per sample
    counter = BadSampleCounter(max_bad_fraction=1.0)
    r = reader(paths, counter=counter)
    epoch = keys(r, 15)
    assert sorted(k for k in epoch if k.startswith("1-")) == [f"1-{i:03d}" for i in range(5)]
    assert counter.bad == {"src": 1} and counter.examples["src"][0].startswith(
        f"{paths[1]}: unreadable tar after 5 samples")
    keys(r, 1)
    assert r.cursor["epoch"] == 1 and counter.bad == {"src": 1}   # 15 samples made the epoch
    entry = next(i for i, k in enumerate(epoch) if k.startswith("1-"))
    for cut, counted in ((entry, 1), (entry + 2, 0)):
        first = reader(paths)
        keys(first, cut)
        resumed_counter = BadSampleCounter(max_bad_fraction=1.0)
        resumed = reader(paths, counter=resumed_counter)
        resumed.load_state(first.state())
        assert keys(resumed, 2) == epoch[cut:cut + 2]
        assert resumed_counter.bad.get("src", 0) == counted, cut


def test_a_reader_with_nothing_readable_stops_naming_its_shards(tmp_path):
    paths = []
    for i in range(2):
        (tmp_path / f"empty-{i}.tar").write_bytes(b"not a tar at all" * 40)
        paths.append(str(tmp_path / f"empty-{i}.tar"))
    counter = BadSampleCounter(max_bad_fraction=1.0)
    with pytest.raises(DataError, match=r"source src: no readable samples in any of this "
                                        r"reader's 2 shards \(reader 0 of 1\), e\.g\. .*empty-0"):
        reader(paths, counter=counter).next()
    assert counter.bad["src"] == 2
    with pytest.raises(ValueError, match="source src: no shards"):
        reader([])


def test_sample_keys_in_tar_groups_members_like_webdataset(tmp_path):
    path = tmp_path / "k.tar"
    with tarfile.open(path, "w") as tar:
        for name in ("a.txt", "a.cls", "dir/b.codes.npy", "dir/b.seed.txt", "c.json"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, fileobj=io.BytesIO(b"x"))
    assert sample_keys_in_tar(str(path)) == {"a", "dir/b", "c"}
    samples, err, lost = read_whole_shard(str(path))
    assert [s["__key__"] for s in samples] == ["a", "dir/b", "c"] and (err, lost) == (None, 0)


def test_garbage_inside_a_shard_is_counted_not_swallowed(tmp_path):
    """Random bytes in the middle of a tar stop Python's tar reader without an error; the lost
    samples are found by a header scan and counted bad."""
    rng = np.random.default_rng(5)
    path = write_tar(tmp_path / "cls-000000.tar",
                     [code_record(f"s{i:03d}", rng, class_id=i % CLASSES) for i in range(100)])
    with tarfile.open(path) as tar:
        middle = tar.getmembers()[150].offset  # the header of a member in the middle
    data = bytearray(Path(path).read_bytes())
    data[middle:middle + 1024] = np.random.default_rng(0).integers(1, 255, 1024, dtype=np.uint8).tobytes()
    Path(path).write_bytes(bytes(data))
    samples, err, lost = read_whole_shard(path)
    assert err is not None and 0 < len(samples) < 100
    assert lost >= 1 and len(samples) + lost >= 98  # the garbage itself may eat a member or two
    counter = BadSampleCounter(max_bad_fraction=1.0)
    SourceShardReader("cls", 0, [path], unit=0, num_units=1, seed=0, counter=counter).next()
    assert counter.bad["cls"] == lost and "corrupt data inside the tar" in counter.examples["cls"][0]
    clean = write_tar(tmp_path / "ok.tar", [code_record("a", rng, class_id=1)])
    assert read_whole_shard(clean)[1:] == (None, 0)

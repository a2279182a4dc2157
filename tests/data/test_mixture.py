"""The training data stream (unimodal/data/mixture.py): mixture proportions, disjoint readers,
packing that never attends across documents, image documents, exact resume, bad data."""

import dataclasses
import pickle
import re

import numpy as np
import pytest
import torch
import webdataset as wds

from mixture_fixtures import (CLASSES, GRID, LATENT_DIM, CODE_MAPS, code_record, code_shards,
                              data_config, text_shards, truncate, write_tar)
from unified_fixtures import tiny_model
from unimodal.config import ConfigError, load_config
from unimodal.data.image_sources import DataError
from unimodal.data.mixture import DataConfig, MixtureStream, PackedBatchStream
from unimodal.data.mixture_report import InspectConfig
from unimodal.model.document import IGNORE
from unimodal.model.attention_mask import dense_mask
from unimodal.model.objectives.rdpm import RDPMObjective
from unimodal.tokenizer.encode_shards import read_code_sample
from unimodal.tokenizer.rdpm_quantizer import rdpm_noise

BLOCK = GRID[0] * GRID[1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory, vocab):
    root = tmp_path_factory.mktemp("shards")
    return {"ids": text_shards(root / "ids", "ids", 4, 60, vocab, "ids"),
            "long": text_shards(root / "long", "long", 2, 30, vocab, "txt", max_words=200),
            "json": text_shards(root / "json", "json", 2, 30, vocab, "json"),
            "cls": code_shards(root / "cls", "cls", 4, 50, "class_images"),
            "cap": code_shards(root / "cap", "cap", 4, 50, "caption_images")}


def take(stream, n):
    it = iter(stream)
    return [next(it) for _ in range(n)]


def documents(batch):
    """(row, tokens of each document in the row) for every document of a packed batch."""
    out = []
    for r in range(batch["doc_ids"].shape[0]):
        for d in batch["doc_ids"][r].unique().tolist():
            if d >= 0:
                out.append((r, (batch["doc_ids"][r] == d).nonzero().flatten()))
    return out


def text_indices(vocab, batches, tag):
    """The document numbers (`tag N words...`) of every text document in the batches."""
    found = []
    for batch in batches:
        for r, pos in documents(batch):
            match = re.match(rf"{tag} (\d+) ", vocab.decode_text(batch["input_ids"][r, pos]))
            if match:
                found.append(int(match.group(1)))
    return found


# ------------------------------------------------------------------------------------- mixing
def test_observed_proportions_match_weights(vocab, shards):
    """Over >= 3000 samples each source's share of samples is within 0.03 of weight / sum (about
    3.3 standard deviations at p = 0.5), whatever its shard count or document length."""
    weights = {"ids": 5.0, "cls": 3.0, "cap": 2.0}
    cfg = data_config([(n, {"ids": "text", "cls": "class_images", "cap": "caption_images"}[n],
                        shards[n], w) for n, w in weights.items()], rows_per_batch=4)
    samples, tokens = torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long)
    for batch in PackedBatchStream(cfg, vocab, LATENT_DIM):
        samples += batch["source_samples"]
        tokens += batch["source_tokens"]
        assert int(batch["source_tokens"].sum()) == int((batch["doc_ids"] >= 0).sum())
        if samples.sum() >= 3000:
            break
    observed = (samples / samples.sum()).tolist()
    expected = [w / sum(weights.values()) for w in weights.values()]
    assert all(abs(o - e) <= 0.03 for o, e in zip(observed, expected)), (observed, expected)
    image_tokens_per_sample = tokens[1:] / samples[1:]
    assert (image_tokens_per_sample > 2 * BLOCK).all()  # k = 2 blocks per image


def test_ranks_and_workers_read_disjoint_samples(vocab, shards):
    """2 ranks x 2 DataLoader workers = 4 readers over 4 shards: each reader owns one shard, reads
    all of it (and again: resampled), and no sample is seen by two readers."""
    seen = {}
    for rank in range(2):
        cfg = data_config([("ids", "text", shards["ids"], 1.0)], num_workers=2)
        batches = take(PackedBatchStream(cfg, vocab, LATENT_DIM, rank=rank, world_size=2), 24)
        for worker in range(2):  # the DataLoader takes batches from its workers in turn
            seen[rank, worker] = text_indices(vocab, batches[worker::2], "ids")
    sets = {k: set(v) for k, v in seen.items()}
    for a in sets:
        assert len(sets[a]) == 60 and len(seen[a]) > 60  # its whole shard, then a second epoch
        for b in sets:
            assert a == b or not sets[a] & sets[b]
    # Fewer shards (2) than readers (4 ranks): samples are split within each shard instead.
    cfg = data_config([("json", "text", shards["json"], 1.0)])
    parts = [set(text_indices(vocab, take(PackedBatchStream(cfg, vocab, LATENT_DIM, r, 4), 8), "json"))
             for r in range(4)]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == 60   # a partition


def test_streams_are_reproducible_and_seeded(vocab, shards):
    cfg = data_config([("ids", "text", shards["ids"], 1.0), ("cls", "class_images", shards["cls"], 1.0)])
    a, b = take(PackedBatchStream(cfg, vocab, LATENT_DIM), 5), take(PackedBatchStream(cfg, vocab, LATENT_DIM), 5)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    cfg.seed = 1
    c = take(PackedBatchStream(cfg, vocab, LATENT_DIM), 5)
    assert not all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, c))


# -------------------------------------------------------------------------------- sequences
def test_packed_batches_never_attend_across_documents(assets, shards):
    _, tok_dir, tok, vocab, vocab_cfg = assets
    cfg = data_config([("ids", "text", shards["ids"], 1.0), ("long", "text", shards["long"], 1.0),
                       ("cls", "class_images", shards["cls"], 1.0),
                       ("cap", "caption_images", shards["cap"], 1.0)])
    batches = take(PackedBatchStream(cfg, vocab, LATENT_DIM), 25)
    # All rows at once through the model's own rule (block ids made unique across batches).
    doc_ids = torch.cat([b["doc_ids"] for b in batches])
    block_ids = torch.cat([torch.where(b["block_ids"] >= 0, b["block_ids"] + 1000 * i, -1)
                           for i, b in enumerate(batches)])
    mask = dense_mask(doc_ids, block_ids, RDPMObjective.image_rule)[:, 0]
    other_doc = doc_ids[:, :, None] != doc_ids[:, None, :]
    assert not (mask & other_doc).any()                # no token sees another document (or padding)
    assert mask.diagonal(dim1=1, dim2=2).all()
    continuation_pieces = 0
    for batch in batches:
        assert batch["input_ids"].shape == (2, 256)
        block_ids = batch["block_ids"]
        assert int(block_ids.max()) + 1 == batch["block_codes"].shape[0] == batch["block_steps"].shape[0]
        for r, pos in documents(batch):
            ids, targets = batch["input_ids"][r, pos], batch["targets"][r, pos]
            assert batch["position_ids"][r, pos[0]] == 0
            if (block_ids[r, pos] < 0).all():           # a text document or a piece of one
                assert torch.equal(targets[:-1], ids[1:])
                continuation_pieces += int(ids[0] != vocab.bos_id)
    assert continuation_pieces > 0                     # long documents were cut into pieces
    model = tiny_model(vocab, vocab_cfg, tok, tok_dir)
    out = model(batches[0])
    assert torch.isfinite(out["loss"]) and out["image_tokens"] > 0 and out["text_tokens"] > 0


@pytest.mark.parametrize("cfg_drop,caption_loss", [(0.0, True), (1.0, True), (0.0, False)])
def test_image_documents_carry_codes_seeds_and_prompts(vocab, shards, cfg_drop, caption_loss):
    records = {}
    for kind in ("cls", "cap"):
        for s in wds.WebDataset(shards[kind].replace("{000000..000003}", "000000"), shardshuffle=False):
            sample = read_code_sample(s)
            records[sample["codes"].numpy().tobytes()] = sample
    cfg = data_config([("cls", "class_images", shards["cls"].replace("{000000..000003}", "000000"), 1.0),
                       ("cap", "caption_images", shards["cap"].replace("{000000..000003}", "000000"), 1.0)],
                      blocks_per_image=3, cfg_drop=cfg_drop, caption_loss=caption_loss, seq_len=400)
    for batch in take(PackedBatchStream(cfg, vocab, LATENT_DIM), 6):
        for r, pos in documents(batch):
            blocks = batch["block_ids"][r, pos]
            first_block = int(blocks[blocks >= 0][0])
            prompt = batch["input_ids"][r, pos[blocks < 0]].tolist()
            prompt_targets = batch["targets"][r, pos[blocks < 0]]
            sample = records[batch["block_codes"][first_block].numpy().tobytes()]
            steps = batch["block_steps"][first_block:first_block + 3].tolist()
            assert steps == sorted(set(steps)) and len(steps) == 3 and 1 <= min(steps) <= max(steps) <= CODE_MAPS
            noise = rdpm_noise([sample["seed"]], CODE_MAPS, (LATENT_DIM, *GRID))[0]
            for j, t in enumerate(steps):
                b = first_block + j
                assert torch.equal(batch["block_noise"][b], noise[t - 1])
                block_targets = batch["targets"][r, pos[blocks == b]]
                assert torch.equal(block_targets, sample["codes"][t - 1].flatten() + vocab.code_offset)
            assert prompt[0] == vocab.bos_id and prompt[-1] == vocab.boi_id
            if cfg_drop == 1.0:
                assert prompt == [vocab.bos_id, vocab.null_id, vocab.boi_id]
            elif sample["class_id"] >= 0:
                assert prompt[1:-1] == [vocab.class_token(sample["class_id"])]
            else:
                assert vocab.decode_text(prompt) == sample["caption"]
            text_prompt = sample["class_id"] < 0 and cfg_drop == 0.0
            assert bool((prompt_targets[:-1] >= 0).all()) == (text_prompt and caption_loss)
            assert prompt_targets[-1] == IGNORE   # <boi> predicts nothing; blocks do


# ------------------------------------------------------------------------------------ resume
def _resume_config(shards, workers):
    return data_config([("ids", "text", shards["ids"], 1.0), ("long", "text", shards["long"], 2.0),
                        ("cls", "class_images", shards["cls"], 1.0),
                        ("cap", "caption_images", shards["cap"], 1.0)], num_workers=workers)


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_exact_resume_in_process(vocab, shards, tmp_path):
    """Stopping after any of the first 12 batches and restoring gives the same next batches."""
    cfg = _resume_config(shards, 0)
    reference = take(PackedBatchStream(cfg, vocab, LATENT_DIM), 16)
    cut_inside_a_document = 0
    for cut in range(1, 13):
        stream = PackedBatchStream(cfg, vocab, LATENT_DIM)
        take(stream, cut)
        state = stream.state_dict()
        cut_inside_a_document += state["readers"][0]["pieces_done"] > 0
        torch.save(state, tmp_path / "data.pt")
        resumed = PackedBatchStream(cfg, vocab, LATENT_DIM)
        resumed.load_state_dict(torch.load(tmp_path / "data.pt", weights_only=False))
        for a, b in zip(reference[cut:cut + 4], take(resumed, 4)):
            _assert_same(a, b)
    assert cut_inside_a_document > 0          # the cut-piece path was exercised
    assert len(pickle.dumps(state)) < 20_000  # small enough to save with every checkpoint


def test_exact_resume_with_loader_workers(vocab, shards):
    cfg = _resume_config(shards, 2)
    reference = take(PackedBatchStream(cfg, vocab, LATENT_DIM), 12)
    stream = PackedBatchStream(cfg, vocab, LATENT_DIM)
    batches = iter(stream)
    for _ in range(7):   # odd: the resumed loader must start at the other worker
        next(batches)
    state = stream.state_dict()
    _assert_same(next(batches), reference[7])   # taking the state changes nothing
    del batches
    resumed = PackedBatchStream(cfg, vocab, LATENT_DIM)
    resumed.load_state_dict(state)
    for a, b in zip(reference[7:12], take(resumed, 5)):
        _assert_same(a, b)


def test_resume_refuses_a_different_stream(vocab, shards):
    cfg = _resume_config(shards, 0)
    stream = PackedBatchStream(cfg, vocab, LATENT_DIM)
    take(stream, 2)
    state = stream.state_dict()
    with pytest.raises(ValueError, match="data.seq_len"):
        PackedBatchStream(dataclasses.replace(cfg, seq_len=300), vocab, LATENT_DIM).load_state_dict(state)
    with pytest.raises(ValueError, match="data.num_workers"):
        PackedBatchStream(_resume_config(shards, 3), vocab, LATENT_DIM).load_state_dict(state)
    with pytest.raises(ValueError, match="world size"):
        PackedBatchStream(cfg, vocab, LATENT_DIM, rank=0, world_size=2).load_state_dict(state)


# ---------------------------------------------------------------------------------- bad data
@pytest.fixture(scope="module")
def broken_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    rng = np.random.default_rng(3)
    good = [code_record(f"good-{i}", rng, class_id=i % CLASSES) for i in range(40)]
    wrong_seed = code_record("bad-seed", rng, class_id=1)
    wrong_seed["seed.txt"] = b"not a number"
    no_seed = code_record("no-seed", rng, class_id=1)
    del no_seed["seed.txt"]
    bad = [code_record("bad-shape", rng, class_id=1, shape=(CODE_MAPS, 4, 4)),
           code_record("bad-range", rng, class_id=1, high=1000),
           code_record("bad-class", rng, class_id=99), wrong_seed, no_seed]
    write_tar(root / "cls-000000.tar", good[:20])
    write_tar(root / "cls-000001.tar", bad[:3] + good[20:30] + bad[3:])
    truncate(write_tar(root / "cls-000002.tar", good[30:]))
    return str(root / "cls-{000000..000002}.tar")


def test_bad_samples_are_skipped_and_counted(vocab, broken_shards, shards):
    cfg = data_config([("cls", "class_images", broken_shards, 1.0),
                       ("ids", "text", shards["ids"], 1.0)], max_bad_fraction=0.5, bad_check_after=20)
    stream = PackedBatchStream(cfg, vocab, LATENT_DIM)
    for batch in take(stream, 40):   # more than one epoch of the broken source
        assert (batch["block_codes"] < 64).all() and batch["block_codes"].shape[1:] == (CODE_MAPS, *GRID)
    state = stream.state_dict()["readers"][0]["counter"]
    examples = " | ".join(state["examples"]["cls"])
    for reason in ("(4, 4, 4)", "codes outside", "class id 99", "ValueError: invalid literal",
                   "missing field seed.txt", "unreadable tar", "cls-000001.tar:bad-shape",
                   "cls-000002.tar"):
        assert reason in examples, reason
    assert state["bad"]["cls"] >= 6 and "ids" not in state["bad"]
    summary = stream.bad_data_summary()
    assert re.search(r"cls: \d+ read, \d+ bad", summary) and "ids: " in summary


@pytest.mark.parametrize("workers", [0, 1])
def test_too_many_bad_samples_stop_the_run_naming_the_shard(vocab, broken_shards, workers):
    cfg = data_config([("cls", "class_images", broken_shards, 1.0)], max_bad_fraction=0.05,
                      bad_check_after=10, num_workers=workers)
    with pytest.raises(DataError, match=r"data source cls: .*cls-00000[12]\.tar"):
        take(PackedBatchStream(cfg, vocab, LATENT_DIM), 50)


def test_images_too_long_for_a_row_are_dropped_and_counted(vocab, tmp_path):
    rng = np.random.default_rng(0)
    records = [code_record(f"{i}", rng, caption=("a red circle above a blue square " * 30
                                                 if i % 2 else "a red circle")) for i in range(20)]
    pattern = write_tar(tmp_path / "cap.tar", records)
    cfg = data_config([("cap", "caption_images", pattern, 1.0)], cfg_drop=0.0)
    stream = PackedBatchStream(cfg, vocab, LATENT_DIM)
    for batch in take(stream, 6):
        for r, pos in documents(batch):
            assert len(vocab.decode_text(batch["input_ids"][r, pos])) < 40   # only short captions
    assert stream.state_dict()["readers"][0]["too_long"][0] > 0
    assert re.search(r"cap: \d+ read, 0 bad, [1-9]\d* too long", stream.bad_data_summary())


# ------------------------------------------------------------------------------------ config
def test_config_errors_name_the_key(vocab, shards, tmp_path):
    def check(cfg: DataConfig, match):
        with pytest.raises(ConfigError, match=match):
            PackedBatchStream(cfg, vocab, LATENT_DIM)

    check(DataConfig(), r"data\.sources: empty")
    check(data_config([("x", "audio", shards["ids"], 1.0)]), r"data\.sources\[0\]\.kind='audio'")
    check(data_config([("x", "text", shards["ids"], 0.0)]), r"data\.sources\[0\]\.weight=0.0")
    missing = str(tmp_path / "nope-{000..002}.tar")
    check(data_config([("x", "text", missing, 1.0)]), r"data\.sources\[0\]\.shards=.*nope-\{000\.\.002\}.*3 of 3")
    check(data_config([("x", "text", shards["ids"], 1.0), ("x", "text", shards["ids"], 1.0)]), "used twice")
    check(data_config([("c", "class_images", shards["cls"], 1.0)], blocks_per_image=CODE_MAPS + 1),
          rf"data\.blocks_per_image={CODE_MAPS + 1}: must be in 1\.\.{CODE_MAPS}")
    check(data_config([("c", "class_images", shards["cls"], 1.0)], seq_len=100), r"data\.seq_len=100")
    yaml = tmp_path / "mix.yaml"
    yaml.write_text(f"vocab: {tmp_path}\nlatent_dim: 8\ndata:\n  seq_len: 512\n  sources:\n"
                    f"    - {{name: web, kind: text, shards: '{shards['ids']}', weight: 2}}\n"
                    f"    - {{name: img, kind: class_images, shards: '{shards['cls']}', wieght: 1}}\n")
    with pytest.raises(ConfigError, match="wieght"):
        load_config(InspectConfig, yaml)


def test_mixture_stream_documents_are_a_pure_function_of_the_reader(vocab, shards):
    cfg = data_config([("ids", "text", shards["ids"], 1.0), ("cap", "caption_images", shards["cap"], 1.0)])
    a = MixtureStream(cfg, vocab, LATENT_DIM, unit=1, num_units=4)
    first = [a.draw() for _ in range(30)]
    b = MixtureStream(cfg, vocab, LATENT_DIM, unit=1, num_units=4)
    b.restore(MixtureStream(cfg, vocab, LATENT_DIM, unit=1, num_units=4).snapshot())
    for (s1, d1), (s2, d2) in zip(first, (b.draw() for _ in range(30))):
        assert s1 == s2 and [d.input_ids for d in d1] == [d.input_ids for d in d2]

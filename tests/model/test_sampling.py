"""Sampling input is checked before any sampling: non-finite or negative guidance/temperature,
batch sizes, prompts longer than the model's context, and text that is not UTF-8."""

import json
import math

import pytest

from unified_fixtures import load_script, make_assets, tiny_model
from unimodal.model.export import save_unified
from unimodal.model.sampling import ImageRequest, ImageSamplingConfig, generate_images


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sampling_input")
    _, tok_dir, tok, vocab, vocab_cfg = make_assets(folder)
    model = tiny_model(vocab, vocab_cfg, tok, tok_dir, max_position_embeddings=160).eval()
    save_unified(model, tok, folder / "ckpt")
    return folder / "ckpt", model, tok


@pytest.mark.parametrize("field, value", [("cfg_scale", math.nan), ("cfg_scale", math.inf),
                                          ("cfg_scale", -1.0), ("temperature", math.nan),
                                          ("temperature", -0.5)])
def test_non_finite_or_negative_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=f"sampling.{field}="):
        ImageSamplingConfig(**{field: value}).validate()


def test_sample_script_refuses_bad_numbers_batch_size_and_text(checkpoint, tmp_path):
    ckpt = str(checkpoint[0])
    sample = load_script("eval/sample.py").main
    base = [f"checkpoint={ckpt}", f"out={tmp_path / 'out'}", "device=cpu", "prompts=[a red circle]"]
    with pytest.raises(ValueError, match="^sampling.cfg_scale=nan: must be a finite number"):
        sample(base + ["sampling.cfg_scale=nan"])
    with pytest.raises(ValueError, match="^sampling.temperature=-1.0: must be"):
        sample(base + ["sampling.temperature=-1"])
    with pytest.raises(ValueError, match="batch_size=0"):
        sample(base + ["batch_size=0"])
    with pytest.raises(ValueError, match="prompts"):
        sample(base[:3] + ["prompts=[a red \udcff circle]"])  # how Python passes non-UTF-8 argv
    bad_file = tmp_path / "prompts.txt"
    bad_file.write_bytes(b"a red circle\n\xff\xfe blue\n")
    with pytest.raises(ValueError, match=r"prompts_file=.*prompts\.txt: not UTF-8"):
        sample(base[:3] + [f"prompts_file={bad_file}"])
    with pytest.raises(ValueError, match=r"prompt 1 is \d+ tokens; .* leaves 96"):
        sample(base[:3] + ["prompts=" + json.dumps(["a red circle", "a red circle " * 60])])
    assert not (tmp_path / "out").exists()


def test_library_checks_prompt_length_and_batch_size(checkpoint):
    _, model, tok = checkpoint
    cfg = ImageSamplingConfig(cfg_scale=0.0, temperature=0.0)
    with pytest.raises(ValueError, match="batch_size=0"):
        generate_images(model, tok, [ImageRequest(caption="a red circle")], cfg, batch_size=0)
    with pytest.raises(ValueError, match="tokens"):
        generate_images(model, tok, [ImageRequest(caption="blue square " * 100)], cfg)
    images = generate_images(model, tok, [ImageRequest(caption="a red circle")], cfg)
    assert images.shape == (1, 3, 32, 32)


def test_sample_script_never_mixes_old_and_new_files(checkpoint, tmp_path):
    ckpt = str(checkpoint[0])
    sample = load_script("eval/sample.py").main
    out = tmp_path / "out"
    out.mkdir()
    (out / "99999.png").write_bytes(b"stale")
    args = [f"checkpoint={ckpt}", f"out={out}", "device=cpu", "prompts=[a red circle]",
            "sampling.cfg_scale=0"]
    with pytest.raises(FileExistsError, match="out=.* is not empty"):
        sample(args)
    sample(args + ["overwrite=true"])
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "grid.png", "samples.json"]
    assert not any(p.name.startswith(".out-") for p in tmp_path.iterdir())


def test_sampling_keys_are_the_config_fields_with_its_defaults():
    from dataclasses import fields

    from unimodal.cli import config_keys, parse_config

    sample = load_script("eval/sample.py")
    keys = {key for key, *_ in config_keys(sample.SampleConfig)}
    assert {f"sampling.{f.name}" for f in fields(ImageSamplingConfig)} <= keys
    assert parse_config(sample.SampleConfig, [], None, sample.__file__).sampling == \
        ImageSamplingConfig()
    cfg = parse_config(sample.SampleConfig, ["sampling.cfg_scale=2", "sampling.top_k=5"], None,
                       sample.__file__)
    assert cfg.sampling == ImageSamplingConfig(cfg_scale=2.0, top_k=5)


def compiled_tiny_models(tmp_path):
    """(cuda_graphs, model, vocab): one random-weight tiny model compiled plainly, then one with
    the same weights compiled with CUDA graphs (compile_for_sampling), on CUDA."""
    import torch

    from unimodal.model.sampling import compile_for_sampling
    from unimodal.random_models import random_class_conditional_model

    for graphs in (False, True):
        folder = tmp_path / f"graphs_{graphs}"
        folder.mkdir()
        torch.manual_seed(0)
        model, tokenizer, vocab = random_class_conditional_model("tiny", folder, "cuda")
        compile_for_sampling(model, tokenizer, cuda_graphs=graphs)
        yield graphs, model, vocab


@pytest.mark.gpu
def test_cuda_graph_sampling_draws_the_codes_of_plain_compilation(tmp_path):
    # compile_for_sampling(cuda_graphs=True) replays one graph for every block pass and reuses its
    # memory between passes and batches: a stale or overwritten buffer (the prompt cache, the last
    # pass's hidden states) would change the codes. Plain compilation runs the same kernels.
    import torch

    from unimodal.model.sampling import sample_codes
    from unimodal.model.vocabulary import image_prompt

    cfg = ImageSamplingConfig(cfg_scale=4.0, temperature=1.0)
    batches = [[3, 9], [500, 7], [3, 9]]   # the first batch again after others: a graph replay
    codes = {}
    for graphs, model, vocab in compiled_tiny_models(tmp_path):
        codes[graphs] = [sample_codes(model, [image_prompt(vocab, class_id=c) for c in classes],
                                      cfg, seeds=classes).cpu() for classes in batches]
    for plain, graphed in zip(codes[False], codes[True]):
        assert torch.equal(plain, graphed)
    assert torch.equal(codes[True][0], codes[True][2])


@pytest.mark.gpu
def test_the_prompt_pass_on_cuda_graphs_gives_each_batch_its_own_cache(tmp_path):
    # compile_for_sampling(cuda_graphs=True) runs the prompt pass on torch.compile's CUDA graphs:
    # a warm-up, a recording, then replays into the same static outputs. Each batch must still get
    # the keys and values of its own prompts, as plain compilation computes them (the question
    # README's "Unified-model sampling" leaves open for the whole-loop graph).
    import torch

    from unimodal.model.sampling_rules import run_prompts
    from unimodal.model.vocabulary import image_prompt

    batches = [[3, 9], [500, 7], [3, 9], [11, 12]]
    caches = {}
    for graphs, model, vocab in compiled_tiny_models(tmp_path):
        caches[graphs] = []
        for classes in batches:
            cache = run_prompts(model, [image_prompt(vocab, class_id=c) for c in classes])[0]
            caches[graphs].append([x.cpu() for kv in cache for x in kv])  # copied before the next
    for plain, graphed in zip(caches[False], caches[True]):
        assert all(torch.equal(a, b) for a, b in zip(plain, graphed))
    assert not torch.equal(caches[True][0][0], caches[True][1][0])  # the batches differ


def test_overlapped_decoding_refuses_a_decoder_on_cuda_graphs(checkpoint):
    # A side stream would replay the decoder's graph beside the generator's in one memory pool.
    _, model, tok = checkpoint
    from unimodal.model.sampling import sample_and_decode

    tok.decoder_cuda_graphs = True
    try:
        with pytest.raises(ValueError, match="overlap_decode=True"):
            next(sample_and_decode(model, tok, [([0], [0])], ImageSamplingConfig(), True))
    finally:
        del tok.decoder_cuda_graphs


@pytest.mark.gpu
def test_overlapped_decoding_gives_the_images_of_decoding_in_line(tmp_path):
    # The side-stream decoder reads codes made on the main stream and hands images back one batch
    # late: a missing stream wait or a freed buffer would change or reorder the pixels.
    import torch

    from unimodal.model.sampling import compile_for_sampling
    from unimodal.random_models import random_class_conditional_model

    torch.manual_seed(0)
    model, tokenizer, _ = random_class_conditional_model("tiny", tmp_path, "cuda")
    compile_for_sampling(model, tokenizer, cuda_graphs=True, channels_last=True, overlap_decode=True)
    requests = [ImageRequest(class_id=c) for c in (3, 9, 500, 7, 3)]
    cfg = ImageSamplingConfig(cfg_scale=4.0, temperature=1.0)
    in_line = generate_images(model, tokenizer, requests, cfg, batch_size=2)
    overlapped = generate_images(model, tokenizer, requests, cfg, batch_size=2, overlap_decode=True)
    assert overlapped.shape == (5, 3, 256, 256)
    assert torch.equal(in_line, overlapped)

"""The evaluation scripts end to end on CPU with a tiny random-weight checkpoint and random-weight
Inception/CLIP files: eval/fid.py shards, resumes, refuses mixed settings and writes its report;
eval/shapes_score.py and eval/clip_score.py write theirs. (The numbers mean nothing here; the
pipeline, the seeds and the files are what is tested.)"""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from process_fixtures import clean_env, run_warm
from unified_fixtures import load_script, make_assets, tiny_model
from unimodal.model.vocabulary import image_prompt
from unimodal.data.shapes import NUM_CLASSES, render_sample
from unimodal.model.export import load_unified, save_unified
from unimodal.model.sampling import ImageSamplingConfig, sample_codes
from unimodal.images import to_uint8
from unimodal.metrics.smoke_weights import (write_clip_config, write_random_clip_weights,
                                            write_random_inception_weights)

SAMPLING = ["sampling.cfg_scale=2", "sampling.temperature=1", "sampling.seed=7", "device=cpu",
            "batch_size=4"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_scripts")
    _, tok_dir, tok, vocab, vocab_cfg = make_assets(root, num_classes=NUM_CLASSES)
    model = tiny_model(vocab, vocab_cfg, tok, tok_dir, hidden_size=32, num_layers=1, num_heads=2,
                       num_kv_heads=1, intermediate_size=64)
    save_unified(model.eval(), tok, root / "ckpt")
    reference = root / "reference"
    reference.mkdir()
    for i in range(8):
        Image.fromarray(render_sample(i, 0, 32).image).save(reference / f"{i:03d}.png")
    return {"root": root, "ckpt": str(root / "ckpt"), "reference": str(reference),
            "inception": str(write_random_inception_weights(root / "inception.pth"))}


def test_fid_script_shards_resumes_and_reports(assets, tmp_path):
    fid = load_script("eval/fid.py").main
    out = tmp_path / "fid"
    common = [f"checkpoint={assets['ckpt']}", f"out={out}", "num_classes=3", "per_class=2",
              *SAMPLING]
    assert fid([*common, "shard=0/2", "sample_only=true"]) is None
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == ["0000_000.png", "0001_000.png", "0002_000.png"]  # global indices 0, 2, 4
    fid([*common, "shard=1/2", "sample_only=true"])
    files = sorted((out / "images").iterdir())
    assert [p.name for p in files] == [f"{c:04d}_{j:03d}.png" for c in range(3) for j in range(2)]
    # Image i is the class i // 2 sample with seed 7 + i, whatever shard drew it.
    model, tok = load_unified(assets["ckpt"])
    codes = sample_codes(model, [image_prompt(model.vocab, class_id=1)],
                         ImageSamplingConfig(cfg_scale=2.0, temperature=1.0), seeds=[7 + 3])
    expected = to_uint8(tok.decode(codes).clamp(-1, 1))[0].permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(Image.open(out / "images" / "0001_001.png")), expected)

    lost = np.asarray(Image.open(files[2]))
    files[2].unlink()  # a lost file is sampled again, identically; the others are kept
    before = {p.name: p.stat().st_mtime_ns for p in files if p.exists()}
    report = fid([*common, f"reference={assets['reference']}",
                  f"inception_weights={assets['inception']}", "num_workers=0", "isc_splits=2",
                  "metrics_batch_size=8", "feature_layer=64"])
    assert all((out / "images" / n).stat().st_mtime_ns == t for n, t in before.items())
    assert np.array_equal(np.asarray(Image.open(files[2])), lost)
    saved = json.loads((out / "fid.json").read_text())
    assert saved["metrics"] == report["metrics"]
    for key in ("fid", "inception_score", "precision", "recall"):
        assert np.isfinite(saved["metrics"][key])
    # The reported FID is the FID of these 6 PNGs against the reference folder, recomputed here
    # from the Inception features and the Frechet distance in float64 numpy (not the script's path).
    from scipy import linalg

    from unimodal.metrics.generation import InceptionFeatures, image_folder_dataset

    features = InceptionFeatures(assets["inception"], layers=("64",))
    gen = features(image_folder_dataset(out / "images"))["64"].double().numpy()
    ref = features(image_folder_dataset(assets["reference"]))["64"].double().numpy()
    mu_g, mu_r = gen.mean(0), ref.mean(0)
    cov_g, cov_r = np.cov(gen, rowvar=False), np.cov(ref, rowvar=False)
    covmean = linalg.sqrtm(cov_g @ cov_r).real
    expected = float(((mu_g - mu_r) ** 2).sum() + np.trace(cov_g + cov_r - 2 * covmean))
    assert saved["metrics"]["fid"] == pytest.approx(expected, rel=1e-3, abs=1e-3)
    assert saved["metrics"]["num_generated"] == 6
    sampling = saved["settings"]["sampling"]
    assert sampling["cfg_scale"] == 2.0 and sampling["cfg_schedule"] == "linear"
    assert sampling["temperature_tau"] == 1.0 and sampling["steps_T"] == 4 and sampling["seed"] == 7
    assert len(sampling["checkpoint_sha256"]) == 64
    assert saved["settings"]["inception_weights"]["file"] == "inception.pth"
    assert saved["settings"]["feature_layer"] == "64"
    assert "| fid |" in (out / "fid.md").read_text()

    with pytest.raises(ValueError, match="cfg_scale: 2.0 -> 3.0"):
        fid([*common, "sampling.cfg_scale=3", "sample_only=true"])


def test_fid_script_refuses_missing_inception_weights_before_sampling(assets, tmp_path):
    fid = load_script("eval/fid.py").main
    common = [f"checkpoint={assets['ckpt']}", f"out={tmp_path / 'x'}",
              f"reference={assets['reference']}"]
    with pytest.raises(FileNotFoundError, match="inception_weights is required"):
        fid(common)
    with pytest.raises(FileNotFoundError, match="inception_weights=.*missing.pth"):
        fid([*common, f"inception_weights={tmp_path / 'missing.pth'}"])
    assert not (tmp_path / "x").exists()


def test_shapes_score_script_reports_per_attribute_accuracy(assets, tmp_path):
    out = tmp_path / "shapes"
    report = load_script("eval/shapes_score.py").main(
        [f"checkpoint={assets['ckpt']}", f"out={out}", "captions=5", "per_class=1", *SAMPLING])
    metrics = json.loads((out / "shapes_score.json").read_text())["metrics"]
    assert metrics == report["metrics"]
    assert metrics["caption"]["images"] == 5 and metrics["class"]["images"] == NUM_CLASSES
    assert metrics["ground truth: caption"]["prompt"] == 1.0
    for name in ("caption", "class"):
        assert 0.0 <= metrics[name]["prompt"] <= metrics[name]["color"] <= 1.0
    assert len((out / "shapes_samples.jsonl").read_text().splitlines()) == 5 + NUM_CLASSES
    table = (out / "shapes_score.md").read_text()
    assert "| caption |" in table and "| ground truth: caption |" in table


def test_sampling_decodes_with_a_fine_tuned_decoder_of_the_same_codes(assets, tmp_path):
    """image_decoder=FOLDER: the same sampled codes, decoded by that tokenizer's decoder (recorded
    with its hash); a tokenizer whose quantizer differs is refused by the weight's name."""
    import torch

    from unimodal.tokenizer.rdpm_tokenizer import load_tokenizer, save_tokenizer

    tuned = load_tokenizer(Path(assets["ckpt"]) / "image_tokenizer")
    with torch.no_grad():
        for weight in tuned.decoder.parameters():
            weight.add_(0.05 * torch.randn_like(weight))
    save_tokenizer(tuned, tmp_path / "tuned")
    score = load_script("eval/shapes_score.py").main
    common = [f"checkpoint={assets['ckpt']}", "captions=2", "per_class=0", *SAMPLING]
    score([*common, f"out={tmp_path / 'base'}"])
    score([*common, f"out={tmp_path / 'ft'}", f"image_decoder={tmp_path / 'tuned'}"])
    record = json.loads((tmp_path / "ft" / "sampling.json").read_text())
    assert record["image_decoder"] == str(tmp_path / "tuned") and len(record["image_decoder_sha256"]) == 64
    model, _ = load_unified(assets["ckpt"])
    codes = sample_codes(model, [image_prompt(model.vocab, caption=render_sample(1_000_000, 0, 32).caption)],
                         ImageSamplingConfig(cfg_scale=2.0, temperature=1.0), seeds=[7])
    expected = to_uint8(tuned.decode(codes).clamp(-1, 1))[0].permute(1, 2, 0).numpy()
    first = sorted((tmp_path / "ft" / "images").iterdir())[0]
    assert np.array_equal(np.asarray(Image.open(first)), expected)
    base_first = sorted((tmp_path / "base" / "images").iterdir())[0]
    assert not np.array_equal(np.asarray(Image.open(base_first)), expected)

    with torch.no_grad():
        tuned.quantizer.codebook.add_(0.01)
    save_tokenizer(tuned, tmp_path / "other_codes")
    with pytest.raises(ValueError, match=r"other_codes: its weight quantizer\.codebook differs"):
        load_unified(assets["ckpt"], image_decoder=tmp_path / "other_codes")


def test_clip_score_script_samples_prompts_and_scores(assets, tmp_path):
    config = write_clip_config(tmp_path / "unimodal-tiny-clip.json")
    weights = write_random_clip_weights("unimodal-tiny-clip", tmp_path / "clip.pt", config)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square above a green triangle\n")
    clip = load_script("eval/clip_score.py").main
    args = [f"prompts={prompts}", "clip_model=unimodal-tiny-clip", f"clip_weights={weights}",
            f"clip_model_config={config}"]
    report = clip([f"checkpoint={assets['ckpt']}", f"out={tmp_path / 'clip'}", *args, *SAMPLING])
    assert report["metrics"]["pairs"] == 2 and -1 <= report["metrics"]["cosine_mean"] <= 1
    assert report["settings"]["prompt_prefix"] == "A photo depicts "
    # Scoring a folder of existing images gives the same numbers.
    again = clip([f"images={tmp_path / 'clip' / 'images'}", f"out={tmp_path / 'clip2'}",
                  "device=cpu", *args])
    assert again["metrics"] == pytest.approx(report["metrics"])
    with pytest.raises(FileNotFoundError, match="clip_weights is required"):
        clip([f"images={tmp_path / 'clip' / 'images'}", f"prompts={prompts}"])


def test_multi_gpu_report_compares_scaling_and_resumed_losses(tmp_path, capsys):
    """eval/gpu_multi_run.sh's table: efficiency against the 1-GPU row, bitwise loss equality."""
    import json

    def bench(name, world, stage, tok):
        (tmp_path / f"scale_{name}.json").write_text(json.dumps({
            "tokens_per_s": tok * world, "tokens_per_s_per_gpu": tok, "tflops": 300.0 * world,
            "mfu": 0.3, "world_size": world, "zero_stage": stage, "peak_mem_gib": 50.0,
            "device": "GPU", "windows": 3, "micro_batch_rows": 4, "seq_len": 4096,
            "gradient_accumulation": 8, "compile": False}))

    def log(run, losses):
        (tmp_path / run).mkdir()
        (tmp_path / run / "log.jsonl").write_text("".join(
            json.dumps({"step": s, "loss": loss, "lr": 1e-3}) + "\n" for s, loss in losses.items()))

    bench("1gpu_zero2", 1, 2, 1000.0)
    bench("2gpu_zero2", 2, 2, 950.0)
    log("straight", {1: 4.0, 2: 3.5, 3: 3.25})
    log("killed", {1: 4.0, 2: 3.5, 3: 3.0})
    (tmp_path / "kill_step.txt").write_text("2\n")
    log("one_gpu", {3: 3.3})
    load_script("eval/multi_gpu_report.py").main([f"run_dir={tmp_path}"])
    text = capsys.readouterr().out
    assert "| 2 | 2 | 1900 | 950 | 95.0% |" in text
    assert "| 2 | 3 of 3 | 2 | 0.25 | False, False |" in text  # one loss differs by 0.25
    assert "| 3 | 3.2500 | 3.3000 | True |" in text
    assert (tmp_path / "multi_gpu.md").read_text().strip() == text.strip()


def test_modality_curves_plot_and_tabulate_a_modalities_run(tmp_path, capsys):
    """eval/gpu_modalities_run.sh's curves: the last value of each curve, its late change, ln K."""
    import json
    import math

    from modality_fixtures import save_random_tokenizer, tiny_audio_config

    def log(run, rows):
        (tmp_path / run).mkdir(parents=True, exist_ok=True)
        (tmp_path / run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    log("audio_tokenizer", [{"step": 50 * i, "snr": float(i)} for i in range(1, 9)])
    save_random_tokenizer(tiny_audio_config(), tmp_path / "audio_tokenizer" / "tokenizer")
    log("pretrain", [{"step": 100 * i, "text_loss": 2.0 / i, "audio_loss": 3.4}
                     for i in range(1, 9)])
    log("pretrain_text_only", [{"step": 100 * i, "text_loss": 1.0} for i in range(1, 9)])
    curves = load_script("eval/modality_curves.py").main([f"run={tmp_path}"])
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert curves["uniform"] == {"audio": math.log(32)}
    text = capsys.readouterr().out
    assert "| audio dB | 400 | 8.000 | +2.000 | - |" in text        # 8 points: a quarter is 2 back
    assert f"| mixed audio_loss | 800 | 3.400 | +0.000 | {math.log(32):.3f} |" in text
    assert "| mixed text_loss | 800 | 0.250 | -0.083 | - |" in text   # 2/8 - 2/6
    with pytest.raises(FileNotFoundError, match="no tokenizer or pretraining log"):
        load_script("eval/modality_curves.py").main([f"run={tmp_path / 'audio_tokenizer'}"])


def run_tiny_bench_pretrain(assets, tmp_path, *words):
    """eval/bench_pretrain.py on uni_tiny with the trained test tokenizer's geometry, 6 steps
    after 2 of warm-up. A subprocess: the DeepSpeed process group (and the MASTER_PORT it sets
    in os.environ) must not outlive the test inside pytest, where later launches would inherit a
    busy port."""
    root = Path(__file__).resolve().parents[2]
    done = run_warm(
        [str(root / "eval/bench_pretrain.py"),
         f"pretrain_config={root / 'configs/uni_tiny.yaml'}", "steps=6", "warmup=2", "window=2",
         "text_vocab=300", f"image_tokenizer={assets['root'] / 'image_tokenizer'}",
         "overrides=model.backbone.num_layers=1 data.seq_len=256 data.rows_per_batch=2", *words],
        {**clean_env(), "OMP_NUM_THREADS": "1"}, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_bench_pretrain_profiles_the_real_loop_on_a_trained_tokenizer_geometry(assets, tmp_path):
    done = run_tiny_bench_pretrain(assets, tmp_path, "profile=2", f"json={tmp_path / 'bench.json'}")
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["tokens_per_s"] > 0 and result["seq_len"] == 256
    assert re.search(r"profile of 2 steps: wall \d+\.\d ms/step", done.stdout)
    assert "aten::mm" in done.stdout and "Self CPU" in done.stdout   # the recorded steps' ops


def test_bench_pretrain_sync_sites_is_checked_before_any_work(monkeypatch):
    from unimodal.cli import parse_config
    from unimodal.config import ConfigError

    bench = load_script("eval/bench_pretrain.py")
    config = str(Path(__file__).resolve().parents[2] / "configs/uni_tiny.yaml")
    parse = lambda *w: parse_config(bench.BenchPretrainConfig,  # noqa: E731
                                    [f"pretrain_config={config}", "steps=6", "warmup=2", "window=2",
                                     *w],
                                    None, bench.__file__)
    with pytest.raises(ConfigError, match="sync_sites=2: .*not with profile"):
        parse("sync_sites=2", "profile=2")
    with pytest.raises(ConfigError, match="warmup \\+ sync_sites <= steps=6"):
        parse("sync_sites=5")
    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="sync_sites counts CUDA syncs: no CUDA device"):
        parse("sync_sites=2")


def test_bench_pretrain_sync_sites_counts_the_steps_after_warmup_by_caller(monkeypatch):
    # The recorder without a GPU: an engine whose every micro-batch "syncs" (warns as torch's sync
    # debug mode does), 2 micro-batches per optimizer step; only steps 2 and 3 are watched.
    import warnings
    from types import SimpleNamespace

    bench = load_script("eval/bench_pretrain.py")
    modes = []
    monkeypatch.setattr(bench.torch.cuda, "set_sync_debug_mode", modes.append)

    def synchronizing_call():
        warnings.warn("called a synchronizing CUDA operation")

    class Engine:
        micro = 0

        def is_gradient_accumulation_boundary(self):
            return self.micro % 2 == 1

        def step(self):
            self.micro += 1
            synchronizing_call()

    trainer = SimpleNamespace(engine=Engine())
    sites = bench.count_sync_sites(trainer, warmup=1, steps=2)
    with warnings.catch_warnings(record=True):
        for _ in range(8):  # 4 optimizer steps
            trainer.engine.step()
    assert modes == ["warn", "default"]
    assert sum(sites.values()) == 4, sites
    (where, _), = sites.items()
    assert where.startswith("tests/scripts/test_eval_scripts.py:") and "synchronizing_call <- " \
        in where and "step <- " in where


def test_bench_pretrain_sync_sites_explains_syncs_inside_the_backward(capsys):
    import collections

    bench = load_script("eval/bench_pretrain.py")
    step = "site-packages/deepspeed/runtime/utils.py:233 is_invalid_grad_norm <- x.py:1 step"
    backward = "torch/autograd/graph.py:869 _engine_run_backward <- torch/_tensor.py:631 backward"
    bench.print_sync_sites(collections.Counter({step: 4}), steps=2)
    out = capsys.readouterr().out
    assert "| 2.0 | " + step + " |" in out and "op is not named" not in out
    bench.print_sync_sites(collections.Counter({step: 4, backward: 16}), steps=2)
    out = capsys.readouterr().out
    assert "| 8.0 | " + backward in out and "op is not named" in out


@pytest.mark.gpu
def test_bench_pretrain_sync_sites_names_where_the_loop_waits(assets, tmp_path):
    # DeepSpeed checks the gradient norm on the host at every optimizer step: at least that sync
    # must be found and attributed to its code.
    done = run_tiny_bench_pretrain(assets, tmp_path, "sync_sites=2")
    table = done.stdout[done.stdout.index("host syncs of 2 steps"):]
    assert "| syncs per step | where (innermost frame first) |" in table
    assert "deepspeed/" in table, table


@pytest.mark.gpu
def test_bench_pretrain_batches_are_page_locked_as_the_real_loaders_are(assets, tmp_path):
    # Pageable batches make each copy to the GPU wait for the kernels queued before it, a stall
    # the real loop (DataLoader pin_memory on CUDA) does not have.
    import torch

    from unimodal.config import load_config
    from unimodal.model.vocabulary import Vocabulary
    from unimodal.pretraining.config import PretrainConfig
    from unimodal.tokenizer.rdpm_tokenizer import load_tokenizer_config

    bench = load_script("eval/bench_pretrain.py")
    root, tok_dir = Path(__file__).resolve().parents[2], assets["root"] / "image_tokenizer"
    text = bench.dummy_text_tokenizer(tmp_path / "text", 300)
    cfg = load_config(PretrainConfig, str(root / "configs/uni_tiny.yaml"),
                      [f"model.image_tokenizer={tok_dir}", f"model.vocab.text_tokenizer={text}",
                       "data.seq_len=256", "data.rows_per_batch=2", "data.sources=[]"],
                      validate=False)
    cfg.model.resolve_image_geometry()
    vocab, latent_dim = Vocabulary.build(cfg.model.vocab), load_tokenizer_config(tok_dir).latent_dim
    for pin in (False, True):
        batch = next(iter(bench.SyntheticStream(vocab, latent_dim, cfg, distinct=1, pin=pin)))
        tensors = [v for v in batch.values() if torch.is_tensor(v)]
        assert tensors and all(v.is_pinned() == pin for v in tensors)


def test_bench_pretrain_counts_each_kernel_once_in_the_gpu_busy_share():
    # key_averages() lists a kernel twice (the CPU op that launched it carries its time as "self
    # device time" too) and ProfilerStep* spans the whole step: only device-side events count.
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    bench = load_script("eval/bench_pretrain.py")
    events = [SimpleNamespace(device_type=DeviceType.CPU, self_device_time_total=900.0),  # step
              SimpleNamespace(device_type=DeviceType.CPU, self_device_time_total=300.0),  # aten::mm
              SimpleNamespace(device_type=DeviceType.CUDA, self_device_time_total=300.0),  # its kernel
              SimpleNamespace(device_type=DeviceType.CUDA, self_device_time_total=50.0)]   # a memcpy
    assert bench.device_kernel_us(events) == 350.0


def test_bench_sampling_refuses_an_unknown_attention_backend_before_building_anything():
    bench = load_script("eval/bench_sampling.py")
    with pytest.raises(ValueError, match=r"sdpa='flashy'.*cudnn.*efficient.*flash"):
        bench.main(["sdpa=flashy"])
    assert set(bench.SDPA_BACKENDS) == {"flash", "cudnn", "efficient"}


@pytest.mark.gpu
def test_bench_head_loss_times_the_padded_and_unpadded_head(capsys):
    bench = load_script("eval/bench_head_loss.py")
    bench.main(["vocab=1001", "width=64", "rows=256", "compile=false", "warmup=1", "iters=2"])
    table = capsys.readouterr().out.strip().splitlines()[-2:]
    assert table[0].startswith("| unpadded |") and table[0].endswith("| 1.00x |")
    assert table[1].startswith("| padded to x64 |")


@pytest.mark.gpu
def test_bench_fp8_swiglu_times_the_replaced_path_and_the_kernel(capsys):
    pytest.importorskip("torchao")
    bench = load_script("eval/bench_fp8_swiglu.py")
    bench.main(["rows=256", "width=64", "intermediate=96", "sweep=false"])
    table = capsys.readouterr().out.strip().splitlines()[-2:]
    assert table[0].startswith("| cuBLAS _scaled_mm + compiled SwiGLU") and table[0].endswith("| 1.00x |")
    assert table[1].startswith("| kernel, autotuned |")


def test_tokenizer_ablation_runs_are_the_preset_or_the_variants_after_the_common_overrides():
    from unimodal.cli import parse_config
    from unimodal.config import ConfigError

    mod = load_script("eval/tokenizer_ablation.py")
    config = str(Path(__file__).resolve().parents[2] / "configs/rdpm_tiny.yaml")

    def runs(*words):
        return parse_config(mod.TokenizerAblationConfig, [f"tokenizer_config={config}", *words],
                            None, mod.__file__).runs()

    assert list(runs()) == list(mod.PRESETS["default"])
    table2 = runs("preset=table2", "overrides=train.steps=800 data.num_workers=2")
    assert list(table2) == list(mod.PRESETS["table2"])
    assert table2["T6"] == ["train.steps=800", "data.num_workers=2", "model.code_maps=6",
                            "model.step_weighting=false", "model.shared_bias=false"]
    chosen = runs("preset=table2", "variants.rdpm=", 'variants.vq="model.code_maps=1 optim.lr=6e-4"')
    assert chosen == {"rdpm": [], "vq": ["model.code_maps=1", "optim.lr=6e-4"]}
    with pytest.raises(ConfigError, match=r"variants\.vq: key 'model\.stepz'"):
        runs("variants.vq=model.stepz=1")
    with pytest.raises(ConfigError, match=r"overrides: \['train'\] are not key=value"):
        runs("overrides=train")
    with pytest.raises(ConfigError, match="preset='nope': choose one of"):
        runs("preset=nope")


def test_quickstart_summary_reads_the_ceiling_from_the_training_run_or_a_recon_folder(tmp_path,
                                                                                       capsys):
    checker = {"prompt": 0.25, "color": 0.875, "shape": 0.5, "position": 0.75}
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "metrics.json").write_text(json.dumps({"psnr": 21.04, "checker": checker}))
    (tmp_path / "recon").mkdir()
    (tmp_path / "recon" / "recon_metrics.json").write_text(json.dumps(
        {"metrics": {"psnr": 21.04, **{f"checker_{k}": v for k, v in checker.items()}}}))
    (tmp_path / "score").mkdir()
    (tmp_path / "score" / "shapes_score.json").write_text(json.dumps({"metrics": {
        "class": {"prompt": 0.125, "color": 0.5, "shape": 0.25, "position": None}}}))
    summary = load_script("eval/quickstart_summary.py").main
    printed = []
    for source in (f"tokenizer_run={tmp_path / 'tok'}", f"recon={tmp_path / 'recon'}"):
        summary([source, f"score={tmp_path / 'score'}"])
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1]
    assert "the ceiling: 25.0% (88% / 50% / 75%), PSNR 21.0 dB" in printed[0]
    assert "held-out class prompts: 12.5% (50% / 25% / -)" in printed[0]
    (tmp_path / "tok" / "metrics.json").write_text(json.dumps({"psnr": 30.0}))  # not shapes data
    with pytest.raises(ValueError, match="no checker metrics"):
        summary([f"tokenizer_run={tmp_path / 'tok'}", f"score={tmp_path / 'score'}"])

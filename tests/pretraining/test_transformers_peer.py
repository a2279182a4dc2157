"""`eval/bench_pretrain.py peer=true` (unimodal/pretraining/transformers_peer.py): the one table
with the plain transformers peer, whose two MFU conventions differ by exactly half of flops.py's
attention term; bad settings are refused before any work."""

import json

import pytest

from process_fixtures import clean_env, run_warm
from unified_fixtures import ROOT, make_assets
from unimodal.config import ConfigError


@pytest.mark.slow
@pytest.mark.parametrize("peer_eager", [True, False])
def test_bench_pretrain_peer_prints_one_table_with_both_mfu_conventions(tmp_path, peer_eager):
    """The real entry point at a tiny size: the project, then the peer eager (unless
    peer_eager=false) and compiled (the `eager` dynamo backend here: inductor's CPU compile would
    take minutes and times nothing)."""
    from unimodal.pretraining.flops import attention_term

    make_assets(tmp_path)
    # A subprocess: the DeepSpeed process group must not outlive the test inside pytest.
    done = run_warm(
        [str(ROOT / "eval/bench_pretrain.py"),
         f"pretrain_config={ROOT / 'configs/uni_tiny.yaml'}", "steps=6", "warmup=2", "window=2",
         "text_vocab=300", f"json={tmp_path / 'bench.json'}", "peer=true",
         "peer_compile_backend=eager", f"image_tokenizer={tmp_path / 'image_tokenizer'}",
         f"peer_eager={str(peer_eager).lower()}",
         "overrides=model.backbone.num_layers=1 data.seq_len=256 data.rows_per_batch=2"],
        {**clean_env(), "OMP_NUM_THREADS": "1"}, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout[done.stdout.index("project vs plain transformers"):]
    assert "| MFU full attn | MFU causal-halved |" in table
    for row in ("| project (DeepSpeed) |", "| transformers peer, compiled (eager) |"):
        assert row in table, table
    assert ("| transformers peer, eager |" in table) == peer_eager, table
    assert "project / compiled peer:" in table.splitlines()[-1]
    result = json.loads((tmp_path / "bench.json").read_text())
    peers = result["peers"]
    assert list(peers) == (["eager", "compiled"] if peer_eager else ["compiled"])
    assert all(p["compile"] == "eager" for p in peers.values())  # no compile, then dynamo's eager
    assert result["ratio_to_compiled_peer"] == pytest.approx(
        result["tokens_per_s"] / peers["compiled"]["tokens_per_s"])
    # configs/uni_tiny.yaml's width 128, one layer here, 256-token rows: flops.py's attention
    # term per second of each run.
    for run in (result, *peers.values()):
        attention = attention_term(1, 128, run["tokens_per_s"], 256) / 1e12
        assert run["tflops_causal"] == pytest.approx(run["tflops"] - 0.5 * attention, rel=1e-9)
        assert 0 < run["tflops_causal"] < run["tflops"]
        assert run["mfu"] == pytest.approx(run["tflops"] / 989.0)
        assert run["mfu_causal"] == pytest.approx(run["tflops_causal"] / 989.0)
        assert run["windows"] == 2


def test_bench_pretrain_peer_refuses_a_launcher_and_unknown_precision(monkeypatch, tmp_path):
    from unified_fixtures import load_script
    from unimodal.cli import parse_config

    mod = load_script("eval/bench_pretrain.py")
    config = str(ROOT / "configs/uni_tiny.yaml")
    parse = lambda *w: parse_config(mod.BenchPretrainConfig,  # noqa: E731
                                    [f"pretrain_config={config}", *w], None, mod.__file__)
    with pytest.raises(ConfigError, match="peer_precision='fp8'"):
        parse("peer=true", "peer_precision=fp8")
    with pytest.raises(ConfigError, match="peer_vocab_multiple=0: must be >= 1"):
        parse("peer=true", "peer_vocab_multiple=0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="peer=true compares one GPU"):
        parse("peer=true")
    assert parse("peer=false").peer is False


def test_the_peer_vocabulary_is_padded_only_when_asked():
    # peer_vocab_multiple: the peer's head grows to the next multiple (as transformers'
    # pad_to_multiple_of), while its data and FLOPs keep the real vocabulary.
    import torch
    from transformers import LlamaConfig

    from unimodal.config import load_config
    from unimodal.pretraining.config import PretrainConfig
    from unimodal.pretraining.transformers_peer import time_peer

    cfg = load_config(PretrainConfig, ROOT / "configs/uni_tiny.yaml",
                      ["data.seq_len=16", "data.rows_per_batch=1", "train.gradient_accumulation=1"],
                      validate=False)
    llama = LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16)
    runs = [time_peer(llama, cfg, torch.device("cpu"), 2, 0, 1, vocab_multiple=m) for m in (1, 64)]
    assert [r["head_rows"] for r in runs] == [100, 128]
    assert llama.vocab_size == 100                       # the caller's config is left alone
    per_token = [r["tflops"] / r["tokens_per_s"] for r in runs]
    assert per_token[0] == pytest.approx(per_token[1])   # FLOPs of the real vocabulary
    with pytest.raises(ValueError, match="vocab_multiple=0"):
        time_peer(llama, cfg, torch.device("cpu"), 2, 0, 1, vocab_multiple=0)

"""Unified-model checkpoints (unimodal/model/export.py): an export loads in transformers and round
trips exactly (also with override weights, tied embeddings and pre-rename files), a base Llama is
extended keeping its text rows, and broken folders are clear errors."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

from unified_fixtures import causal_mask, mixed_batch, tiny_model
from unimodal.model.export import (CONFIG_FILE, HF_DIR, INPUT_FILE, TOKENIZER_DIR, VOCAB_DIR,
                                   _grow_rows, extend_pretrained_llama, load_unified, save_unified)
from unimodal.model.unified import BackboneConfig, UnifiedModelConfig


def test_export_loads_in_transformers_and_round_trips(model, assets, tmp_path):
    vocab, tok = assets[3], assets[2]
    save_unified(model, tok, tmp_path / "ckpt")
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "ckpt" / "hf").eval()
    ids = torch.tensor([vocab.encode_text("the red circle is above", bos=True)])
    hidden, _ = model.backbone(model.backbone.embed(ids), torch.arange(ids.shape[1])[None], causal_mask(ids))
    torch.testing.assert_close(F.linear(hidden, model.backbone.head_weight), hf(input_ids=ids).logits,
                               rtol=1e-4, atol=1e-4)
    loaded, _ = load_unified(tmp_path / "ckpt")
    batch = mixed_batch(vocab, torch.randint(0, 64, (4, 8, 8)))
    torch.testing.assert_close(loaded(batch)["loss"], model(batch)["loss"])


def test_an_export_written_before_the_code_maps_rename_loads(model, assets, tmp_path):
    """Exports used to name T `steps` in unified.yaml and vocabulary.json (layout version 1)."""
    save_unified(model, assets[2], tmp_path / "ckpt")
    config = tmp_path / "ckpt" / "unified.yaml"
    assert "code_maps: 4" in config.read_text()
    config.write_text(config.read_text().replace("code_maps: 4", "steps: 4"))
    vocab_file = tmp_path / "ckpt" / "vocabulary" / "vocabulary.json"
    layout = json.loads(vocab_file.read_text())
    layout["version"], layout["image"]["steps"] = 1, layout["image"].pop("code_maps")
    vocab_file.write_text(json.dumps(layout))
    loaded, _ = load_unified(tmp_path / "ckpt")
    assert loaded.cfg.vocab.code_maps == loaded.vocab.code_maps == 4
    batch = mixed_batch(assets[3], torch.randint(0, 64, (4, 8, 8)))
    torch.testing.assert_close(loaded(batch)["loss"], model(batch)["loss"])


def test_extending_a_local_llama_keeps_text_rows(assets, tmp_path):
    text_model, tok_dir, tok, vocab, vocab_cfg = assets
    base_cfg = BackboneConfig(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                              intermediate_size=128)
    torch.manual_seed(5)
    base = LlamaForCausalLM(base_cfg.to_hf(vocab_size=vocab.text_size)).eval()
    base.save_pretrained(tmp_path / "base")
    cfg = UnifiedModelConfig(backbone=BackboneConfig(**{**base_cfg.__dict__,
                                                        "base_model": str(tmp_path / "base")}),
                             vocab=vocab_cfg, image_tokenizer=str(tok_dir))
    model = extend_pretrained_llama(cfg, vocab, tok).eval()
    emb = model.backbone.model.embed_tokens.weight
    assert emb.shape[0] == vocab.size
    torch.testing.assert_close(emb[: vocab.text_size], base.model.embed_tokens.weight)
    new_rows = emb[vocab.text_size:]
    torch.testing.assert_close(new_rows.mean(0), base.model.embed_tokens.weight.mean(0), atol=0.01, rtol=0)
    assert new_rows.std(0).mean() > 0  # distinct rows
    ids = torch.tensor([vocab.encode_text("a blue square", bos=True)])
    hidden, _ = model.backbone(model.backbone.embed(ids), torch.arange(ids.shape[1])[None], causal_mask(ids))
    ours = F.linear(hidden, model.backbone.head_weight)[..., : vocab.text_size]
    torch.testing.assert_close(ours, base(input_ids=ids).logits, rtol=1e-4, atol=1e-4)


def test_override_weights_and_tied_embeddings_round_trip(assets, tmp_path):
    _, tok_dir, tok, vocab, vocab_cfg = assets
    model = tiny_model(vocab, vocab_cfg, tok, tok_dir, tie_word_embeddings=True).eval()
    ema = {k: v + 0.01 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_unified(model, tok, tmp_path / "ckpt", state_dict=ema)
    assert "lm_head.weight" not in load_file(str(tmp_path / "ckpt" / HF_DIR / "model.safetensors"))
    loaded, _ = load_unified(tmp_path / "ckpt")
    assert loaded.backbone.head_weight is loaded.backbone.model.embed_tokens.weight
    state = loaded.state_dict()
    for key in ("backbone.model.embed_tokens.weight", "backbone.model.layers.0.mlp.up_proj.weight"):
        torch.testing.assert_close(state[key], ema[key])             # the override, not the live weights
    image_keys = [k for k in ema if k.startswith("image_input.") and ema[k].is_floating_point()]
    assert image_keys and all(torch.equal(state[k], ema[k]) for k in image_keys)


@pytest.mark.parametrize("part", [HF_DIR, INPUT_FILE, VOCAB_DIR, TOKENIZER_DIR, CONFIG_FILE])
def test_a_folder_missing_a_part_is_named(model, assets, tmp_path, part):
    save_unified(model, assets[2], tmp_path / "ckpt")
    path = tmp_path / "ckpt" / part
    if path.is_dir():
        path.rename(tmp_path / "moved")
    else:
        path.unlink()
    with pytest.raises(FileNotFoundError, match=f"is not a unified-model checkpoint: {part} is missing"):
        load_unified(tmp_path / "ckpt")


def test_weights_that_do_not_match_the_config_are_refused(model, assets, tmp_path):
    save_unified(model, assets[2], tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / HF_DIR / "model.safetensors"
    state = load_file(str(weights))
    state["model.extra.weight"] = torch.zeros(1)
    del state["model.norm.weight"]
    save_file(state, str(weights))
    with pytest.raises(ValueError, match=r"weights do not match the config \(missing \['model\.norm\.weight'\], "
                                         r"unexpected \['model\.extra\.weight'\]\)"):
        load_unified(tmp_path / "ckpt")


def test_extending_errors_and_grown_rows(assets, tmp_path):
    _, tok_dir, tok, vocab, vocab_cfg = assets
    cfg = UnifiedModelConfig(backbone=BackboneConfig(base_model=str(tmp_path / "nothing")),
                             vocab=vocab_cfg, image_tokenizer=str(tok_dir))
    with pytest.raises(FileNotFoundError, match=r"model\.backbone\.base_model='.*nothing': no config\.json"):
        extend_pretrained_llama(cfg, vocab, tok)
    small = BackboneConfig(hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2, intermediate_size=64)
    LlamaForCausalLM(small.to_hf(vocab_size=vocab.text_size - 1)).save_pretrained(tmp_path / "small")
    cfg.backbone = BackboneConfig(**{**small.__dict__, "base_model": str(tmp_path / "small")})
    with pytest.raises(ValueError, match=rf"text range \({vocab.text_size}\) is larger than the base "
                                         rf"model's vocab_size \({vocab.text_size - 1}\)"):
        extend_pretrained_llama(cfg, vocab, tok)
    rows = torch.randn(10, 6)
    assert _grow_rows(rows, 0) is rows
    torch.manual_seed(0)
    grown = _grow_rows(rows, 500)
    assert torch.equal(grown[:10], rows) and grown.shape == (510, 6)
    torch.testing.assert_close(grown[10:].mean(0), rows.mean(0), atol=0.01, rtol=0)
    noise_std = (grown[10:] - rows.mean(0)).std().item()
    assert noise_std == pytest.approx(0.02 * rows.std(0).mean().item(), rel=0.1)

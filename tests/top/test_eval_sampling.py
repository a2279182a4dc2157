"""unimodal/eval_sampling.py: the settings record that guards a resumed sampling run, and the
compile / CUDA-graph options."""

from types import SimpleNamespace

import pytest
import torch

from unimodal.eval_sampling import SamplingRunConfig, check_resume, sampling_record, write_settings
from unimodal.model.sampling import ImageSamplingConfig


def test_eval_settings_record_the_masked_sampler_options_so_a_resume_cannot_mix_them(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"weights")
    tok = SimpleNamespace(code_maps=1, grid=(8, 8), image_size=32)

    def record(objective: str, choice: float) -> dict:
        run = SamplingRunConfig(checkpoint=str(tmp_path / "ckpt"),
                                sampling=ImageSamplingConfig(mask_choice_temperature=choice))
        return sampling_record(run, SimpleNamespace(tok_cfg=tok, objective=SimpleNamespace(name=objective)))

    assert "mask_choice_temperature" not in record("rdpm", 0.0)    # rdpm's records stay as they were
    write_settings(tmp_path / "out", record("masked", 0.0))
    assert not check_resume(tmp_path / "out", record("masked", 0.0))
    with pytest.raises(ValueError, match="mask_choice_temperature: 0.0 -> 4.5"):
        check_resume(tmp_path / "out", record("masked", 4.5))


def test_eval_settings_record_top_p_when_it_filters(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"weights")
    model = SimpleNamespace(tok_cfg=SimpleNamespace(code_maps=1, grid=(8, 8), image_size=32),
                            objective=SimpleNamespace(name="next_token"))

    def record(top_p: float) -> dict:
        run = SamplingRunConfig(checkpoint=str(tmp_path / "ckpt"),
                                sampling=ImageSamplingConfig(top_p=top_p))
        return sampling_record(run, model)

    assert "top_p" not in record(1.0)   # the default keeps older records valid
    write_settings(tmp_path / "out", record(0.9))
    with pytest.raises(ValueError, match="top_p: 0.9 -> None"):
        check_resume(tmp_path / "out", record(1.0))


def test_fp8_keep_bf16_needs_fp8_and_known_projection_names(tmp_path):
    pytest.importorskip("torchao")
    with pytest.raises(ValueError, match="fp8_keep_bf16 is set but fp8 is off"):
        SamplingRunConfig(checkpoint=str(tmp_path), fp8_keep_bf16=["down_proj"]).validate()
    with pytest.raises(ValueError, match=r"fp8_keep_bf16: unknown projection\(s\) \['mlp'\]"):
        SamplingRunConfig(checkpoint=str(tmp_path), compile=True, fp8="rowwise",
                          fp8_keep_bf16=["mlp", "down_proj"]).validate()
    SamplingRunConfig(checkpoint=str(tmp_path), compile=True, fp8="rowwise",
                      fp8_keep_bf16=["down_proj"]).validate()


def test_cuda_graphs_need_compile_and_are_refused_for_code_by_code_sampling(tmp_path):
    from unimodal.eval_sampling import load_modality_for_sampling

    with pytest.raises(ValueError, match="cuda_graphs=true needs compile=true"):
        SamplingRunConfig(checkpoint=str(tmp_path), cuda_graphs=True).validate()
    SamplingRunConfig(checkpoint=str(tmp_path), compile=True, cuda_graphs=True).validate()
    # Refused before any file is read: the checkpoint folder does not even exist.
    run = SamplingRunConfig(checkpoint=str(tmp_path / "missing"), compile=True, cuda_graphs=True)
    with pytest.raises(ValueError, match="cuda_graphs=true is for images; modality=audio"):
        load_modality_for_sampling(run, "audio", torch.device("cpu"))

"""The image objective seam: behaviour pinned across the refactor, the registry, the mask.

The pinned numbers were recorded on the code before the RDPM objective moved into
`unimodal/model/objectives/` (seeded, CPU, the tiny model of unified_fixtures): the loss of one
batch built through the real data path (raw samples -> SampleDocuments -> pack_documents ->
model) and the codes the sampler draws for fixed prompts and seeds. A refactor that changes
either (even by reordering random draws) fails here."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unified_fixtures import make_assets, tiny_model
from unimodal.data.sample_documents import SampleDocuments
from unimodal.data.sequences import pack_documents
from unimodal.model.sampling import ImageSamplingConfig, sample_codes
from unimodal.model.vocabulary import image_prompt

LATENT_DIM = 8
# Recorded once (loss, text_loss, image_loss per code head; sampled codes): any change to the
# objective's sequence, loss or sampler moves them.
PINNED = json.loads((Path(__file__).with_name("rdpm_pinned.json")).read_text())


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_assets(tmp_path_factory.mktemp("assets"))


def _raw_image(codes: torch.Tensor, seed: int, **fields) -> dict:
    buf = io.BytesIO()
    np.save(buf, codes.numpy().astype(np.uint16))
    return {"codes.npy": buf.getvalue(), "seed.txt": str(seed).encode(), **fields}


def _batch(vocab) -> dict:
    """Two caption images, a class image (one dropped to <null>) and a text, packed in 2 rows."""
    gen = torch.Generator().manual_seed(7)
    codes = [torch.randint(0, vocab.codebook_size, (vocab.code_maps, *vocab.grid), generator=gen)
             for _ in range(3)]
    rng = np.random.default_rng(3)
    kw = dict(vocab=vocab, latent_dim=LATENT_DIM, seq_len=300, blocks_per_image=2,
              cfg_drop=0.3, caption_loss=True)
    caption = SampleDocuments("caption_images", step_weights=[1, 2, 3, 4], **kw)
    classes = SampleDocuments("class_images", **kw)
    text = SampleDocuments("text", **kw)
    docs = []
    docs += caption(_raw_image(codes[0], 11, txt=b"a red circle above a blue square"), rng)
    docs += classes(_raw_image(codes[1], 12, cls=b"5"), rng)
    docs += text({"txt": b"the green triangle is left of the red circle."}, rng)
    docs += caption(_raw_image(codes[2], 13, txt=b"a small yellow square"), rng)
    docs += classes(_raw_image(codes[0], 14, cls=b"2"), rng)
    return pack_documents(docs, seq_len=300, pad_id=vocab.pad_id)


def _sample(model, vocab, code_head: str) -> torch.Tensor:
    if code_head == "latent":
        prompts = [image_prompt(vocab, "a red circle"), image_prompt(vocab, class_id=3)]
        cfg = ImageSamplingConfig(cfg_scale=4.0, cfg_schedule="linear", temperature=1.0, seed=5)
        return sample_codes(model, prompts, cfg)
    cfg = ImageSamplingConfig(cfg_scale=2.0, cfg_schedule="constant", temperature=0.7, top_k=5,
                              seed=9)
    return sample_codes(model, [image_prompt(vocab, "a blue square")], cfg, seeds=[123])


@pytest.mark.parametrize("code_head", ["shared", "latent"])
def test_training_loss_and_sampled_codes_are_pinned(assets, code_head):
    _, tok_dir, tok, vocab, vocab_cfg = assets
    model = tiny_model(vocab, vocab_cfg, tok, tok_dir, code_head=code_head)
    if code_head != "shared":  # give the latent head non-trivial temperatures
        with torch.no_grad():
            model.image_input.log_inv_tau.copy_(torch.linspace(-0.5, 0.5, vocab.code_maps + 1))
    batch = _batch(vocab)
    assert batch["block_codes"].shape[0] == 8 and batch["input_ids"].shape[0] >= 2
    out = model(batch)
    codes = _sample(model.eval(), vocab, code_head)
    loss, text_loss, image_loss = PINNED["loss_text_image"][code_head]
    assert float(out["loss"].detach()) == pytest.approx(loss, rel=1e-6, abs=1e-6)
    assert float(out["text_loss"]) == pytest.approx(text_loss, rel=1e-6, abs=1e-6)
    assert float(out["image_loss"]) == pytest.approx(image_loss, rel=1e-6, abs=1e-6)
    pinned = PINNED["codes"][code_head]
    assert list(codes.shape) == pinned["shape"] and codes.flatten().tolist() == pinned["flat"]


def test_registry_names_the_key_and_the_known_objectives(assets):
    from unimodal.config import ConfigError
    from unimodal.model.objectives import IMAGE_OBJECTIVES, build_objective
    from unimodal.model.objectives.masked import MaskedObjective
    from unimodal.model.objectives.next_token import NextTokenObjective
    from unimodal.model.objectives.rdpm import RDPMObjective
    from unimodal.model.unified import UnifiedModelConfig

    assert IMAGE_OBJECTIVES == {"rdpm": RDPMObjective, "next_token": NextTokenObjective,
                                "masked": MaskedObjective}
    assert UnifiedModelConfig().image_objective == "rdpm"
    UnifiedModelConfig(image_objective="next_token").validate()
    with pytest.raises(ConfigError,
                       match=r"model\.image_objective='maskgit'.*\['masked', 'next_token', 'rdpm'\]"):
        UnifiedModelConfig(image_objective="maskgit").validate()
    with pytest.raises(ConfigError, match=r"model\.image_objective='raster'"):
        build_objective("raster", assets[3], LATENT_DIM)
    with pytest.raises(ConfigError, match=r"model\.code_head='mlp'.*latent_shared"):
        UnifiedModelConfig(code_head="mlp").validate()
    with pytest.raises(ConfigError, match=r"model\.code_head='latent'.*\('shared',\)"):
        UnifiedModelConfig(image_objective="next_token", code_head="latent").validate()


def test_the_model_uses_its_objective(assets):
    from unimodal.model.objectives.rdpm import RDPMBlockInput, RDPMObjective

    _, tok_dir, tok, vocab, vocab_cfg = assets
    model = tiny_model(vocab, vocab_cfg, tok, tok_dir)
    assert isinstance(model.objective, RDPMObjective)
    assert isinstance(model.image_input, RDPMBlockInput)  # saved as image_input.safetensors


def test_objective_mask_mod_equals_the_dense_mask(assets):
    """The objective's mask_mod, evaluated pair by pair, is the dense mask the model uses on the
    CPU, on a packed batch of the real data path (prompts, several blocks, text, padding)."""
    from unimodal.model.attention_mask import dense_mask
    from unimodal.model.objectives.rdpm import RDPMObjective

    vocab = assets[3]
    objective = RDPMObjective(vocab, LATENT_DIM)
    batch = _batch(vocab)
    doc_ids, block_ids = batch["doc_ids"][:, :160], batch["block_ids"][:, :160]
    dense = dense_mask(doc_ids, block_ids, objective.image_rule)[:, 0]
    mod = objective.mask_mod(doc_ids, block_ids)
    b, length = doc_ids.shape
    idx = torch.arange(length)
    for row in range(b):
        expected = mod(torch.tensor(row), torch.tensor(0), idx[:, None], idx[None, :])
        assert torch.equal(dense[row], expected)
    # The rule itself: a block sees its prompt and its own block only.
    row = 0
    blocks = block_ids[row]
    first = int((blocks == 0).nonzero()[0])
    second = int((blocks == 1).nonzero()[0])
    assert dense[row, first, :first].all() and dense[row, first, blocks == 0].all()
    assert not dense[row, second, blocks == 0].any()


def test_empty_blocks_match_a_packed_image_batch(assets):
    from unimodal.model.objectives.rdpm import RDPMObjective

    vocab = assets[3]
    batch = _batch(vocab)
    empty = RDPMObjective(vocab, LATENT_DIM).empty_blocks()
    assert set(empty) == {k for k in batch if k.startswith("block_") and k != "block_ids"}
    for key, value in empty.items():
        assert value.shape[0] == 0 and value.shape[1:] == batch[key].shape[1:]
        assert value.dtype == batch[key].dtype

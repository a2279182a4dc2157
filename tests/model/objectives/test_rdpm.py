"""The image objective seam: behaviour pinned across the refactor, the registry, the mask.

The pinned numbers were recorded on the code before the RDPM objective moved into
`unimodal/model/objectives/` (seeded, CPU, the tiny model of unified_fixtures): the loss of one
batch built through the real data path (raw samples -> SampleDocuments -> pack_documents ->
model) and the codes the sampler draws for fixed prompts and seeds. A refactor that changes
either (even by reordering random draws) fails here."""

import io

import numpy as np
import pytest
import torch

from unified_fixtures import make_assets, tiny_model
from unimodal.data.sample_documents import SampleDocuments
from unimodal.data.sequences import pack_documents
from unimodal.model.sampling import ImageSamplingConfig, sample_codes
from unimodal.model.vocabulary import image_prompt

LATENT_DIM = 8
PINNED_LOSS = {  # (loss, text_loss, image_loss)
    'shared': (4.318131923675537, 6.007500648498535, 4.156454086303711),
    'latent': (22.786911010742188, 6.007500648498535, 24.39275360107422),
}
PINNED_CODES = {  # (shape, codes flattened)
    'shared': ((1, 4, 8, 8), [
        43, 43, 50, 63, 53, 53, 43, 51, 20, 63, 43, 26, 11, 25, 46, 61, 53, 4, 51, 43,
        25, 10, 43, 19, 5, 63, 15, 57, 26, 63, 4, 38, 37, 61, 9, 17, 61, 11, 17, 61,
        51, 43, 43, 63, 5, 9, 43, 5, 26, 43, 53, 43, 53, 20, 52, 19, 45, 44, 32, 17,
        57, 51, 3, 19, 21, 11, 3, 27, 21, 19, 21, 41, 4, 29, 21, 5, 11, 61, 15, 8,
        11, 60, 26, 44, 41, 53, 5, 20, 20, 0, 12, 49, 10, 4, 55, 42, 15, 27, 10, 10,
        53, 8, 10, 11, 53, 61, 26, 5, 21, 26, 21, 21, 10, 42, 8, 42, 62, 4, 53, 9,
        38, 30, 0, 10, 35, 39, 16, 63, 5, 32, 29, 18, 46, 1, 61, 19, 4, 3, 40, 60,
        39, 20, 54, 30, 20, 57, 48, 47, 51, 53, 43, 20, 16, 6, 50, 53, 38, 5, 28, 58,
        50, 18, 55, 10, 61, 17, 10, 61, 58, 47, 1, 36, 5, 10, 20, 30, 53, 58, 17, 34,
        58, 58, 58, 5, 21, 30, 4, 48, 60, 39, 51, 4, 61, 12, 0, 40, 43, 52, 12, 44,
        36, 48, 20, 60, 39, 16, 53, 61, 20, 21, 15, 30, 47, 52, 61, 40, 52, 4, 42, 51,
        53, 3, 8, 30, 2, 30, 44, 55, 42, 61, 25, 63, 34, 63, 47, 39, 61, 19, 20, 61,
        53, 30, 53, 31, 55, 5, 44, 20, 46, 52, 55, 48, 50, 35, 18, 21,
    ]),
    'latent': ((2, 4, 8, 8), [
        16, 41, 57, 49, 16, 9, 59, 54, 22, 28, 16, 16, 21, 27, 57, 31, 2, 16, 22, 59,
        11, 62, 3, 28, 56, 60, 58, 60, 61, 21, 16, 63, 21, 15, 58, 60, 14, 1, 32, 16,
        17, 52, 58, 7, 61, 52, 57, 60, 62, 3, 56, 21, 59, 57, 56, 56, 5, 47, 26, 61,
        59, 32, 20, 59, 57, 22, 59, 57, 35, 34, 7, 60, 41, 19, 59, 19, 22, 18, 21, 0,
        7, 60, 62, 50, 1, 22, 34, 61, 2, 20, 41, 32, 0, 59, 6, 25, 2, 59, 1, 20,
        3, 3, 54, 24, 51, 16, 11, 61, 59, 32, 20, 2, 0, 35, 1, 59, 44, 53, 38, 35,
        63, 11, 60, 31, 44, 15, 28, 59, 18, 7, 25, 53, 63, 39, 56, 17, 6, 44, 44, 20,
        7, 43, 17, 61, 62, 20, 58, 62, 41, 11, 5, 48, 43, 32, 13, 16, 4, 15, 1, 35,
        61, 21, 3, 9, 52, 20, 12, 59, 20, 56, 9, 4, 56, 16, 1, 26, 22, 25, 16, 15,
        20, 32, 22, 58, 16, 26, 61, 40, 52, 52, 19, 56, 22, 21, 52, 11, 22, 20, 19, 25,
        61, 38, 12, 51, 57, 54, 39, 62, 31, 57, 59, 22, 28, 50, 19, 38, 62, 51, 25, 57,
        51, 22, 27, 29, 46, 14, 9, 22, 9, 48, 32, 52, 39, 14, 44, 32, 35, 55, 59, 25,
        58, 59, 52, 14, 35, 51, 32, 0, 34, 22, 20, 38, 28, 24, 57, 35, 61, 58, 19, 11,
        2, 12, 58, 16, 59, 31, 4, 3, 7, 59, 58, 51, 49, 59, 28, 21, 6, 56, 34, 59,
        48, 41, 20, 37, 40, 58, 16, 59, 21, 58, 20, 32, 52, 57, 19, 39, 16, 40, 59, 44,
        20, 60, 33, 32, 20, 16, 34, 59, 60, 47, 16, 24, 52, 61, 25, 6, 57, 61, 61, 22,
        46, 61, 16, 52, 54, 57, 57, 22, 52, 1, 27, 47, 32, 56, 3, 33, 22, 47, 0, 22,
        31, 32, 22, 34, 7, 61, 54, 45, 43, 44, 29, 37, 50, 16, 61, 61, 54, 44, 58, 58,
        24, 14, 20, 60, 29, 16, 51, 62, 49, 44, 57, 16, 3, 16, 61, 16, 3, 59, 5, 46,
        58, 10, 52, 17, 4, 6, 56, 3, 18, 32, 18, 21, 28, 20, 59, 51, 31, 43, 6, 1,
        26, 40, 48, 46, 34, 14, 59, 60, 21, 60, 2, 0, 20, 21, 47, 41, 7, 40, 48, 52,
        63, 17, 16, 17, 58, 25, 35, 37, 43, 20, 19, 51, 32, 5, 12, 59, 30, 51, 5, 52,
        22, 62, 10, 61, 18, 58, 7, 42, 13, 22, 51, 44, 22, 61, 51, 57, 22, 16, 43, 38,
        11, 40, 13, 47, 20, 22, 41, 50, 61, 17, 52, 6, 32, 6, 17, 18, 27, 1, 7, 22,
        57, 14, 26, 54, 22, 14, 28, 3, 26, 32, 63, 52, 16, 13, 20, 14, 59, 53, 0, 58,
        41, 52, 4, 51, 59, 39, 50, 60, 13, 60, 60, 6,
    ]),
}


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
    loss, text_loss, image_loss = PINNED_LOSS[code_head]
    assert float(out["loss"].detach()) == pytest.approx(loss, rel=1e-6, abs=1e-6)
    assert float(out["text_loss"]) == pytest.approx(text_loss, rel=1e-6, abs=1e-6)
    assert float(out["image_loss"]) == pytest.approx(image_loss, rel=1e-6, abs=1e-6)
    shape, flat = PINNED_CODES[code_head]
    assert tuple(codes.shape) == shape and codes.flatten().tolist() == flat


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

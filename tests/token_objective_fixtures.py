"""Shared pieces of the T = 1 image objectives' tests (tests/model/objectives/test_objectives.py,
test_next_token.py, test_masked.py): a tiny model per objective, class images with a learnable
pattern packed through the objective's data path, the dense mask rows, and the sampler-against-
reference harness."""

import io

import numpy as np
import torch

from unified_fixtures import tiny_model
from unimodal.data.sample_documents import SampleDocuments
from unimodal.data.sequences import pack_documents
from unimodal.model.attention_mask import dense_mask
from unimodal.model.sampling import sample_codes
from unimodal.model.vocabulary import image_prompt

LATENT_DIM = 8


def model_for(assets, objective):
    _, tok_dir, tok, vocab, vocab_cfg = assets
    return tiny_model(vocab, vocab_cfg, tok, tok_dir, image_objective=objective)


def raw_sample(codes: torch.Tensor, seed: int, class_id: int) -> dict:
    buf = io.BytesIO()
    np.save(buf, codes.numpy().astype(np.uint16))
    return {"codes.npy": buf.getvalue(), "seed.txt": str(seed).encode(),
            "cls": str(class_id).encode()}


def class_images(vocab, n=4):
    """n fixed class images whose codes follow a simple pattern (learnable in a few steps)."""
    h, w = vocab.grid
    grid = torch.arange(h)[:, None] + torch.arange(w)[None] * 3
    return [((grid * (c + 1) + 5 * c) % vocab.codebook_size)[None] for c in range(n)]


def packed_batch(vocab, objective, rng_seed=0, seq_len=300):
    """Raw class samples -> SampleDocuments (the objective's layout) -> pack_documents."""
    build = SampleDocuments("class_images", vocab, LATENT_DIM, seq_len, blocks_per_image=2,
                            cfg_drop=0.0, caption_loss=False, image_objective=objective)
    rng = np.random.default_rng(rng_seed)
    docs = [doc for c, codes in enumerate(class_images(vocab)) for doc in build(raw_sample(codes, c, c), rng)]
    return pack_documents(docs, seq_len=seq_len, pad_id=vocab.pad_id)


def train_losses(model, vocab, objective, steps=25, fresh_layouts=False):
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    for step in range(steps):
        out = model(packed_batch(vocab, objective, rng_seed=step if fresh_layouts else 0))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["image_loss"]))
    return losses


def mask_rows(batch, objective_cls):
    dense = dense_mask(batch["doc_ids"], batch["block_ids"], objective_cls.image_rule)[:, 0]
    mod = objective_cls(batch["_vocab"], LATENT_DIM).mask_mod(batch["doc_ids"], batch["block_ids"])
    idx = torch.arange(batch["doc_ids"].shape[1])
    for row in range(dense.shape[0]):
        assert torch.equal(dense[row], mod(torch.tensor(row), torch.tensor(0), idx[:, None],
                                           idx[None, :]))
    return dense


def image_mask(vocab, name: str, objective):
    """The dense mask of the first packed row, its block and document ids, and the positions of
    its first image (block id 1)."""
    batch = {**packed_batch(vocab, name), "_vocab": vocab}
    dense = mask_rows(batch, objective)[0]
    blocks, docs = batch["block_ids"][0], batch["doc_ids"][0]
    return dense, blocks, docs, (blocks == 1).nonzero()[:, 0]


REFERENCE_SAMPLING = {  # the samplers against their references: greedy; guidance, top-k, top-p
    "greedy": dict(cfg_scale=0.0, temperature=0.0),
    "cfg_topk_topp": dict(cfg_scale=3.0, cfg_schedule="linear", temperature=1.0, top_k=12,
                          top_p=0.8),
}


def sampled_and_reference(assets, objective, cfg, reference, init_input=False):
    """The codes `sample_codes` draws for two fixed prompts and seeds, and those `reference`
    draws for the same, from a model with sharp random weights (positions and the cache
    matter); `init_input` also draws the image input's weights."""
    vocab = assets[3]
    model = model_for(assets, objective).eval()
    torch.manual_seed(3)
    model.backbone.init_weights(std=0.3)
    if init_input:
        model.image_input.init_weights(std=0.3)
    prompts = [image_prompt(vocab, "a red circle above a square"), image_prompt(vocab, class_id=2)]
    seeds = [17, 4]
    sampled = sample_codes(model, prompts, cfg, seeds)
    with torch.no_grad():
        return sampled, reference(model, prompts, cfg, seeds)


"""Small building blocks shared by the unified-model tests: a text tokenizer, an image tokenizer,
a vocabulary and a tiny model, all made on the spot (nothing downloaded)."""

import importlib.util
import io
from pathlib import Path

import numpy as np
import torch

from unimodal.model.unified import BackboneConfig, UnifiedModel, UnifiedModelConfig
from unimodal.model.vocabulary import Vocabulary, VocabularyConfig
from unimodal.tokenizer.rdpm_tokenizer import RDPMTokenizer, RDPMTokenizerConfig, save_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def class_image_documents(vocab: Vocabulary, objective: str, count: int, seq_len: int,
                          gen: torch.Generator, rng: np.random.Generator) -> list[list]:
    """`count` class-image samples of random codes (class c for sample c), each turned into its
    documents by the objective's real builder (2 blocks per image, no CFG drop)."""
    from unimodal.data.sample_documents import SampleDocuments

    build = SampleDocuments("class_images", vocab, 8, seq_len, blocks_per_image=2, cfg_drop=0.0,
                            caption_loss=False, image_objective=objective)
    per_sample = []
    for c in range(count):
        codes = torch.randint(0, vocab.codebook_size, (vocab.code_maps, *vocab.grid), generator=gen)
        buf = io.BytesIO()
        np.save(buf, codes.numpy().astype(np.uint16))
        per_sample.append(build({"codes.npy": buf.getvalue(), "seed.txt": str(c).encode(),
                                 "cls": str(c).encode()}, rng))
    return per_sample


# Ops whose output size or value the host must read: on CUDA each makes the host wait for every
# kernel queued before it (an .item(), a nonzero, a masked_select, a unique, ...).
HOST_WAIT_OPS = frozenset({"nonzero", "masked_select", "masked_scatter_backward",
                           "_local_scalar_dense", "is_nonzero", "_unique2", "unique_consecutive",
                           "unique_dim", "equal"})


def host_waits(run) -> list[str]:
    """The ops of `run()` (forward and backward alike: on the CPU the autograd engine runs in
    this thread, under the same dispatch mode) that would make the host wait for the GPU:
    HOST_WAIT_OPS, a repeat_interleave with tensor repeats and no output_size, and indexing
    with a boolean tensor (a hidden nonzero)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: list[str] = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = func.overloadpacket.__name__.rstrip("_")
            if name in HOST_WAIT_OPS or (name == "repeat_interleave" and torch.is_tensor(args[0])
                                         and func._overloadname == "Tensor"
                                         and kwargs.get("output_size") is None):
                seen.append(str(func))
            if name in ("index", "index_put") and any(
                    torch.is_tensor(t) and t.dtype == torch.bool for t in args[1]):
                seen.append(f"{func} with a boolean index")
            return func(*args, **kwargs)

    with Recorder():
        run()
    return seen


def causal_mask(ids: torch.Tensor) -> torch.Tensor:
    """Plain causal attention for token ids (B, L): one document, no image blocks, through the
    model's own mask rule; bool (B, 1, L, L)."""
    from unimodal.model.attention_mask import dense_mask
    from unimodal.model.objectives.rdpm import RDPMObjective

    b, length = ids.shape
    return dense_mask(torch.zeros(b, length, dtype=torch.long, device=ids.device),
                      torch.full((b, length), -1, device=ids.device), RDPMObjective.image_rule)


def mixed_batch(vocab: Vocabulary, codes: torch.Tensor, seed: int = 11) -> dict:
    """One packed row of three RDPM documents over codes (T=4, 8, 8) and latent dim 8: a captioned
    image (blocks at steps 1 and 3, caption targets on), a text document, a class image (step 4)."""
    from unimodal.data.sequences import pack_documents, text_document
    from unimodal.model.objectives.rdpm import image_document
    from unimodal.model.vocabulary import image_prompt

    img = image_document(vocab, image_prompt(vocab, "a red circle"), codes, seed, [1, 3], 8, True)
    txt = text_document(vocab, vocab.encode_text("the blue square is on the left."))
    cls = image_document(vocab, image_prompt(vocab, class_id=5), codes, seed + 1, [4], 8, False)
    return pack_documents([img, txt, cls], seq_len=400)


def load_script(rel: str):
    spec = importlib.util.spec_from_file_location(rel.replace("/", "_")[:-3], ROOT / rel)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_tokenizer_config(**kw) -> RDPMTokenizerConfig:
    return RDPMTokenizerConfig(**{"image_size": 32, "base_channels": 8, "channel_mult": [1, 2, 2],
                                  "latent_dim": 8, "codebook_size": 64, "code_maps": 4, **kw})


def tiny_rdpm_tokenizer(**kw) -> RDPMTokenizer:
    """A tiny RDPM tokenizer (tiny_tokenizer_config with `kw`) in eval mode, seeded with 0, its
    shared-bias conv drawn with std 0.05 so the shared bias acts (zero at init)."""
    torch.manual_seed(0)
    tok = RDPMTokenizer(tiny_tokenizer_config(**kw)).eval()
    torch.nn.init.normal_(tok.quantizer.bias_conv.weight, std=0.05)
    return tok


def make_assets(folder: Path, num_classes: int = 28, code_maps: int = 4):
    """(text tokenizer path, image tokenizer folder, vocabulary) under `folder`; `code_maps` = T of
    the image tokenizer (1 for the next_token and masked objectives)."""
    text_model = folder / "text.model"
    if not text_model.exists():
        load_script("tokenizers/train_text.py").main(
            ["shapes_corpus=1500", f"out={text_model}", "vocab_size=300"])
    tok = tiny_rdpm_tokenizer(code_maps=code_maps)
    save_tokenizer(tok, folder / "image_tokenizer")
    vocab_cfg = VocabularyConfig(text_tokenizer=str(text_model), num_classes=num_classes,
                                 codebook_size=64, code_maps=code_maps, grid=[8, 8])
    return text_model, folder / "image_tokenizer", tok, Vocabulary.build(vocab_cfg), vocab_cfg


def _merged(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (_merged(out[key], value) if isinstance(value, dict)
                    and isinstance(out.get(key), dict) else value)
    return out


def write_pretrain_config(path: Path, text_model: Path, tokenizer_dir: Path,
                          sources: list[tuple[str, str, str, float]], **sections: dict) -> Path:
    """A tiny pretraining YAML over make_assets' tokenizers: the tiny backbone, `sources` as
    (name, kind, shards, weight) in this order, 256-token rows, 2 a batch, fp32 DeepSpeed; each of
    `sections` (model=, data=, optim=, train=, deepspeed=) is merged into its section."""
    import yaml

    config = {
        "model": {"backbone": {"size": "tiny"},
                  "vocab": {"text_tokenizer": str(text_model), "num_classes": 28},
                  "image_tokenizer": str(tokenizer_dir)},
        "data": {"sources": [{"name": name, "kind": kind, "shards": str(shards), "weight": weight}
                             for name, kind, shards, weight in sources],
                 "seq_len": 256, "rows_per_batch": 2, "num_workers": 0},
        "deepspeed": {"bf16": {"enabled": False}},
    }
    path.write_text(yaml.safe_dump(_merged(config, sections), sort_keys=False))
    return path


def tiny_model(vocab: Vocabulary, vocab_cfg: VocabularyConfig, tok: RDPMTokenizer,
               tokenizer_dir: Path, code_head: str = "shared", image_objective: str = "rdpm",
               **backbone) -> UnifiedModel:
    torch.manual_seed(0)
    cfg = UnifiedModelConfig(backbone=BackboneConfig(**backbone), vocab=vocab_cfg,
                             image_tokenizer=str(tokenizer_dir), code_head=code_head,
                             image_objective=image_objective)
    model = UnifiedModel(cfg, vocab, tok.cfg)
    model.load_codebook(tok.state_dict())
    return model

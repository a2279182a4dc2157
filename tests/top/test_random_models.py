"""Random-weight benchmark models (unimodal/random_models.py): the named backbone size over 1000
class tokens and the paper's tokenizer geometry, in bf16 and eval mode, the tokenizer's frozen
codebook copied in, and a text tokenizer trained into the given folder."""

import pytest
import torch

from unimodal.model.unified import BackboneConfig
from unimodal.random_models import random_class_conditional_model
from unimodal.tokenizer.rdpm_tokenizer import RDPMTokenizerConfig


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("random")
    torch.manual_seed(0)
    return random_class_conditional_model("tiny", folder), folder


def test_the_tiny_model_matches_the_paper_geometry(built):
    (model, tokenizer, vocab), folder = built
    paper = RDPMTokenizerConfig.from_size("paper_f16")
    assert tokenizer.cfg == paper and not tokenizer.training and not model.training
    assert (vocab.num_classes, vocab.codebook_size, vocab.code_maps, tuple(vocab.grid)) == (
        1000, paper.codebook_size, paper.code_maps, paper.grid)
    assert vocab.text_size == 300 and (folder / "text.model").is_file()
    width = BackboneConfig.SIZES["tiny"]["hidden_size"]
    assert model.backbone.config.hidden_size == width and model.cfg.backbone.size == "tiny"
    assert model.backbone.head_weight.shape == (vocab.size, width)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert vocab.class_token(999) < vocab.size


def test_the_tokenizers_frozen_weights_are_copied_in(built):
    (model, tokenizer, _), _ = built
    tok_state = tokenizer.state_dict()
    copied = {k: v for k, v in model.image_input.quantizer.state_dict().items()}
    shared = [k for k in copied if f"quantizer.{k}" in tok_state]
    assert shared                                         # the codebook (and shared bias) at least
    for key in shared:
        torch.testing.assert_close(copied[key].float(), tok_state[f"quantizer.{key}"].to(torch.bfloat16).float())

"""The tokenizer's training FLOPs per image: torch's counter on one image, forward + backward."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from unimodal.tokenizer.flops import training_flops_per_image
from unimodal.tokenizer.rdpm_tokenizer import RDPMTokenizer, RDPMTokenizerConfig


def tokenizer(image_size=32) -> RDPMTokenizer:
    torch.manual_seed(0)
    return RDPMTokenizer(RDPMTokenizerConfig(image_size=image_size, base_channels=8,
                                             channel_mult=[1, 2], num_res_blocks=1,
                                             mid_attention=False, latent_dim=4, codebook_size=16,
                                             code_maps=3))


def forward_flops(run) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        run()
    return float(counter.get_total_flops())


def test_training_flops_are_forward_plus_twice_the_weighted_part_and_leave_the_model_alone():
    model = tokenizer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = model.cfg
    images = torch.zeros(1, 3, cfg.image_size, cfg.image_size)
    noise = torch.randn(1, cfg.code_maps, cfg.latent_dim, *cfg.grid)
    forward = forward_flops(lambda: model(images, noise=noise))
    total = training_flops_per_image(model)
    # backward costs about two forwards (input and weight gradients of every conv and matmul);
    # the first conv needs no input gradient, so a little less than 3x
    assert 2.5 * forward < total <= 3 * forward
    decoder_only = training_flops_per_image(model, decoder_only=True)
    decoder = forward_flops(lambda: model.decoder(model.quantize(images, noise=noise).latent))
    encoder_and_quantizer = forward_flops(lambda: model.quantize(images, noise=noise))
    assert decoder_only == pytest.approx(encoder_and_quantizer + 3 * (decoder - encoder_and_quantizer),
                                         rel=0.05)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_flops_grow_with_the_pixels():
    small, large = (training_flops_per_image(tokenizer(s)) for s in (32, 64))
    assert large == pytest.approx(4 * small, rel=0.05)   # convolutions: work per pixel

"""Model FLOPs of one tokenizer training step per image (per clip for audio), for the trainer's
TFLOP/s and MFU.

Counted once per run by torch's FlopCounterMode (matmuls and convolutions, as torch counts them)
on one image through a copy of the model: forward and backward of encoder, quantizer and decoder
with the reconstruction loss, or, for a decoder-only fine-tune, the frozen encoder and quantizer
forward plus the decoder's forward and backward. Not counted: the perceptual (LPIPS) network and
the discriminator (on from loss.gan_start), so the figure is the autoencoder's and does not jump
when the GAN starts; element-wise work (norms, activations, the quantizer's distances beyond its
matmuls) is not counted either, as in the usual MFU convention.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from unimodal.tokenizer.rdpm_tokenizer import RDPMTokenizer


def training_flops_per_image(model: RDPMTokenizer, decoder_only: bool = False) -> float:
    cfg = model.cfg
    replica = copy.deepcopy(model).train()   # the copy's statistics and gradients are thrown away
    device = next(replica.parameters()).device
    images = torch.zeros(1, *cfg.input_shape, device=device)  # one image or one audio clip
    # FLOPs do not depend on values; zeros leave the global RNG untouched (runs reseed per step)
    noise = torch.zeros(1, cfg.code_maps, cfg.latent_dim, *cfg.grid, device=device)
    with FlopCounterMode(display=False) as counter:
        if decoder_only:
            with torch.no_grad():
                latent = replica.quantize(images, noise=noise).latent
            recon = replica.decoder(latent)
        else:
            recon, _ = replica(images, noise=noise)
        F.mse_loss(recon.float(), images).backward()
    return float(counter.get_total_flops())

"""Scoring one trained cell: prompt following (the shapes checker, as eval/shapes_score.py), the
Fréchet distance in the shapes classifier's features (as eval/shapes_fd.py), Inception FID when
weights are given, and the inference cost (FLOPs per image, measured ms per image).

The held-out scenes, the classifier and the reference statistics are loaded once per run
(`Scorer`) and serve every cell, so all cells are scored against the same reference.

Inception FID is FID only: torch-fidelity's Inception 2048-d pool features (`inception_feature_layer`
64 only makes a CPU test fast) and Fréchet distance; no IS or precision/recall (their k-NN needs
more than 3 images a side, which a small grid may not have). Its reference is the same
`reference_images` held-out scenes rendered at the generated images' size (Inception resizes both
to 299 px, so a reference at another size would add a resampling difference), its statistics
computed once per size with the Inception weights loaded once.
"""

from __future__ import annotations

import numpy as np
import torch

from unimodal.data.shapes import NUM_CLASSES, render_sample
from unimodal.distributed import pick_device
from unimodal.metrics.generation import (FidStatistics, ImageArrayDataset, InceptionFeatures,
                                         fid_from_statistics)
from unimodal.metrics.shapes_checker import (ShapesAccuracy, score_image, spec_for_class,
                                             spec_from_objects)
from unimodal.metrics.shapes_features import (heldout_renders, load_classifier,
                                              shapes_frechet_distance, shapes_statistics)
from unimodal.model.export import load_unified
from unimodal.model.sampling import ImageRequest, generate_images
from unimodal.model.vocabulary import image_prompt
from unimodal.model.sampling_rules import ImageSamplingConfig
from unimodal.objective_study.config import ScoreConfig
from unimodal.pretraining.inference_cost import inference_flops, ms_per_image, sampling_steps

ATTRIBUTES = ("prompt", "color", "shape", "position", "count")


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3), as the PNGs the eval scripts write."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


class Scorer:
    def __init__(self, cfg: ScoreConfig, sampling: ImageSamplingConfig):
        self.cfg, self.sampling = cfg, sampling
        self.device = pick_device(cfg.device)
        # Scenes do not depend on the render size: render small for the captions and attributes.
        self.scenes = [render_sample(cfg.heldout_offset + i, cfg.data_seed, 32)
                       for i in range(cfg.captions)]
        self.classifier, record = load_classifier(cfg.classifier, self.device)
        self.classifier_sha256 = record.get("weights_sha256", "?")
        renders = heldout_renders(cfg.reference_images, cfg.heldout_offset, cfg.data_seed,
                                  self.classifier.cfg.image_size)
        self.reference = shapes_statistics(self.classifier, renders, cfg.batch_size)
        self.inception = (InceptionFeatures(cfg.inception_weights, self.device, cfg.batch_size,
                                            option="score.inception_weights",
                                            layers=(cfg.inception_feature_layer,))
                          if cfg.inception_weights else None)
        self.inception_reference: dict[int, FidStatistics] = {}   # image side -> statistics

    def requests(self) -> list[tuple[ImageRequest, object]]:
        out = [(ImageRequest(caption=s.caption), spec_from_objects(s.objects)) for s in self.scenes]
        out += [(ImageRequest(class_id=c), spec_for_class(c))
                for c in range(NUM_CLASSES) for _ in range(self.cfg.per_class)]
        return out

    def score(self, export: str) -> dict:
        cfg, sampling = self.cfg, self.sampling
        # bf16 on CUDA, as the eval scripts load for sampling (eval_sampling.load_for_sampling).
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        model, tokenizer = load_unified(export, self.device, dtype)
        pairs = self.requests()
        images = generate_images(model, tokenizer, [r for r, _ in pairs], sampling, cfg.batch_size)
        caption_acc, class_acc = ShapesAccuracy(), ShapesAccuracy()
        for image, (request, spec) in zip(images, pairs):
            acc = caption_acc if request.caption is not None else class_acc
            acc.update(score_image(image, spec), spec)
        generated = to_uint8(images)
        result = {"captions": caption_acc.compute() if cfg.captions else None,
                  "classes": class_acc.compute() if cfg.per_class else None,
                  "fd_shapes": shapes_frechet_distance(self.classifier, generated, self.reference,
                                                       cfg.batch_size),
                  "generated_images": len(generated), "classifier_sha256": self.classifier_sha256}
        if self.inception is not None:
            result["inception_fid"] = self.inception_fid(generated)
        result.update(self.inference_cost(model, tokenizer))
        return result

    def inception_statistics(self, images: np.ndarray, desc: str) -> FidStatistics:
        features = self.inception(ImageArrayDataset(images), desc)[self.cfg.inception_feature_layer]
        return FidStatistics.from_features(features)

    def inception_fid(self, generated: np.ndarray) -> float:
        """FID of uint8 (N, S, S, 3) images against the held-out renders at side S."""
        side = generated.shape[1]
        if side not in self.inception_reference:
            renders = heldout_renders(self.cfg.reference_images, self.cfg.heldout_offset,
                                      self.cfg.data_seed, side)
            self.inception_reference[side] = self.inception_statistics(renders,
                                                                       "inception: reference")
        return fid_from_statistics(self.inception_statistics(generated, "inception: generated"),
                                   self.inception_reference[side])

    def inference_cost(self, model, tokenizer) -> dict:
        """FLOPs per image at the mean caption prompt length (class prompts are shorter), and
        ms per image at each timing batch size."""
        captions = [s.caption for s in self.scenes] or ["a red circle"]
        prompt_len = round(float(np.mean([len(image_prompt(model.vocab, c)) for c in captions])))
        ms = {str(b): ms_per_image(model, tokenizer, captions, self.sampling, b,
                                   self.cfg.timing_repeats) for b in self.cfg.timing_batch_sizes}
        return {"inference_flops": inference_flops(model, prompt_len, cfg=self.sampling),
                "sampling_steps": sampling_steps(model, self.sampling), "prompt_len": prompt_len,
                "ms_per_image": ms, "device": str(self.device),
                "parameters": model.num_parameters()}

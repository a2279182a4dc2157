"""FD (shapes-classifier features) of a folder of generated PNGs against held-out shapes renders.

    python eval/shapes_fd.py classifier=runs/shapes_classifier generated=runs/shapes_score/images

Not FID: the features are the 128-d feature layer of the small shapes classifier that
eval/train_shapes_classifier.py trains once (unimodal/metrics/shapes_features.py), not Inception's
(eval/fid.py computes Inception FID from a weights file). Numbers compare only under the same
classifier file; its sha256 and held-out accuracy are in the report. The reference is the
held-out scenes heldout_offset.. of the shapes stream data_seed (the scenes eval/shapes_score.py
prompts with), rendered at the classifier's size; generated images of any size are resized to it.
The floor row scores as many further held-out renders as there are generated images: the FD
that a perfect generator would get at this sample size. Writes shapes_fd.json and shapes_fd.md.
"""

from dataclasses import dataclass
from pathlib import Path

from unimodal.cli import parse_config
from unimodal.distributed import pick_device
from unimodal.metrics.generation import image_folder_dataset
from unimodal.metrics.report import grouped_table, write_report
from unimodal.metrics.shapes_features import (METRIC_NAME, heldout_renders, load_classifier,
                                              shapes_frechet_distance, shapes_statistics)


@dataclass
class ShapesFdConfig:
    classifier: str = "runs/shapes_classifier"   # folder from eval/train_shapes_classifier.py
    generated: str = ""                          # folder of generated png/jpg (searched recursively)
    out: str = "runs/shapes_fd"                  # folder for shapes_fd.json / .md
    reference_images: int = 2000                 # held-out renders for the reference statistics
    heldout_offset: int = 1_000_000              # first reference scene (eval/shapes_score.py's)
    data_seed: int = 0                           # the shapes data seed
    batch_size: int = 256
    device: str = "auto"                         # auto | cpu | cuda | cuda:N

    def validate(self) -> None:
        if not self.generated:
            raise ValueError("generated=FOLDER is required (a folder of generated PNGs)")
        if self.reference_images < 2 or self.batch_size < 1:
            raise ValueError(f"reference_images={self.reference_images} (>= 2), "
                             f"batch_size={self.batch_size} (>= 1)")


def main(argv=None):
    cfg = parse_config(ShapesFdConfig, argv, __doc__, __file__)
    if not Path(cfg.generated).is_dir():
        raise FileNotFoundError(f"generated={cfg.generated}: not a folder (of generated PNGs)")
    model, record = load_classifier(cfg.classifier, pick_device(cfg.device))
    size = model.cfg.image_size
    generated = image_folder_dataset(cfg.generated, recursive=True, resize=size)
    n = len(generated)
    reference = shapes_statistics(model, heldout_renders(cfg.reference_images, cfg.heldout_offset,
                                                         cfg.data_seed, size), cfg.batch_size)
    floor = heldout_renders(n, cfg.heldout_offset + cfg.reference_images, cfg.data_seed, size)
    metrics = {"generated": {"fd": shapes_frechet_distance(model, generated, reference, cfg.batch_size),
                             "images": n},
               "held-out renders (floor)": {"fd": shapes_frechet_distance(model, floor, reference,
                                                                          cfg.batch_size),
                                            "images": n}}
    accuracy = record.get("heldout", {})
    title = (f"{METRIC_NAME}, lower is better; not Inception FID. Classifier "
             f"{record.get('weights_sha256', '?')[:12]} ({cfg.classifier}), held-out accuracy: "
             + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items() if isinstance(v, float)))
    settings = {"metric": METRIC_NAME, "classifier": cfg.classifier,
                "classifier_sha256": record.get("weights_sha256"), "classifier_heldout": accuracy,
                "generated": cfg.generated, "reference_images": cfg.reference_images,
                "heldout_offset": cfg.heldout_offset, "data_seed": cfg.data_seed, "image_size": size}
    notes = [f"{METRIC_NAME}: Fréchet distance of Gaussians fitted to the classifier's "
             f"{model.cfg.feature_dim}-d feature layer (torch-fidelity's formula); comparable only "
             "under the same classifier file",
             "floor: further held-out renders, as many as generated images, against the same "
             "reference (the FD of a perfect generator at this sample size)"]
    table = grouped_table(metrics, ["fd", "images"], header="images scored")
    report = write_report(cfg.out, "shapes_fd", metrics, settings, notes, title, table)
    print(f"wrote shapes_fd.json and shapes_fd.md to {cfg.out}", flush=True)
    print(f"## {title}\n\n{table}", flush=True)
    return report


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)

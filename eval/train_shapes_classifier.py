"""Train the small shapes classifier whose features give "FD (shapes-classifier features)", once.

    python eval/train_shapes_classifier.py out=runs/shapes_classifier num_workers=8   # GPU
    python eval/train_shapes_classifier.py out=/tmp/c steps=60 batch_size=32 lr=0.005 model.image_size=32 model.channels=[16,32,32] model.feature_dim=64 heldout_images=256
(the second is the tests' CPU setting: seconds, and above chance, not a classifier to score with)

Renders shapes scenes (unimodal/data/shapes.py), trains the heads in
unimodal/metrics/shapes_features.py (colour x shape present, object count, per-colour centre,
primary class), scores held-out scenes, and writes <out>/weights.safetensors and
<out>/classifier.json (settings, held-out accuracy, seconds, img/s, weights sha256). eval/shapes_fd.py
reads that folder. A folder that already holds a classifier is refused unless overwrite=true.
"""

from dataclasses import dataclass, field

from unimodal.checkpointing import check_fresh_out_dir
from unimodal.cli import parse_config
from unimodal.distributed import pick_device
from unimodal.metrics.report import grouped_table
from unimodal.metrics.shapes_features import (RECORD_FILE, WEIGHTS_FILE, ClassifierTrainingConfig,
                                              ShapesClassifierConfig, save_classifier,
                                              train_classifier)


@dataclass
class TrainShapesClassifierConfig(ClassifierTrainingConfig):
    out: str = "runs/shapes_classifier"   # folder for weights.safetensors and classifier.json
    overwrite: bool = False               # replace a classifier already in `out`
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    model: ShapesClassifierConfig = field(default_factory=ShapesClassifierConfig)

    def validate(self) -> None:
        super().validate()
        self.model.validate()


def main(argv=None):
    cfg = parse_config(TrainShapesClassifierConfig, argv, __doc__, __file__)
    check_fresh_out_dir(cfg.out, [WEIGHTS_FILE, RECORD_FILE], cfg.overwrite, key="out")
    model, record = train_classifier(cfg, cfg.model, pick_device(cfg.device))
    record = save_classifier(model, record, cfg.out)
    heldout = record["heldout"]
    row = {**{k: v for k, v in heldout.items() if k != "heldout_images"},
           "seconds": round(record["train_seconds"], 1), "img/s": round(record["images_per_second"]),
           "steps": cfg.steps, "device": record["device"]}
    print(f"wrote {WEIGHTS_FILE} and {RECORD_FILE} to {cfg.out}", flush=True)
    print(f"shapes classifier, held-out accuracy on {heldout['heldout_images']} scenes "
          "(position_error: mean |centre error|, image fractions)", flush=True)
    print(grouped_table({"shapes classifier": row}, list(row), header="model"), flush=True)
    return record


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)

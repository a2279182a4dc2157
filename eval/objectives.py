"""Compare image objectives on one backbone at fixed training FLOPs, on the shapes data.

    timeout 560 python eval/objectives.py --config configs/objectives_shapes.yaml deadline_minutes=8.5
                                                        # one ~9-minute GPU call; repeat until done
    python eval/objectives.py --config configs/objectives_tiny.yaml score.classifier=runs/c   # CPU

A grid of objectives (rdpm, next_token, masked) x model sizes x training FLOPs budgets. Prepared
once in <out>/prepare (or prepare.dir): a text tokenizer, an RDPM image tokenizer (T =
prepare.rdpm_code_maps) and a plain VQ one (T = 1, the same codebook size) with their code shards.
Each cell trains through the pretraining library (train/pretrain.py's) for budget / FLOPs-per-step
steps, exports, and is scored: shapes prompt following (whole prompt, per attribute, class
prompts), "FD (shapes-classifier features)" (score.classifier, from eval/train_shapes_classifier.py),
Inception FID when score.inception_weights is given, training FLOPs, inference FLOPs per image and
ms/image at score.timing_batch_sizes. Cells run in worker processes, parallel_cells at a time,
smallest budget first; with deadline_minutes a cell starts only if its estimate fits the time left
(kill_at_minutes stops the ones still running). A finished cell writes
<out>/cells/<cell>/result.json atomically; a rerun skips it. Writes <out>/results.md and three PNG
plots from every finished cell; prints the table last.
"""

from pathlib import Path

from unimodal.cli import parse_config
from unimodal.objective_study.config import ObjectivesStudyConfig
from unimodal.objective_study.study import run_study

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    cfg = parse_config(ObjectivesStudyConfig, argv, __doc__, __file__)
    return run_study(cfg, ROOT)


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)

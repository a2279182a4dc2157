"""The compute-controlled comparison of image objectives (eval/objectives.py is the entry point).

A grid of objectives x model sizes x training FLOPs budgets on the shapes data, one backbone:

    config.py    ObjectivesStudyConfig: the grid, what is prepared once, scoring; validated first
    prepare.py   the text tokenizer, an RDPM (T = rdpm_code_maps) and a plain VQ (T = 1) image
                 tokenizer of the same codebook size, and their code shards, once per grid
    cell.py      one cell: its pretraining config, steps = budget / FLOPs of one step, training;
                 the run order (smallest budget first)
    scoring.py   prompt following, FD (shapes-classifier features), Inception FID (with weights),
                 inference FLOPs and ms/image
    cell_worker.py  one cell in its own process: train, score, write result.json atomically
    schedule.py  up to parallel_cells workers at once, within deadline_minutes / kill_at_minutes
    child_process.py  the child processes' environment, log files and termination
    report.py    results.md and the plots
    study.py     the loop: prepare, plan every cell, run the unfinished ones (schedule.py), the
                 report from every result.json; resumable (a rerun skips finished cells)

It sits on the top floor: it uses the trainer, the metrics, the data and the model.
"""

"""The study's outputs (unimodal/objective_study/report.py): results.md rows against hand-written
expected cells (percentages, "-" for what was not scored, the FD column never called FID, the
Inception column only when a cell has it), the accuracy used for the plots, and the written files."""

from unimodal.metrics.shapes_features import METRIC_NAME
from unimodal.objective_study.report import (PLOTS, results_table, whole_prompt_accuracy,
                                             write_report)


def result(objective: str, budget: float, captions: dict | None, classes: dict | None,
           size: str = "xs", **scores) -> dict:
    return {"objective": objective, "size": {"name": size}, "budget": budget, "steps": 12,
            "train_flops": budget * 1.01,
            "scores": {"captions": captions, "classes": classes, "parameters": 123456,
                       "fd_shapes": 12.345678, "sampling_steps": 3, "inference_flops": 2.5e9,
                       "ms_per_image": {"1": 4.56789}, **scores}}


CAPTIONS = {"prompt": 0.5, "color": 0.75, "shape": 1.0, "position": 0.125, "count": 0.0}


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("|").split("|")]


def test_the_table_matches_hand_written_rows():
    header, rule, *rows = results_table([result("rdpm", 7e7, CAPTIONS, {"prompt": 0.25}),
                                         result("masked", 1.8e8, None, {"prompt": 1.0})],
                                        [1, 4]).splitlines()
    assert _cells(header) == [
        "objective", "size", "params", "budget (FLOPs)", "steps", "train FLOPs",
        "captions: prompt %", "colour %", "shape %", "position %", "count %", "class prompts %",
        METRIC_NAME, "steps to sample", "inference GFLOPs/img", "ms/img @ batch 1", "ms/img @ batch 4"]
    assert "FID" not in header and rule == "|" + "---|" * 17
    assert _cells(rows[0]) == ["rdpm", "xs", "1.23e+05", "7e+07", "12", "7.07e+07", "50.0", "75.0",
                               "100.0", "12.5", "0.0", "25.0", "12.35", "3", "2.5", "4.57", "-"]
    assert _cells(rows[1])[6:12] == ["-", "-", "-", "-", "-", "100.0"]   # no captions scored


def test_the_inception_column_appears_only_with_a_value():
    with_fid = result("rdpm", 1e6, CAPTIONS, None, inception_fid=3.14159)
    header, _, first, second = results_table([with_fid, result("rdpm", 2e6, CAPTIONS, None)],
                                             [1]).splitlines()
    column = _cells(header).index("Inception FID")
    assert _cells(first)[column] == "3.142" and _cells(second)[column] == "-"
    assert "Inception FID" not in results_table([result("rdpm", 2e6, CAPTIONS, None)], [1])


def test_whole_prompt_accuracy_prefers_captions():
    assert whole_prompt_accuracy(result("rdpm", 1.0, CAPTIONS, {"prompt": 0.9})) == 0.5
    assert whole_prompt_accuracy(result("rdpm", 1.0, None, {"prompt": 0.9})) == 0.9
    assert whole_prompt_accuracy(result("rdpm", 1.0, None, None)) is None


def test_write_report_writes_the_table_notes_and_plots(tmp_path):
    results = [result(o, b, CAPTIONS if b < 1e8 else None, {"prompt": 0.5}, size=s)
               for o in ("rdpm", "masked") for s in ("xs", "s") for b in (7e7, 1.8e8)]
    table = write_report(results, tmp_path, [1], ["a note", "another"])
    text = (tmp_path / "results.md").read_text()
    assert text == ("# Image objectives on shapes at fixed training FLOPs\n\n" + table
                    + "\n\n- a note\n- another\n\n" + "\n".join(f"![{p}]({p})" for p in PLOTS) + "\n")
    assert len(table.splitlines()) == 2 + 8
    assert all((tmp_path / p).stat().st_size > 1000 for p in PLOTS)
    assert not (tmp_path / "results.md.tmp").exists()

"""Results files are scored as written: repeated entries count, as pycocotools counts them, and a
value that is not a finite number is an error naming the entry. Only the repeats that
multi-process padding adds are dropped."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from posecore._cli.main import main
from posecore.metrics._coco_ap import CocoAPMetric
from posecore.metrics._results import parse_coco_predictions, predictions_to_instances
from posecore.testing._metric_checks import padded_like_processes

COCO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco" / "test_coco.json"
STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
pytestmark = [
    pytest.mark.skipif(not COCO.is_file(), reason=f"shared sample data not found at {COCO}"),
    pytest.mark.usefixtures("clean_plugin_env"),
]


def ground_truth_as_results() -> list[dict]:
    """Every labelled person of the sample as a prediction of score 1 (pycocotools ignores the
    unlabelled ones on both sides; xtcocotools also drops predictions without a scored keypoint)."""
    data = json.loads(COCO.read_text(encoding="utf-8"))
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": a["keypoints"], "score": 1.0}
            for a in data["annotations"] if a["num_keypoints"] > 0]


def pycocotools_stats(results_file: Path) -> list[float]:
    from pycocotools.coco import COCO as CocoApi
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = CocoApi(str(COCO))
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(str(results_file)), "keypoints")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(s) for s in evaluator.stats]


def eval_table(results_file: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, float]:
    code = main(["eval", "--gt", str(COCO), "--pred", str(results_file), "--metric", "coco_ap", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)["metrics"]["coco_ap"]


@pytest.mark.parametrize("layout", ["file-twice", "each-entry-twice"])
def test_a_results_file_with_every_entry_twice_scores_as_pycocotools(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str
) -> None:
    once = ground_truth_as_results()
    twice = once + once if layout == "file-twice" else [entry for entry in once for _ in range(2)]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(twice), encoding="utf-8")
    table = eval_table(path, capsys)
    reference = pycocotools_stats(path)
    assert [table[key] for key in STATS] == pytest.approx(reference, abs=1e-12)
    assert table["AP"] < 0.75  # the repeats are false positives at the top of the ranking, not dropped


def test_the_same_entries_once_score_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(ground_truth_as_results()), encoding="utf-8")
    assert eval_table(path, capsys)["AP"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [("keypoints", "NaN", "NaN"), ("keypoints", "Infinity", "Infinity"), ("keypoints", "null", "null"),
     ("keypoints", '"81"', '"81"'), ("score", "NaN", "nan"), ("score", "-Infinity", "-inf"),
     ("bbox", "NaN", "NaN")],
    ids=["nan-keypoint", "inf-keypoint", "null-keypoint", "text-keypoint", "nan-score", "inf-score", "nan-bbox"],
)
def test_a_value_that_is_not_a_finite_number_is_an_error_naming_the_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: str, shown: str
) -> None:
    entries = [{**entry, "bbox": [10.0, 20.0, 30.0, 40.0]} for entry in ground_truth_as_results()]
    text = [json.dumps(entry) for entry in entries]
    bad = entries[3]
    if field == "keypoints":
        bad = {**bad, "keypoints": [*bad["keypoints"][:4], "BAD", *bad["keypoints"][5:]]}
    elif field == "bbox":
        bad = {**bad, "bbox": [10.0, "BAD", 30.0, 40.0]}
    else:
        bad = {**bad, "score": "BAD"}
    text[3] = json.dumps(bad).replace('"BAD"', value)  # JSON as Python's json module writes NaN and Infinity
    path = tmp_path / "results.json"
    path.write_text("[" + ",\n".join(text) + "]", encoding="utf-8")
    assert main(["eval", "--gt", str(COCO), "--pred", str(path), "--metric", "coco_ap"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: prediction [3] field '{field}'" in err, err
    if field == "score":
        assert f"must be a finite number; got {shown}" in err, err
    else:
        assert f"holds {shown} at position {4 if field == 'keypoints' else 1}" in err, err


def test_the_repeats_of_multi_process_padding_are_still_dropped() -> None:
    """The engine's results carry their sample's index; padding repeats a sample with its index, so
    they collapse, while a results file's equal entries (each its own index) do not."""
    metric = CocoAPMetric(str(COCO), metainfo="coco", score_mode="bbox", nms_thr=None)
    results = predictions_to_instances(parse_coco_predictions(ground_truth_as_results(), metric.annotations))

    def table(instances: list) -> dict[str, float]:
        metric.reset()
        metric.update(instances)
        return metric.compute()

    reference = table(results)
    for processes in (2, 3, 4):
        assert table(padded_like_processes(results, processes)) == reference
    doubled = predictions_to_instances(parse_coco_predictions(ground_truth_as_results() * 2, metric.annotations))
    assert table(doubled)["AP"] < reference["AP"]

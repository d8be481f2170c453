"""``posecore eval --gt FILE --pred FILE``: scoring prediction files from the command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from posecore._cli.main import main

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COCO = SHARED / "coco" / "test_coco.json"
AIC = SHARED / "aic" / "test_aic.json"
MPII_GT = SHARED / "mpii" / "test_mpii_gt_val.mat"
TOMPSON = SHARED / "mpii" / "test_mpii_tompson2015_preds.json"
pytestmark = [
    pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared sample data not found at {SHARED}"),
    pytest.mark.usefixtures("clean_plugin_env"),
]


def gt_predictions(gt_file: Path, *, with_id: bool = True) -> list[dict]:
    """The annotations as COCO results (score 1); people with no labelled keypoint left out."""
    data = json.loads(gt_file.read_text())
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": a["keypoints"], "score": 1.0,
         **({"id": a["id"]} if with_id else {})}
        for a in data["annotations"]
        if any(v > 0 for v in a["keypoints"][2::3])
    ]  # fmt: skip


def write(path: Path, content: object) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def run_json(capsys: pytest.CaptureFixture[str], *args: object) -> dict:
    code = main(["eval", *map(str, args), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_ground_truth_scores_one_and_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred = write(tmp_path / "pred.json", gt_predictions(COCO))
    assert main(["eval", "--gt", str(COCO), "--pred", str(pred), "--metric", "coco_ap"]) == 0
    out = capsys.readouterr().out
    assert "coco_ap" in out and "AP50" in out and "ARl" in out and "1.0000" in out
    document = run_json(capsys, "--gt", COCO, "--pred", pred)  # coco_ap is the default for a json GT
    assert document["metrics"]["coco_ap"] == {
        k: 1.0 for k in ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
    }


def test_several_metrics_and_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predictions = gt_predictions(COCO)
    for p in predictions:  # 3 px right, 4 px down: every labelled keypoint is 5 px off
        p["keypoints"] = [v + (3 if i % 3 == 0 else 4 if i % 3 == 1 else 0) for i, v in enumerate(p["keypoints"])]
    pred = write(tmp_path / "pred.json", predictions)
    document = run_json(
        capsys, "--gt", COCO, "--pred", pred, "--metric", "coco_ap,pck", "--metric", "epe",
        "-O", "pck.thresholds=0.05,0.2", "-O", "mean=instance", "--metainfo", "coco",
    )  # fmt: skip
    metrics = document["metrics"]
    assert list(metrics) == ["coco_ap", "pck", "epe"]
    assert 0 < metrics["coco_ap"]["AP"] < 1
    assert list(metrics["pck"]) == ["PCK@0.05/instance", "PCK@0.2/instance", "mPCK/instance"]
    assert metrics["epe"]["EPE"] == pytest.approx(5.0, rel=1e-6)


def test_aic_without_area_and_the_scoring_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred = write(tmp_path / "pred.json", gt_predictions(AIC))
    document = run_json(capsys, "--gt", AIC, "--pred", pred, "--metainfo", "aic", "-O", "use_area=false")
    assert document["metrics"]["coco_ap"]["AP"] == 1.0
    # mmpose's pipeline instead of the file's scores: rescoring and OKS-NMS
    document = run_json(
        capsys, "--gt", AIC, "--pred", pred, "--metainfo", "aic", "-O", "use_area=false",
        "-O", "score_mode=bbox_keypoint", "-O", "nms_thr=0.9",
    )  # fmt: skip
    assert document["metrics"]["coco_ap"]["AP"] == 1.0
    assert main(["eval", "--gt", str(AIC), "--pred", str(pred), "--metainfo", "aic"]) == 2
    err = capsys.readouterr().err
    assert "test_aic.json: annotation" in err and "has no 'area'" in err and "use_area=False" in err


def test_pckh_from_the_mat_file_equals_the_metric(capsys: pytest.CaptureFixture[str]) -> None:
    from posecore.metrics import MpiiPCKhMetric
    from posecore.metrics._results import load_mpii_ground_truth, load_mpii_predictions

    metric = MpiiPCKhMetric()
    metric.update(load_mpii_predictions(TOMPSON, load_mpii_ground_truth(MPII_GT)))
    document = run_json(capsys, "--gt", MPII_GT, "--pred", TOMPSON)  # pckh is the default for a .mat GT
    assert document["metrics"]["pckh"] == metric.compute()
    assert main(["eval", "--gt", str(MPII_GT), "--pred", str(TOMPSON), "--metric", "pckh"]) == 0
    out = capsys.readouterr().out
    assert all(
        column in out for column in ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean", "Mean@0.1")
    )


def test_mpii_predictions_as_a_coco_results_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    coords = np.asarray(json.loads(TOMPSON.read_text())["pos_pred"])
    listed = [
        {"image_id": n, "keypoints": np.concatenate([c, np.ones((16, 1))], axis=1).reshape(-1).tolist()}
        for n, c in enumerate(coords)
    ]
    pred = write(tmp_path / "pred.json", listed)
    assert run_json(capsys, "--gt", MPII_GT, "--pred", pred) == {
        **run_json(capsys, "--gt", MPII_GT, "--pred", TOMPSON),
        "pred": str(pred),
    }


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown-image", r"prediction \[0\] has image_id 999999, which is not an image of the ground truth"),
        ("wrong-k", r"pred.json: prediction \[0\] field 'keypoints' has 42 numbers \(14 keypoints\).*needs 51"),
        ("missing-field", r"pred.json: prediction \[1\] has no 'image_id'"),
        ("empty-file", r"pred.json is empty"),
        ("gt-without-annotations", r"gt.json: required field 'annotations' is missing"),
        ("unknown-metric", r"unknown metric 'coco_app' \(did you mean 'coco_ap'\?\)"),
        ("unknown-option", r"no argument 'nms_th' \(did you mean 'nms_thr'\?\)"),
        ("pckh-on-coco", r"'pckh' needs MPII head boxes: give the mpii_gt_val.mat-layout file"),
        ("no-id", r"has no 'id' and image \d+ has [2-9] ground-truth instances.*add to each prediction the 'id'"),
        ("only-gt", r"--pred is missing"),
    ],
)
@pytest.mark.reliability
def test_bad_input_exits_2_naming_file_field_and_fix(
    case: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = gt_predictions(COCO)
    pred, gt, metric = tmp_path / "pred.json", COCO, ["--metric", "coco_ap"]
    if case == "unknown-image":
        write(pred, [{**good[0], "image_id": 999999}])
    elif case == "wrong-k":
        write(pred, [{**good[0], "keypoints": good[0]["keypoints"][:42]}])
    elif case == "missing-field":
        write(pred, [good[0], {k: v for k, v in good[1].items() if k != "image_id"}])
    elif case == "empty-file":
        write(pred, "")
    elif case == "gt-without-annotations":
        data = json.loads(COCO.read_text())
        gt = write(tmp_path / "gt.json", {k: v for k, v in data.items() if k != "annotations"})
        write(pred, good)
    else:
        write(pred, good)
    if case == "unknown-metric":
        metric = ["--metric", "coco_app"]
    elif case == "unknown-option":
        metric += ["-O", "nms_th=0.5"]
    elif case == "pckh-on-coco":
        metric = ["--metric", "pckh"]
    elif case == "no-id":
        write(pred, gt_predictions(COCO, with_id=False))
        metric = ["--metric", "pck"]
    args = ["eval", "--gt", str(gt), "--pred", str(pred), *metric]
    if case == "only-gt":
        args = ["eval", "--gt", str(gt)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("posecore eval: error: ")
    assert re.search(message, err), err


def test_eval_as_a_subprocess(tmp_path: Path, plugin_env) -> None:
    pred = write(tmp_path / "pred.json", gt_predictions(SHARED / "ochuman" / "test_ochuman.json"))
    done = subprocess.run(
        [sys.executable, "-m", "posecore", "eval", "--gt", str(SHARED / "ochuman" / "test_ochuman.json"),
         "--pred", str(pred), "--metainfo", "ochuman", "--json"],
        capture_output=True, text=True, cwd=tmp_path, env=plugin_env(), timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["metrics"]["coco_ap"]["AP"] == 1.0
    bad = subprocess.run(
        [sys.executable, "-m", "posecore", "eval", "--gt", str(COCO), "--pred", str(write(tmp_path / "e.json", ""))],
        capture_output=True, text=True, cwd=tmp_path, env=plugin_env(), timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "e.json is empty" in bad.stderr and "Traceback" not in bad.stderr


# -- every sample ground truth scored against itself, through the command line -------------------

#: (ground truth, options): each COCO-style sample with its dataset's evaluation settings.
SAMPLE_GROUND_TRUTHS = {
    "coco": ("coco/test_coco.json", []),
    "coco_wholebody": ("coco/test_coco_wholebody.json", ["--metainfo", "coco_wholebody", "-O", "parts=coco_wholebody"]),
    "coco_wholebody_133": ("coco/test_keypoint_partition_metric.json",
                           ["--metainfo", "coco_wholebody", "-O", "parts=coco_wholebody"]),
    "ochuman": ("ochuman/test_ochuman.json", ["--metainfo", "ochuman"]),
    "crowdpose": ("crowdpose/test_crowdpose.json",
                  ["--metainfo", "crowdpose", "-O", "use_area=false", "-O", "iou_type=keypoints_crowd"]),
    "aic": ("aic/test_aic.json", ["--metainfo", "aic", "-O", "use_area=false"]),
    "ap10k": ("ap10k/test_ap10k.json", ["--metainfo", "ap10k"]),
    "animalpose": ("animalpose/test_animalpose.json", ["--metainfo", "animalpose"]),
    "humanart": ("humanart/test_humanart.json", ["--metainfo", "humanart"]),
}
# COCOeval's precision is tp / (tp + fp + eps): a category or area range with one instance scores
# 1 - 2^-52 when perfect (docs/metrics.md).
PERFECT = 1.0 - 2.0**-52


def all_annotations_as_predictions(gt_file: Path) -> list[dict]:
    """Every annotation as a COCO result, part fields included; unlabelled people have all scores 0."""
    parts = ("foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": a["keypoints"], "score": 1.0,
         **{part: a[part] for part in parts if part in a}}
        for a in json.loads(gt_file.read_text())["annotations"]
    ]  # fmt: skip


@pytest.mark.parametrize("name", SAMPLE_GROUND_TRUTHS)
def test_every_sample_ground_truth_scores_perfect_ap_against_itself(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, options = SAMPLE_GROUND_TRUTHS[name]
    gt = SHARED / path
    predictions = all_annotations_as_predictions(gt)
    # the file's v doubles as the keypoint score: a person with no labelled keypoint scores nothing
    # and is dropped, as the GT ignores them; the rest must all be matched
    pred = write(tmp_path / "pred.json", predictions)
    table = run_json(capsys, "--gt", gt, "--pred", pred, *options)["metrics"]["coco_ap"]
    defined = {key: value for key, value in table.items() if value != -1}
    assert all(PERFECT <= value <= 1.0 for value in defined.values()), table
    ap_keys = [key for key in table if key.split("/")[-1] in ("AP", "AP50", "AP75", "AR")]
    assert ap_keys and all(key in defined for key in ap_keys), table
    if name == "crowdpose":  # both images have crowdIndex 0.33 / 0.39: medium
        assert (table["AP(E)"], table["AP(M)"], table["AP(H)"]) == (-1.0, 1.0, -1.0)
    if name.startswith("coco_wholebody"):
        assert [key.split("/")[0] for key in table][::10] == ["body", "foot", "face", "left_hand", "right_hand",
                                                             "wholebody"]
    # the same file as a table: the command prints every statistic
    assert main(["eval", "--gt", str(gt), "--pred", str(pred), *options]) == 0
    out = capsys.readouterr().out
    assert "AP50" in out and "AR75" in out and "1.0000" in out


def test_mpii_ground_truth_as_predictions_scores_100_pckh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scipy.io import loadmat

    mat = loadmat(str(MPII_GT))
    pred = write(tmp_path / "pred.json", {"pos_pred": np.transpose(mat["pos_gt_src"], (2, 0, 1)).tolist()})
    table = run_json(capsys, "--gt", MPII_GT, "--pred", pred)["metrics"]["pckh"]
    assert table == {key: 100.0 for key in ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean",
                                            "Mean@0.1")}


def test_mp100_ground_truth_as_predictions_scores_full_pck(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = SHARED / "mp100" / "annotations" / "mp100_split1_test_subset.json"
    predictions = [
        {"image_id": a["image_id"], "id": a["id"], "category_id": a["category_id"], "keypoints": a["keypoints"],
         "score": 1.0}
        for a in json.loads(gt.read_text())["annotations"]
    ]  # fmt: skip
    pred = write(tmp_path / "pred.json", predictions)
    metrics = run_json(capsys, "--gt", gt, "--pred", pred, "--metric", "pck,epe", "-O", "thresholds=0.05,0.2")[
        "metrics"
    ]
    assert metrics["pck"] == {f"{name}/{mean}": 1.0 for mean in ("instance", "keypoint")
                              for name in ("PCK@0.05", "PCK@0.2", "mPCK")}
    assert metrics["epe"] == {"EPE": 0.0}

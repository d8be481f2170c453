"""Bad input to ``posecore predict`` and ``Pose``: malformed box files are errors naming the entry,
an image without a box gets no instance (and is named), and one bad image never loses the others'
results. The model is ViTPose-S with random weights: the point is what
happens to the inputs, not the keypoints."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

import posecore
from posecore._cli.main import main
from posecore._predict import BoxTable

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
PRESET = "vitpose-s-coco-256x192"


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Two real COCO sample photos in a folder of their own."""
    folder = tmp_path / "photos"
    folder.mkdir()
    return [Path(shutil.copy(SHARED / "coco" / name, folder)) for name in ("000000000785.jpg", "000000040083.jpg")]


def _predict(tmp_path: Path, *args: str) -> tuple[int, Path]:
    out = tmp_path / "out"
    return main(["predict", "--preset", PRESET, "--device", "cpu", "--no-flip-test", "--output", str(out), *args]), out


@pytest.mark.parametrize(("entry", "message"), [
    ({"image_id": 785, "bbox": [10, 20, 30], "score": 0.9}, r"detection #0: 'bbox' must be \[x, y, width, height\]"),
    ({"image_id": 785, "bbox": ["10", 20, 30, 40]}, r"detection #0: 'bbox' must hold 4 finite numbers"),
    ({"image_id": 785, "bbox": [10, math.nan, 30, 40]}, r"detection #0: 'bbox' must hold 4 finite numbers"),
    ({"image_id": 785, "bbox": [502, 379, -225, -334]}, r"detection #0: 'bbox' width and height must be positive"),
    ({"image_id": 785, "bbox": [10, 20, 30, 40], "score": "high"}, r"detection #0: 'score' must be a finite number"),
    ({"bbox": [10, 20, 30, 40]}, r"detection #0 names no image: give 'image_id' or 'file_name'"),
    ([785, [10, 20, 30, 40]], r"detection #0 is a list, not an object"),
], ids=["3-values", "string", "nan", "negative-size", "text-score", "no-image", "not-an-object"])
def test_a_malformed_detection_names_the_entry(tmp_path: Path, entry: object, message: str) -> None:
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 5, 5]}, entry][1:]))
    with pytest.raises(posecore.ConfigError, match=message):
        BoxTable.read(path)


def test_a_malformed_box_file_stops_predict_before_any_output(tmp_path: Path, images: list[Path], capsys) -> None:
    (tmp_path / "dets.json").write_text(json.dumps([{"image_id": 785, "bbox": [1, 2, 3]}]))
    status, out = _predict(tmp_path, "--boxes", str(tmp_path / "dets.json"), str(images[0]))
    assert status == 2 and "detection #0: 'bbox' must be [x, y, width, height]" in capsys.readouterr().err
    assert not (out / "predictions.json").exists()


def test_an_image_without_a_box_gets_no_instance_and_is_named(tmp_path: Path, images: list[Path], capsys) -> None:
    boxes = [{"image_id": 785, "bbox": [50, 60, 200, 300], "score": 0.9},
             {"image_id": 785, "bbox": [10, 10, 40, 40], "score": 0.1},     # under the threshold
             {"image_id": 40083, "bbox": [10, 10, 40, 40], "score": 0.2}]   # the other image's only box, too low
    (tmp_path / "dets.json").write_text(json.dumps(boxes))
    status, out = _predict(tmp_path, "--boxes", str(tmp_path / "dets.json"), *map(str, images))
    assert status == 0
    rows = json.loads((out / "predictions.json").read_text())
    assert [(row["image_id"], row["bbox"]) for row in rows] == [(785, [50.0, 60.0, 200.0, 300.0])]
    assert "1 image(s) have no box above the score threshold" in capsys.readouterr().out
    status, out = _predict(tmp_path, "--boxes", str(tmp_path / "dets.json"), "--whole-image-fallback",
                           *map(str, images))
    rows = json.loads((out / "predictions.json").read_text())
    assert status == 0 and [row["image_id"] for row in rows] == [785, 40083]


def test_an_empty_box_file_predicts_nothing_rather_than_whole_images(tmp_path: Path, images: list[Path],
                                                                    capsys) -> None:
    (tmp_path / "dets.json").write_text("[]")
    status, out = _predict(tmp_path, "--boxes", str(tmp_path / "dets.json"), *map(str, images))
    assert status == 0 and json.loads((out / "predictions.json").read_text()) == []
    assert "2 image(s) have no box" in capsys.readouterr().out


def test_one_unreadable_image_keeps_the_others_results(tmp_path: Path, images: list[Path], capsys) -> None:
    broken = images[0].parent / "000000000001.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    status, out = _predict(tmp_path, "--whole-image", str(images[0].parent))
    rows = json.loads((out / "predictions.json").read_text())
    assert status == 1, "a failed input is a failure of the command"
    assert {row["file_name"] for row in rows} == {image.name for image in images}
    assert "1 input(s) failed and are not in predictions.json: 000000000001.jpg" in capsys.readouterr().err


def test_pose_with_an_empty_box_list_returns_no_instance() -> None:
    pose = posecore.Pose(preset=PRESET, device="cpu")
    image = np.zeros((40, 30, 3), np.uint8)
    empty, whole = pose([image, image], boxes=[[], None])
    k = pose.meta.num_keypoints
    assert empty.keypoints.shape == (0, k, 2) and empty.scores.shape == (0, k) and empty.boxes.shape == (0, 4)
    assert whole.keypoints.shape == (1, k, 2)
    [alone] = pose(image, boxes=[[]])
    assert len(alone.keypoints) == 0

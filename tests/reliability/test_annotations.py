"""Annotation values that numpy would quietly accept, and counts that contradict the labels, in
a copy of the shared COCO sample: an error naming the field, or a skip that says what is wrong."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from posecore import DataError
from posecore.data._coco import CocoKeypointDataset

COCO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco" / "test_coco.json"
pytestmark = pytest.mark.skipif(not COCO.is_file(), reason=f"shared sample data not found at {COCO}")


def variant(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    data = json.loads(COCO.read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def load(path: Path) -> tuple[CocoKeypointDataset, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = CocoKeypointDataset(str(path), "coco", image_root=str(COCO.parent))
    return dataset, [str(w.message) for w in caught]


@pytest.mark.parametrize(("field", "position"), [("keypoints", 1), ("bbox", 2)])
def test_a_number_written_as_text_is_an_error_naming_the_field(tmp_path: Path, field: str, position: int) -> None:
    def quote(data: dict[str, Any]) -> None:
        ann = data["annotations"][0]  # id 442619, image 785: keypoints [367, 81, 2, ...]
        ann[field][position] = str(ann[field][position])

    path = variant(tmp_path, quote)
    with pytest.raises(DataError) as caught:
        load(path)
    message = str(caught.value)
    assert str(path) in message and "annotation id 442619 (image 785)" in message
    assert f"field {field!r} holds the text" in message and f"at position {position}" in message
    assert "without quotes" in message


def test_num_keypoints_zero_with_labelled_keypoints_is_skipped_saying_the_count_is_wrong(tmp_path: Path) -> None:
    path = variant(tmp_path, lambda data: data["annotations"][0].update(num_keypoints=0))
    dataset, messages = load(path)
    assert 442619 not in {instance["id"] for instance in dataset.instances}  # skipped, as mmpose 0.x skips it
    assert len(messages) == 1
    message = messages[0]
    assert "1 with num_keypoints 0 although keypoints are labelled (v > 0): the file's count disagrees" in message
    assert "annotation id 442619 (image 785)" in message
    assert "skipped 3 instance(s)" in message
    assert "2 with no labelled keypoint" in message  # the file's two really unlabelled people, no more


def test_num_keypoints_as_text_is_an_error(tmp_path: Path) -> None:
    path = variant(tmp_path, lambda data: data["annotations"][0].update(num_keypoints="17"))
    with pytest.raises(DataError, match=r"annotation id 442619 \(image 785\): field 'num_keypoints' must be an integer"):
        load(path)

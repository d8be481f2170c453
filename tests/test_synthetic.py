"""The procedural datasets of the embedded default run, and the drawing helpers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from posecore._visualize import contact_sheet, draw_pose, heatmap_overlay, save_image
from posecore.data._images import read_image
from posecore.data._metainfo import load_metainfo
from posecore.data._synthetic import NUM_TEST_CATEGORIES, NUM_TRAIN_CATEGORIES, synthetic_dataset_files


def _annotations(path: Path) -> dict:
    return json.loads(path.read_text())


def test_people_are_deterministic_and_splits_differ(tmp_path):
    a = synthetic_dataset_files("people", "train", num_images=6, seed=3, cache_dir=tmp_path / "a")
    b = synthetic_dataset_files("people", "train", num_images=6, seed=3, cache_dir=tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    assert (a.parent / "images" / "000001.jpg").read_bytes() == (b.parent / "images" / "000001.jpg").read_bytes()
    val = synthetic_dataset_files("people", "val", num_images=6, seed=3, cache_dir=tmp_path / "a")
    assert (val.parent / "images" / "000001.jpg").read_bytes() != (a.parent / "images" / "000001.jpg").read_bytes()


def test_people_annotations_are_valid_coco(tmp_path):
    ann_file = synthetic_dataset_files("people", "train", num_images=40, seed=0, cache_dir=tmp_path)
    data = _annotations(ann_file)
    coco = load_metainfo("coco")
    assert data["categories"][0]["keypoints"] == list(coco.keypoint_names)
    assert len(data["images"]) == 40 and len(data["annotations"]) > 40  # several people per image
    visibilities = []
    for ann in data["annotations"]:
        points = np.array(ann["keypoints"]).reshape(17, 3)
        v = points[:, 2]
        assert set(v) <= {0, 1, 2} and ann["num_keypoints"] == int((v > 0).sum()) > 0
        labelled = points[v > 0, :2]
        assert (labelled >= 0).all() and (labelled[:, 0] <= 319).all() and (labelled[:, 1] <= 239).all()
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 320 and y + h <= 240
        assert ann["area"] == pytest.approx(0.53 * w * h, abs=0.01)
        visibilities.extend(v)
    counts = np.bincount(np.array(visibilities, dtype=int), minlength=3)
    assert counts[1] > 0 and counts[0] > 0, "occluded (v=1) and cut-off (v=0) keypoints should both occur"


def test_people_images_show_the_figures(tmp_path):
    """Each image's last-drawn figure shows its nose as the dark dot the generator paints there."""
    ann_file = synthetic_dataset_files("people", "train", num_images=12, seed=1, cache_dir=tmp_path)
    data = _annotations(ann_file)
    last = {ann["image_id"]: ann for ann in data["annotations"]}  # drawn last: nothing covers it
    checked = 0
    for image_id, ann in last.items():
        nose = np.array(ann["keypoints"][:3])
        if nose[2] != 2:
            continue
        image = read_image(ann_file.parent / data["images"][image_id - 1]["file_name"])
        x, y = int(round(nose[0])), int(round(nose[1]))
        assert image[y, x].mean() < 120, f"image {image_id}: no dark nose on the skin-coloured head at {(x, y)}"
        checked += 1
    assert checked >= 5


def test_categories_hold_out_unseen_categories(tmp_path):
    train = _annotations(synthetic_dataset_files("categories", "train", num_images=48, seed=0, cache_dir=tmp_path))
    test = _annotations(synthetic_dataset_files("categories", "test", num_images=16, seed=0, cache_dir=tmp_path))
    train_ids = {c["id"] for c in train["categories"]}
    test_ids = {c["id"] for c in test["categories"]}
    assert len(train_ids) == NUM_TRAIN_CATEGORIES and len(test_ids) == NUM_TEST_CATEGORIES
    assert not train_ids & test_ids
    for category in train["categories"] + test["categories"]:
        k = len(category["keypoints"])
        assert 5 <= k <= 16 and len(category["skeleton"]) == k - 1  # a tree
        assert all(0 <= i < k and 0 <= j < k for i, j in category["skeleton"])
    for ann in test["annotations"]:
        k = len(next(c for c in test["categories"] if c["id"] == ann["category_id"])["keypoints"])
        assert len(ann["keypoints"]) == 3 * k


def test_categories_load_as_mp100_episodes(tmp_path):
    from posecore.data._synthetic import synthetic_categories

    dataset = synthetic_categories("test", num_images=32, cache_dir=str(tmp_path), episodes=True, num_shots=1,
                                   num_queries=2, num_episodes=3)
    item = dataset[0]
    assert len(item["support"]) == 1 and item["support"][0]["category_id"] == item["category_id"]
    assert item["meta"].num_keypoints == item["keypoints"].shape[0]


def test_an_interrupted_generation_leaves_nothing_half_written(tmp_path, monkeypatch):
    import posecore.data._synthetic as synthetic

    def broken(folder, split, num_images, seed):
        (folder / "annotations.json").write_text("{")
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "_write_people", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        synthetic.synthetic_dataset_files("people", "train", num_images=2, cache_dir=tmp_path)
    assert not list((tmp_path / f"synthetic-people-v{synthetic.SYNTHETIC_VERSION}").iterdir())


def test_draw_pose_colours_keypoints_and_limbs_by_metainfo():
    meta = load_metainfo("coco")
    image = np.zeros((100, 100, 3), np.uint8)
    keypoints = np.zeros((17, 2))
    keypoints[5], keypoints[7] = (20, 20), (80, 80)  # left shoulder, left elbow: a skeleton link
    scores = np.zeros(17)
    scores[[5, 7]] = 0.9
    drawn = draw_pose(image, keypoints, scores, meta)
    assert not image.any(), "the input is not modified"
    assert tuple(drawn[50, 50]) != (0, 0, 0), "the limb between the two keypoints is drawn"
    assert tuple(drawn[20, 20]) == tuple(meta.keypoint_colors[5])
    assert not drawn[90:, :10].any(), "keypoints under the threshold are not drawn"


def test_overlay_sheet_and_atomic_save(tmp_path):
    image = np.full((40, 60, 3), 128, np.uint8)
    heatmaps = np.zeros((2, 10, 15), np.float32)
    heatmaps[1, 5, 7] = 1.0
    overlay = heatmap_overlay(image, heatmaps)
    assert overlay.shape == image.shape and not np.array_equal(overlay, image)
    sheet = contact_sheet([image, overlay, image], columns=2, cell=32)
    assert sheet.shape == (2 * 21, 64, 3)  # 60x40 images at width 32: rows 21 pixels tall
    path = save_image(sheet, tmp_path / "sheet.png")
    assert read_image(path).shape == (42, 64, 3) and list(tmp_path.iterdir()) == [path]

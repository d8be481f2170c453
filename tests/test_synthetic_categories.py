"""The synthetic creatures are learnable few-shot categories: each keypoint is a marker of its own
colour, distinct within its category, and instances of a category keep its shape."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np

from posecore.data._images import read_image
from posecore.data._synthetic import SYNTHETIC_VERSIONS, _category_template, synthetic_dataset_files


def test_keypoints_are_markers_of_distinct_colours(tmp_path) -> None:
    ann_file = synthetic_dataset_files("categories", "train", num_images=24, seed=0, cache_dir=tmp_path)
    assert ann_file.parent.parent.name == f"synthetic-categories-v{SYNTHETIC_VERSIONS['categories']}"
    data = json.loads(ann_file.read_text())
    templates = {c["id"]: _category_template(c["id"], 0) for c in data["categories"]}
    files = {image["id"]: image["file_name"] for image in data["images"]}
    checked = 0
    for ann in data["annotations"]:
        template = templates[ann["category_id"]]
        image = read_image(ann_file.parent / files[ann["image_id"]]).astype(int)
        points = np.array(ann["keypoints"]).reshape(-1, 3)
        drawn_last = {}  # markers (radius at most 10) drawn later may cover earlier ones: skip those
        for index, (x, y, v) in enumerate(points):
            if v == 2:
                drawn_last[(int(round(x)), int(round(y)))] = index
        for (x, y), index in drawn_last.items():
            if any(max(abs(x - ox), abs(y - oy)) < 12 for (ox, oy), other in drawn_last.items() if other > index):
                continue
            assert np.abs(image[y, x] - template["colours"][index]).max() < 60, (ann["id"], index)
            checked += 1
    assert checked > 100
    for template in templates.values():
        colours = np.array(template["colours"], dtype=int)
        closest = min(np.abs(a - b).sum() for a, b in combinations(colours, 2))
        assert closest > 20, "two keypoints of one category look alike"


def test_instances_of_a_category_keep_its_shape() -> None:
    from posecore.data._synthetic import _creature_points

    template = _category_template(3, 0)
    rng = np.random.default_rng(0)
    a, b = _creature_points(template, rng), _creature_points(template, rng)
    other = _creature_points(_category_template(4, 0), rng)
    assert np.abs(a - b).mean() < 0.1
    assert len(other) != len(a) or np.abs(a - other).mean() > 0.1

"""``posecore predict --plugin poseanything``: custom categories from JSON/YAML, supports of any
shape in RGB, and keypoints mapped back onto the original query image exactly as evaluation does."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from posecore_poseanything.category import Category, SupportShot, category_from_files, load_category
from posecore_poseanything.predictor import FewShotPose

from posecore import ConfigError
from posecore.data import read_image


def _write_image(path: Path, image_rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    return path


def _support_image(width: int = 150, height: int = 90) -> tuple[np.ndarray, list[list[float]]]:
    """A non-square blue image with red, green and yellow dots (RGB) at the returned keypoints."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = (20, 40, 200)
    points = [[0.2 * width, 0.25 * height], [0.8 * width, 0.5 * height], [0.47 * width, 0.8 * height]]
    for (x, y), colour in zip(points, ((255, 0, 0), (0, 255, 0), (255, 255, 0)), strict=True):
        cv2.circle(image, (int(x), int(y)), 6, colour, -1)
    return image, points


def test_category_file_with_relative_images_one_based_skeleton_and_hidden_keypoints(tmp_path: Path) -> None:
    image, points = _support_image()
    _write_image(tmp_path / "shot.png", image)
    (tmp_path / "sofa.yaml").write_text(yaml.safe_dump({
        "name": "sofa", "keypoint_names": ["a", "b", "c"], "skeleton": [[1, 2], [2, 3]], "skeleton_base": 1,
        "supports": [{"image": "shot.png", "keypoints": points},
                     {"image": "shot.png", "keypoints": [p + [0] if i == 2 else p for i, p in enumerate(points)],
                      "bbox": [10, 5, 140, 85]}]}))
    category = load_category(tmp_path / "sofa.yaml")
    assert (category.name, category.num_keypoints, category.skeleton) == ("sofa", 3, ((0, 1), (1, 2)))
    assert category.shots[0].bbox.tolist() == [0, 0, 149, 89] and category.shots[1].bbox.tolist() == [10, 5, 140, 85]
    assert category.shots[1].visibility.tolist() == [1, 1, 0]
    assert np.array_equal(category.shots[0].image[20, 30], [255, 0, 0]), "read as RGB"
    assert category.meta.skeleton == ((0, 1), (1, 2)) and category.meta.keypoint_names == ("a", "b", "c")


@pytest.mark.parametrize(("document", "message"), [
    ({"supports": []}, "at least one"),
    ({"supports": [{"image": "shot.png"}]}, r"supports\[0\] needs 'image' and 'keypoints'"),
    ({"supports": [{"image": "shot.png", "keypoints": [[1, 2]]}], "skeleton": [[0, 1]]}, "skeleton entry 0"),
    ({"supports": [{"image": "shot.png", "keypoints": [[1, 2], [3, "x"]]}]}, "keypoint 1 must be"),
    ({"supports": [{"image": "shot.png", "keypoints": [[1, 2]]}, {"image": "shot.png", "keypoints": [[1, 2], [3, 4]]}]},
     r"same keypoints.*\[1, 2\]"),
    ({"supports": [{"image": "shot.png", "keypoints": [[1, 2]]}], "colour": "red"}, "unknown field"),
    ({"supports": [{"image": "missing.png", "keypoints": [[1, 2]]}]}, "cannot read image"),
])
def test_category_file_errors_name_the_field(tmp_path: Path, document: dict, message: str) -> None:
    from posecore import DataError

    _write_image(tmp_path / "shot.png", _support_image()[0])
    (tmp_path / "c.json").write_text(json.dumps(document))
    with pytest.raises((ConfigError, DataError), match=message):
        load_category(tmp_path / "c.json")


def test_supports_of_any_shape_are_cropped_in_rgb_with_their_targets(small_checkpoint: Path, tmp_path: Path) -> None:
    image, points = _support_image(width=200, height=60)
    _write_image(tmp_path / "wide.png", image)
    (tmp_path / "points.json").write_text(json.dumps(points))
    category = category_from_files([tmp_path / "wide.png"], [tmp_path / "points.json"], None)
    pose = FewShotPose(small_checkpoint, device="cpu")
    [support] = pose.support_samples(category)
    crop = support["image"].permute(1, 2, 0).numpy()
    assert crop.shape == (64, 64, 3)
    for (x, y), colour in zip(support["keypoints"], ((255, 0, 0), (0, 255, 0), (255, 255, 0)), strict=True):
        assert np.abs(crop[int(round(y)), int(round(x))].astype(int) - colour).max() < 60, "RGB kept, geometry right"
        peak = np.unravel_index(support["heatmaps"][list(support["keypoints"][:, 0]).index(x)].argmax(), (16, 16))
        assert abs(peak[1] - x / 4) <= 1 and abs(peak[0] - y / 4) <= 1
    # the wide image is centred in the square crop, its long side 1/1.25 of the crop
    assert support["keypoints"][:, 0].min() > 6 and support["keypoints"][:, 0].max() < 58


def test_the_released_demos_colour_bug_is_a_flag(small_checkpoint: Path) -> None:
    """Off by default: each channel its own ImageNet statistics. On: R and B swap statistics, as
    when the released demo normalised BGR pixels and flipped them to RGB afterwards."""
    intended = FewShotPose(small_checkpoint, device="cpu").model.normalizer
    released = FewShotPose(small_checkpoint, device="cpu", original_demo_colours=True).model.normalizer
    assert torch.allclose(intended.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]) * 255)
    assert torch.allclose(released.mean.flatten(), torch.tensor([0.406, 0.456, 0.485]) * 255)
    assert torch.allclose(released.std.flatten(), torch.tensor([0.225, 0.224, 0.229]) * 255)


def test_few_shot_pose_maps_keypoints_back_as_evaluation_does(small_checkpoint: Path, synthetic_cache: str) -> None:
    """The predictor's result on an episode's query image equals the engine's evaluation result for
    that episode: same supports, same crops, same mapping to the original image."""
    from posecore._plugins import get_host
    from posecore.engine._builder import build_eval_sets
    from posecore.engine._evaluation import predict_dataset

    pose = FewShotPose(small_checkpoint, device="cpu")
    [eval_set] = build_eval_sets(pose.config, get_host().registries)
    results = predict_dataset(pose.model, eval_set.dataset, batch_size=4)
    dataset = eval_set.dataset.dataset
    for index in (0, len(dataset) - 1):
        item = dataset.annotation(index)
        shots = tuple(SupportShot(read_image(s["image_path"]), s["keypoints"], s["visibility"], s["bbox"],
                                  s["image_path"]) for s in item["support"])
        category = Category("creature", shots, tuple(item["meta"].skeleton))
        [prediction] = pose(category, [item["image_path"]], [[item["bbox"]]])
        assert prediction.keypoints.shape == (1, item["meta"].num_keypoints, 2)
        np.testing.assert_allclose(prediction.keypoints[0], results[index]["keypoints"], atol=1e-3)


def test_predict_command_draws_on_the_original_query(small_checkpoint: Path, tmp_path: Path, capsys) -> None:
    from posecore._cli.main import main

    image, points = _support_image()
    _write_image(tmp_path / "support.png", image)
    (tmp_path / "points.json").write_text(json.dumps({"keypoints": points}))
    (tmp_path / "limbs.yaml").write_text("skeleton: [[0, 1], [1, 2]]\n")
    query = np.full((160, 260, 3), 90, np.uint8)
    _write_image(tmp_path / "query.jpg", query)
    # a box well inside the query: its 1.25x crop, and so every predicted point, lies on the image
    box = [100.0, 50.0, 60.0, 60.0]
    (tmp_path / "boxes.json").write_text(json.dumps([{"file_name": "query.jpg", "bbox": box, "score": 1.0}]))
    out = tmp_path / "out"
    status = main(["predict", "--plugin", "poseanything", "--checkpoint", str(small_checkpoint), "--device", "cpu",
                   "--support", str(tmp_path / "support.png"), "--support-keypoints", str(tmp_path / "points.json"),
                   "--skeleton", str(tmp_path / "limbs.yaml"), "--boxes", str(tmp_path / "boxes.json"),
                   str(tmp_path / "query.jpg"), "--output", str(out)])
    assert status == 0
    assert "3 keypoints, 1 shot(s)) on 1 instance(s)" in capsys.readouterr().out
    drawn = read_image(out / "query.jpg")
    assert drawn.shape == query.shape, "drawn on the original query, not on the crop"
    changed = np.abs(drawn.astype(int) - 90).max(axis=2) > 60
    rows, cols = np.nonzero(changed)
    assert changed.any(), "keypoints, limbs and the box are drawn"
    # the box's crop spans 1.25 x 60 around (130, 80): x and y within 92.5..167.5 and 42.5..117.5
    assert cols.min() >= 90 and cols.max() <= 170 and rows.min() >= 40 and rows.max() <= 120, \
        "drawn within the box's crop, on the original query's pixels"
    assert read_image(out / "support0.jpg").shape == image.shape
    [row] = json.loads((out / "predictions.json").read_text())
    triplets = np.array(row["keypoints"]).reshape(3, 3)
    assert row["file_name"] == "query.jpg" and triplets[:, 2].tolist() == [1, 1, 1]
    assert (np.abs(triplets[:, :2] - [130, 80]) <= 1.25 * 60 / 2 + 1).all(), "in the box's crop, in image pixels"


def test_predict_command_with_a_category_file_and_two_shots(small_checkpoint: Path, tmp_path: Path) -> None:
    from posecore._cli.main import main

    image, points = _support_image(width=90, height=150)
    _write_image(tmp_path / "tall.png", image)
    (tmp_path / "thing.yaml").write_text(yaml.safe_dump({"skeleton": [[0, 2]], "supports": [
        {"image": "tall.png", "keypoints": points}, {"image": "tall.png", "keypoints": points}]}))
    _write_image(tmp_path / "q1.png", np.full((50, 50, 3), 30, np.uint8))
    out = tmp_path / "out"
    assert main(["predict", "--plugin", "poseanything", "--checkpoint", str(small_checkpoint), "--device", "cpu",
                 "--category", str(tmp_path / "thing.yaml"), str(tmp_path / "q1.png"), "--output", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"support0.jpg", "support1.jpg", "q1.jpg", "predictions.json"}


def test_predict_command_explains_a_missing_support(small_checkpoint: Path, tmp_path: Path, capsys) -> None:
    from posecore._cli.main import main

    _write_image(tmp_path / "q.png", np.zeros((20, 20, 3), np.uint8))
    assert main(["predict", "--plugin", "poseanything", str(tmp_path / "q.png")]) == 2
    assert "needs a support: --category FILE, or --support IMAGE" in capsys.readouterr().err
    assert main(["predict", "--plugin", "poseanything", "--support", str(tmp_path / "q.png"),
                 str(tmp_path / "q.png")]) == 2
    assert "one --support-keypoints FILE per --support IMAGE" in capsys.readouterr().err


def _resize_pad_reference(image: np.ndarray, size: int, fill: tuple[int, int, int]) -> np.ndarray:
    """The released demo's crop, computed as it is defined (pad the shorter side by (long - short) // 2
    on each side, then a bilinear resize without antialiasing), with torch, in float."""
    height, width = image.shape[:2]
    tensor = torch.from_numpy(image).permute(2, 0, 1).float()[None] - torch.tensor(fill).view(1, 3, 1, 1)
    pad = [(height - width) // 2] * 2 + [0, 0] if height > width else [0, 0] + [(width - height) // 2] * 2
    padded = torch.nn.functional.pad(tensor, pad)  # zero once the mean is taken off, as the demo pads
    resized = torch.nn.functional.interpolate(padded, size=(size, size), mode="bilinear", align_corners=False)
    return (resized[0] + torch.tensor(fill).view(3, 1, 1)).permute(1, 2, 0).numpy()


@pytest.mark.parametrize(("width", "height"), [(150, 90), (61, 130)])
def test_the_released_demos_geometry_is_a_flag(small_checkpoint: Path, tmp_path: Path, width: int, height: int) -> None:
    """Off by default: the box padded 1.25x and warped, as in training. On: the image padded to a
    square with the mean colour and resized, as the released demo's ``Resize_Pad`` (odd
    differences leave it a pixel short of square, as there); keypoints follow the same map."""
    image, points = _support_image(width=width, height=height)
    _write_image(tmp_path / "shot.png", image)
    (tmp_path / "points.json").write_text(json.dumps(points))
    category = category_from_files([tmp_path / "shot.png"], [tmp_path / "points.json"], None)
    pose = FewShotPose(small_checkpoint, device="cpu", original_demo_geometry=True)
    [support] = pose.support_samples(category)
    fill = (124, 116, 104)  # the ImageNet mean, 0 once normalised
    crop = support["image"].permute(1, 2, 0).numpy().astype(float)
    reference = _resize_pad_reference(read_image(tmp_path / "shot.png"), 64, fill)
    assert np.abs(crop - reference).max() <= 1.0, "the demo's pad-and-resize, to the grey level"
    left, top = ((height - width) // 2, 0) if height > width else (0, (width - height) // 2)
    scale = np.array([64 / (width + 2 * left), 64 / (height + 2 * top)])
    expected = (np.asarray(points) + [left + 0.5, top + 0.5]) * scale - 0.5
    np.testing.assert_allclose(support["keypoints"], expected, atol=1e-4)
    default = FewShotPose(small_checkpoint, device="cpu").support_samples(category)[0]
    assert not np.allclose(default["keypoints"], expected, atol=1.0)


def test_the_demo_geometry_maps_predictions_back_and_reaches_the_command(small_checkpoint: Path,
                                                                       tmp_path: Path) -> None:
    from posecore._cli.main import main

    image, points = _support_image()
    _write_image(tmp_path / "support.png", image)
    (tmp_path / "points.json").write_text(json.dumps(points))
    query = np.random.default_rng(3).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    _write_image(tmp_path / "query.png", query)
    category = category_from_files([tmp_path / "support.png"], [tmp_path / "points.json"], None)
    pose = FewShotPose(small_checkpoint, device="cpu", original_demo_geometry=True)
    [prediction] = pose(category, [tmp_path / "query.png"])
    [warp] = prediction.warps
    in_crop = prediction.keypoints[0] @ warp[:, :2].T + warp[:, 2]
    # the whole 200 x 120 query, padded by 40 rows above and below, scaled by 64 / 200
    np.testing.assert_allclose(warp, [[0.32, 0, 0.5 * 0.32 - 0.5], [0, 0.32, 40.5 * 0.32 - 0.5]], atol=1e-6)
    assert ((in_crop >= -1e-3) & (in_crop <= 64 + 1e-3)).all(), "the sigmoid outputs, in the crop"
    rows = {}
    for flag in ([], ["--original-demo-geometry"]):
        out = tmp_path / f"out{len(flag)}"
        assert main(["predict", "--plugin", "poseanything", "--checkpoint", str(small_checkpoint), "--device", "cpu",
                     "--support", str(tmp_path / "support.png"), "--support-keypoints", str(tmp_path / "points.json"),
                     str(tmp_path / "query.png"), "--output", str(out), *flag]) == 0
        [rows[bool(flag)]] = json.loads((out / "predictions.json").read_text())
    demo = np.array(rows[True]["keypoints"]).reshape(3, 3)[:, :2]
    np.testing.assert_allclose(demo, prediction.keypoints[0], atol=0.01)  # the file rounds to 0.01
    assert not np.allclose(np.array(rows[False]["keypoints"]).reshape(3, 3)[:, :2], demo, atol=0.5)

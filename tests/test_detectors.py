"""Detectors find the instances a top-down model predicts: ``posecore_detectors`` components (a
plugin's, or the core's torchvision COCO detectors) in ``posecore predict`` and ``Pose``.

The pose model is a one-block ViT in a posecore checkpoint carrying its config (COCO's 17
keypoints, so the detector looks for people), written here from random weights: the point is
where the boxes come from and that every box becomes one skeleton in image pixels. Nothing is
downloaded: torchvision detectors are built with random weights, and every test that could reach
torchvision's cache points ``TORCH_HOME`` at an empty folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import attrs
import numpy as np
import pytest

import posecore
from posecore._checkpoint import save_checkpoint
from posecore._cli.main import main
from posecore._detect import build_detector
from posecore._plugins import get_host
from posecore._torchvision_detect import ARCHITECTURES
from posecore.config import dump_config
from posecore.data import read_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGE = SHARED / "coco" / "000000196141.jpg"

#: The person boxes of 000000196141.jpg in test_coco.json (x, y, w, h), and scores for them; the
#: last scores under predict's default --box-score-thr 0.3, so it is not predicted.
KNOWN = [([247.76, 74.23, 169.67, 300.78], 0.9), ([555.57, 99.84, 48.32, 113.05], 0.6),
         ([440.85, 73.13, 16.79, 32.45], 0.2)]

DETECTOR_PLUGIN = f"""
    import posecore

    POSECORE_PLUGIN_API = 2
    KNOWN = {KNOWN!r}


    class KnownBoxes:
        '''Finds the same instances in every image: the sample photo's annotated people.'''

        def __init__(self, classes, device="cpu"):
            self.label = classes[0]

        def __call__(self, images):
            boxes = [[x, y, x + w, y + h] for (x, y, w, h), _ in KNOWN]
            return [posecore.Detections(boxes, [score for _, score in KNOWN], [self.label] * len(KNOWN))
                    for _ in images]


    @posecore.hookimpl
    def posecore_detectors():
        return [posecore.Component("known_boxes", KnownBoxes, "the sample photo's annotated people")]
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A posecore checkpoint of a one-block ViT on ViTPose-S's COCO experiment (random weights)."""
    config = attrs.evolve(posecore.get_preset("vitpose-s-coco-256x192"), name="detector-test", model={
        "type": "topdown_heatmap", "input_size": [192, 256],
        "backbone": {"type": "vit", "embed_dim": 32, "depth": 1, "num_heads": 2, "input_size": [192, 256]},
        "head": {"type": "heatmap_simple", "in_channels": 32, "num_keypoints": 17, "input_stride": 16},
    })
    model = posecore.build_model(config)
    return save_checkpoint({"state_dict": model.state_dict(), "meta": {"config": dump_config(config)}},
                           tmp_path_factory.mktemp("pose") / "tiny.pth")


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """torchvision's cache is an empty folder and posecore may not download: returns the cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("POSECORE_OFFLINE", "1")
    return tmp_path / "torch" / "hub" / "checkpoints"


def _crop_region(box: list[float]) -> tuple[float, float, float, float]:
    """The region the test pipeline crops for an x, y, w, h box (widened to the model's 3:4 and
    padded 1.25x) as x1, y1, x2, y2: where a box's keypoints lie in the image."""
    x, y, w, h = box
    w, h = (w, w / 0.75) if w > 0.75 * h else (0.75 * h, h)
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return cx - 0.625 * w, cy - 0.625 * h, cx + 0.625 * w, cy + 0.625 * h


def test_a_plugin_detector_gives_one_skeleton_per_box(checkpoint, fake_plugin_dist, plugin_env, tmp_path) -> None:
    """``posecore predict`` with a plugin's detector: one result per box scoring above
    --box-score-thr, in the box, with its score; the keypoints in the image's pixels are those
    Pose gives for the same boxes; a video is detected frame by frame, with a frames/s progress."""
    import cv2

    size = (96, 72)
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, size)
    for _ in range(3):
        writer.write(cv2.resize(cv2.imread(str(IMAGE)), size))
    writer.release()
    env = plugin_env(fake_plugin_dist("knownboxes", DETECTOR_PLUGIN))
    result = subprocess.run([sys.executable, "-m", "posecore", "predict", "--checkpoint", str(checkpoint),
                             "--detector", "known_boxes", "--device", "cpu", str(IMAGE), str(tmp_path / "clip.mp4"),
                             "--output", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "out" / "predictions.json").read_text())
    kept = [(box, score) for box, score in KNOWN if score > 0.3]
    photo = [row for row in rows if row["file_name"] == IMAGE.name]
    np.testing.assert_allclose([row["bbox"] for row in photo], [box for box, _ in kept], atol=1e-3)
    assert [row["bbox_score"] for row in photo] == [score for _, score in kept]
    assert [row["file_name"] for row in rows[len(photo):]] == [f"clip.mp4:{i}" for i in range(3) for _ in kept]
    assert "clip.mp4 3/3" in result.stderr and "frames/s" in result.stderr

    pose = posecore.Pose(checkpoint, device="cpu")
    [expected] = pose(str(IMAGE), [[[x, y, x + w, y + h] for (x, y, w, h), _ in kept]])
    for row, keypoints in zip(photo, expected.keypoints, strict=True):
        triplets = np.asarray(row["keypoints"]).reshape(17, 3)
        np.testing.assert_allclose(triplets[:, :2], keypoints, atol=0.01)
        # Random heatmaps peak anywhere in the crop (and sub-pixel refinement of their bumps may
        # step past its edge), so their middle, not each keypoint, lies in the box's crop region.
        x1, y1, x2, y2 = _crop_region(row["bbox"])
        middle_x, middle_y = np.median(triplets[:, :2], axis=0)
        assert x1 < middle_x < x2 and y1 < middle_y < y2


def test_pose_takes_a_detector_and_boxes_keep_their_scores(checkpoint) -> None:
    """``Pose(detector=...)``: images given no boxes are detected (above the threshold, with an
    area, best first), images given boxes are not; a box's fifth value is its score, else 1."""
    from posecore._detect import Detections

    calls = []

    def detector(images):
        calls.append(len(images))
        return [Detections([[10, 20, 110, 220], [200, 50, 300, 300], [639, 5, 639, 80]], [0.4, 0.8, 0.9],
                           ["person"] * 3) for _ in images]

    pose = posecore.Pose(checkpoint, device="cpu", detector=detector, box_score_threshold=0.5)
    image = read_image(IMAGE)
    found, given, scored = pose([image, image, image], [None, [[0, 0, 50, 80]], [[0, 0, 50, 80, 0.7]]])
    assert calls == [1]
    assert found.boxes.tolist() == [[200, 50, 300, 300]] and found.box_scores.tolist() == pytest.approx([0.8])
    assert given.box_scores.tolist() == [1.0] and scored.box_scores.tolist() == pytest.approx([0.7])
    with pytest.raises(posecore.ConfigError, match="not among the classes asked for"):
        posecore.Pose(checkpoint, device="cpu", detector=lambda images: [
            Detections([[0, 0, 5, 5]], [0.9], ["dog"]) for _ in images])(image)


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_each_torchvision_detector_runs_end_to_end_on_a_real_image(architecture, checkpoint, offline) -> None:
    """Each registered torchvision detector, random weights, on a real photo: what it detects
    (any COCO class, any score, so random weights find something) is what Pose predicts, box for
    box, best first (boxes clipped to no area are no instance)."""
    import torch
    from torchvision.models import get_model_weights

    categories = [c for c in get_model_weights(architecture).DEFAULT.meta["categories"]
                  if c not in ("__background__", "N/A")]
    spec = {"type": architecture, "pretrained": False, "score_threshold": 0.0, "max_detections": 4,
            **({} if architecture.startswith("ssd") else {"min_size": 160, "max_size": 240}),
            **({"builder_options": {"rpn_post_nms_top_n_test": 100}} if "rcnn" in architecture else {})}
    torch.manual_seed(0)
    pose = posecore.Pose(checkpoint, device="cpu", flip_test=False, detector=spec, detector_classes=categories,
                         box_score_threshold=0.0)
    found, detector = [], pose.detector
    pose.detector = lambda images: found.extend(detector(images)) or found  # what Pose's own call detected
    image = read_image(IMAGE)
    [prediction] = pose(image)
    [detections] = found
    x1, y1, x2, y2 = detections.boxes.T
    order = [i for i in np.argsort(-detections.scores, kind="stable") if x2[i] > x1[i] and y2[i] > y1[i]]
    np.testing.assert_allclose(prediction.boxes, detections.boxes[order], atol=1e-4)
    np.testing.assert_allclose(prediction.box_scores, detections.scores[order], atol=1e-6)
    assert len(order) > 0, "seeded random weights find some instance: the crops run through the pose model"
    assert prediction.keypoints.shape == (len(order), 17, 2) and np.isfinite(prediction.keypoints).all()
    assert not offline.exists(), "nothing may be downloaded or cached"


def test_offline_without_weights_names_the_file_and_where_to_put_it(checkpoint, offline, tmp_path) -> None:
    url = "https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth"
    with pytest.raises(posecore.CheckpointError) as caught:
        build_detector(get_host().registries, "fasterrcnn_resnet50_fpn_v2", classes=("person",), device="cpu")
    message = str(caught.value)
    assert "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth" in message and url in message
    assert f"put it at {offline / 'fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth'}" in message
    assert "--detector-weights FILE" in message and "--whole-image" in message
    assert not offline.exists()


def test_predict_without_boxes_uses_the_default_detector_and_says_what_is_missing(checkpoint, offline, tmp_path,
                                                                                  capsys) -> None:
    status = main(["predict", "--checkpoint", str(checkpoint), "--device", "cpu", str(IMAGE),
                   "--output", str(tmp_path / "out")])
    assert status == 2
    assert "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth" in capsys.readouterr().err


def test_cached_torchvision_weights_and_a_local_file_give_the_same_detector(offline, tmp_path) -> None:
    """The same weights through torchvision's cache (its own loading, frozen batch norms) and
    through --detector-weights (posecore's, batch norms in eval mode) compute the same features
    and detections; a file of another architecture is refused naming it."""
    import torch
    from torchvision.models import get_model_builder

    architecture = "fasterrcnn_mobilenet_v3_large_320_fpn"
    torch.manual_seed(0)
    model = get_model_builder(architecture)(weights=None, weights_backbone=None)
    state = {name: (tensor.uniform_(0.5, 2.0) if name.endswith("running_var") else
                    tensor.normal_(0, 0.1) if name.endswith("running_mean") else tensor)
             for name, tensor in model.state_dict().items()}
    offline.mkdir(parents=True)
    torch.save(state, offline / "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth")
    torch.save(state, tmp_path / "local.pth")
    registries = get_host().registries
    spec = {"type": architecture, "score_threshold": 0.0}
    cached = build_detector(registries, spec, classes=("person", "car"), device="cpu")
    local = build_detector(registries, spec, classes=("person", "car"), device="cpu", weights=str(tmp_path / "local.pth"))
    image = read_image(IMAGE)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    with torch.inference_mode():
        features = [model.backbone(tensor) for model in (cached.model, local.model)]
    for key in features[0]:
        torch.testing.assert_close(features[0][key], features[1][key], atol=1e-4, rtol=1e-4)
    [a], [b] = cached([image]), local([image])
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
    assert a.labels == b.labels

    torch.save({"backbone.conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(posecore.CheckpointError, match=f"other.pth is not a '{architecture}' state dict"):
        build_detector(registries, spec, classes=("person",), device="cpu", weights=str(tmp_path / "other.pth"))


def test_whole_image_is_explicit_and_detector_options_need_the_detector(checkpoint, tmp_path, capsys) -> None:
    args = ["predict", "--checkpoint", str(checkpoint), "--device", "cpu", "--no-flip-test", str(IMAGE)]
    assert main([*args, "--whole-image", "--output", str(tmp_path / "whole")]) == 0
    [row] = json.loads((tmp_path / "whole" / "predictions.json").read_text())
    assert row["bbox"] == [0.0, 0.0, 639.0, 428.0] and row["bbox_score"] == 1.0
    assert main([*args, "--whole-image", "--detector-weights", "x.pth", "--output", str(tmp_path / "x")]) == 2
    assert "--detector-weights and --detector-classes set up the detector" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--whole-image", "--boxes", "dets.json"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_keypoint_set_chooses_what_to_detect() -> None:
    from posecore._detect import detection_classes
    from posecore.data import load_metainfo

    assert detection_classes(load_metainfo("coco")) == detection_classes(load_metainfo("crowdpose")) == ("person",)
    animals = detection_classes(load_metainfo("ap10k"))
    assert {"dog", "horse", "zebra", "giraffe"} <= set(animals) and "person" not in animals
    assert detection_classes(load_metainfo("animalpose")) == detection_classes(load_metainfo("apt36k")) == animals
    assert detection_classes(load_metainfo("coco_wholebody_hand"), ["person"]) == ("person",)
    with pytest.raises(posecore.ConfigError, match="no detector classes for keypoint set 'coco_wholebody_hand'"):
        detection_classes(load_metainfo("coco_wholebody_hand"))


def test_the_readme_picture_is_made_through_the_detector_interface(tmp_path) -> None:
    """``docs/images/detected_people.py`` (the README's picture) runs: a real detector's boxes
    served by a registered detector component, above 0.9 on the skiers' photo."""
    script = Path(__file__).resolve().parents[1] / "docs" / "images" / "detected_people.py"
    result = subprocess.run([sys.executable, str(script), "--output", str(tmp_path / "people.jpg")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "5 detections above 0.9 on image 197388" in result.stdout
    assert read_image(tmp_path / "people.jpg").shape == (392, 640, 3)

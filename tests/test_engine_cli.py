"""The engine from the outside: posecore run / eval / predict / export, the Pose API, 2 processes."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from posecore.config import save_config

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def posecore(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSECORE_")}
    return subprocess.run([sys.executable, "-m", "posecore", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


@pytest.fixture(scope="module")
def trained_run(tiny_config, tmp_path_factory):
    """One 1-epoch run through the CLI, shared by the tests below; its output is in ``run.out``."""
    folder = tmp_path_factory.mktemp("run")
    save_config(tiny_config(epochs=1), folder / "tiny.yaml")
    result = posecore("run", "--config", str(folder / "tiny.yaml"), "--output", str(folder / "run"), "--quiet")
    assert result.returncode == 0, result.stderr
    (folder / "run.out").write_text(result.stdout)
    return folder


def test_run_prints_the_result_and_writes_the_run_directory(trained_run):
    metrics = json.loads((trained_run / "run" / "metrics.json").read_text())
    assert metrics["main_metric"] == "AP" and 0.0 <= metrics["AP"] <= 1.0
    assert (trained_run / "run" / "checkpoints" / "best.pth").is_file()
    printed = (trained_run / "run.out").read_text().splitlines()
    assert printed == [f"engine-test: AP {metrics['AP']:.4f} (run directory {trained_run / 'run'})"]


def test_eval_checkpoint_reproduces_the_run_metrics(trained_run):
    result = posecore("eval", "--checkpoint", str(trained_run / "run" / "checkpoints" / "best.pth"), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    table = next(iter(document["metrics"].values()))
    metrics = json.loads((trained_run / "run" / "metrics.json").read_text())
    assert table["AP"] == metrics["AP"] and table["PCK@0.2/instance"] == metrics["PCK@0.2/instance"]


def test_two_processes_give_the_metrics_of_one(trained_run, tmp_path):
    """Resuming the finished 1-process run in 2 gloo processes evaluates the same weights on two
    shards (the 8 val images give an uneven split, so padding is exercised): identical tables."""
    one = json.loads((trained_run / "run" / "metrics.json").read_text())
    copy = tmp_path / "two"
    shutil.copytree(trained_run / "run", copy)
    (copy / "metrics.json").unlink()
    result = posecore("run", "--config", str(trained_run / "tiny.yaml"), "--resume", str(copy), "--quiet",
                      "--num-processes", "2")
    assert result.returncode == 0, result.stderr
    assert "launching 2 processes" in result.stderr
    two = json.loads((copy / "metrics.json").read_text())
    assert {k: v for k, v in two.items() if k != "best"} == {k: v for k, v in one.items() if k != "best"}


def _without_batch_norm(tiny_config, **train):
    """The tiny experiment with a model whose maths are per sample (a 2-block ViT and the simple
    head: LayerNorm, no BatchNorm), plain SGD and no warmup: two processes of 8 samples then take
    exactly the steps one process takes on the same 16."""
    import attrs

    from posecore.config import OptimizerConfig, ScheduleConfig

    config = tiny_config(optimizer=OptimizerConfig(type="sgd", lr=0.5, momentum=0.0),
                         schedule=ScheduleConfig(type="step", warmup_iters=0), **train)
    return attrs.evolve(config, model={
        "type": "topdown_heatmap",
        "backbone": {"type": "vit", "embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8, "patch_padding": 1,
                     "input_size": [48, 64]},
        "head": {"type": "heatmap_simple", "in_channels": 32, "num_keypoints": 17, "upsample": 2, "input_stride": 8},
        "input_size": [48, 64],
    })


def test_two_processes_train_as_one_process_with_their_global_batch(tiny_config, synthetic_cache, tmp_path):
    """8 people a batch in each of 2 processes: 2 optimiser steps an epoch where one process with
    batches of 8 takes 5, and the weights after them are those of one process stepping on the same
    batches of 16."""
    import attrs

    from posecore._plugins import get_host
    from posecore.data._synthetic import synthetic_people
    from posecore.engine._state import load_train_state
    from posecore.engine._trainer import Callback, Trainer

    two = _without_batch_norm(tiny_config, epochs=1)
    save_config(two, tmp_path / "two.yaml")
    result = posecore("run", "--config", str(tmp_path / "two.yaml"), "--output", str(tmp_path / "two"), "--quiet",
                      "--num-processes", "2")
    assert result.returncode == 0, result.stderr
    assert "launching 2 processes" in result.stderr
    records = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert train and all(np.isfinite(r["loss"]) for r in train)
    people = len(synthetic_people("train", num_images=24, cache_dir=synthetic_cache))  # 41 in 24 images
    steps = math.ceil(people / 2) // 8
    assert [r["step"] for r in train] == list(range(1, steps + 1)) and steps < people // 8

    initial = {}

    class Start(Callback):
        def on_train_start(self, trainer):
            initial.update({k: v.clone() for k, v in trainer.model.state_dict().items()})

    one = attrs.evolve(two, data=attrs.evolve(two.data, batch_size=16))
    Trainer(one, tmp_path / "one", registries=get_host().registries, quiet=True, num_prediction_images=0,
            callbacks=[Start()]).fit()
    stepped_one = load_train_state(tmp_path / "one")
    stepped_two = load_train_state(tmp_path / "two")
    assert stepped_one["optimizer_steps"] == stepped_two["optimizer_steps"] == steps
    step = max(float((stepped_one["model"][k] - v).abs().max()) for k, v in initial.items())
    difference = max(float((stepped_one["model"][k] - v).abs().max()) for k, v in stepped_two["model"].items())
    # The weights moved; the two runs differ by float32 rounding only (gradients summed in another order).
    assert step > 1e-3 and difference <= 1e-6, (step, difference)


def test_predict_draws_and_writes_coco_results_for_detector_boxes(trained_run, tmp_path):
    detections = json.loads((SHARED / "coco" / "test_coco_det_AP_H_56.json").read_text())
    expected = sum(d["score"] > 0.3 for d in detections)
    result = posecore("predict", "--checkpoint", str(trained_run / "run" / "checkpoints" / "best.pth"),
                      "--boxes", str(SHARED / "coco" / "test_coco_det_AP_H_56.json"), str(SHARED / "coco"),
                      "--output", str(tmp_path), "--heatmaps")
    assert result.returncode == 0, result.stderr
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert len(predictions) == expected == 33
    assert all(len(p["keypoints"]) == 17 * 3 for p in predictions)
    assert {p["image_id"] for p in predictions} == {785, 40083, 196141, 197388}  # COCO's ids, from the file names
    drawn = sorted(p.name for p in tmp_path.glob("*.jpg"))
    assert len(drawn) == 8 and "000000000785_heatmaps.jpg" in drawn


def test_predict_draws_a_video_and_writes_one_result_per_frame(trained_run, tmp_path):
    """A 4-frame video (written here with OpenCV) through ``posecore predict``: a drawn video of 4
    frames at the input's size, and per frame the row the Pose API gives for that decoded frame."""
    import cv2

    from posecore import Pose

    size = (96, 72)  # width, height
    frames = [cv2.resize(cv2.imread(str(path)), size) for path in sorted((SHARED / "coco").glob("*.jpg"))]
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, size)
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    checkpoint = trained_run / "run" / "checkpoints" / "best.pth"
    result = posecore("predict", "--checkpoint", str(checkpoint), str(tmp_path / "clip.mp4"), "--whole-image",
                      "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr

    drawn = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    shapes = []
    while (frame := drawn.read())[0]:
        shapes.append(frame[1].shape)
    drawn.release()
    assert shapes == [(size[1], size[0], 3)] * len(frames) == [(72, 96, 3)] * 4
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.mp4", "predictions.json"]

    rows = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [(r["image_id"], r["file_name"]) for r in rows] == [(i, f"clip.mp4:{i}") for i in range(4)]
    pose = Pose(checkpoint, device="cpu")
    source = cv2.VideoCapture(str(tmp_path / "clip.mp4"))
    for row in rows:
        ok, frame = source.read()
        assert ok
        expected = pose(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))[0]
        triplets = np.asarray(row["keypoints"]).reshape(17, 3)
        np.testing.assert_allclose(triplets[:, :2], expected.keypoints[0], atol=0.01)
        np.testing.assert_allclose(triplets[:, 2], expected.scores[0], atol=0.01)
    source.release()


@pytest.mark.reliability
def test_predict_errors_name_the_input(trained_run, tmp_path):
    result = posecore("predict", "--checkpoint", str(trained_run / "run" / "checkpoints" / "best.pth"),
                      str(tmp_path / "missing.jpg"))
    assert result.returncode == 2 and "input not found" in result.stderr and "missing.jpg" in result.stderr


def test_pose_api_matches_the_evaluation_of_the_same_boxes(trained_run, tiny_config):
    """Pose on an image with a val instance's box predicts what evaluation predicted for it."""
    from posecore import Pose
    from posecore._api import load_model
    from posecore._plugins import get_host
    from posecore.engine._builder import build_eval_sets
    from posecore.engine._evaluation import predict_dataset

    checkpoint = trained_run / "run" / "checkpoints" / "best.pth"
    model, config, _ = load_model(checkpoint, device="cpu")
    eval_set = build_eval_sets(config, get_host().registries, codec=model.codec)[0]
    results = predict_dataset(model, eval_set.dataset, batch_size=4, flip_test=True)
    pose = Pose(checkpoint, device="cpu")
    source = eval_set.dataset.dataset
    for result in results[:3]:
        annotation = source.annotation(result["sample_index"])
        prediction = pose(annotation["image_path"], [[annotation["bbox"]]])[0]
        np.testing.assert_allclose(prediction.keypoints[0], result["keypoints"], atol=1e-3)
    whole = pose([np.zeros((60, 40, 3), np.uint8)] * 2)
    assert [p.keypoints.shape for p in whole] == [(1, 17, 2)] * 2


def test_export_onnx_matches_the_model_in_onnxruntime(trained_run, tmp_path):
    import onnxruntime

    from posecore._api import load_model

    checkpoint = trained_run / "run" / "checkpoints" / "best.pth"
    result = posecore("export", "--checkpoint", str(checkpoint), "-o", str(tmp_path / "tiny.onnx"))
    assert result.returncode == 0, result.stderr
    model, _, _ = load_model(checkpoint, device="cpu")
    images = torch.randn(3, 3, 64, 48)
    session = onnxruntime.InferenceSession(str(tmp_path / "tiny.onnx"))
    exported = session.run(None, {"image": images.numpy()})[0]
    with torch.no_grad():
        native = model({"image": images}).numpy()
    np.testing.assert_allclose(exported, native, atol=1e-4)


def test_predict_numbers_images_by_their_coco_names_or_their_position():
    from posecore._predict import _image_ids

    coco = [Path("val/000000000785.jpg"), Path("val/000000040083.jpg"), Path("clip.mp4")]
    assert _image_ids(coco) == {coco[0]: 785, coco[1]: 40083}
    mixed = [Path("000000000785.jpg"), Path("holiday.jpg")]
    assert _image_ids(mixed) == {mixed[0]: 1, mixed[1]: 2}
    clash = [Path("a/7.jpg"), Path("b/007.png")]  # the same number twice: positions, not a collision
    assert _image_ids(clash) == {clash[0]: 1, clash[1]: 2}


# -- COCO test-dev: a split without ground truth, predicted into a results file --------------------

COCO_GT, COCO_DETS = SHARED / "coco" / "test_coco.json", SHARED / "coco" / "test_coco_det_AP_H_56.json"


@pytest.fixture(scope="module")
def test_dev_setup(tiny_config, tmp_path_factory) -> tuple[Path, Path]:
    """A checkpoint (random weights, the tiny config) and a config whose test split is a
    test-dev-like image-info file (the COCO sample's images, no annotations) with detector boxes."""
    from posecore._checkpoint import save_checkpoint
    from posecore._plugins import get_host
    from posecore.config import apply_overrides, dump_config, load_config
    from posecore.engine._builder import build_model

    folder = tmp_path_factory.mktemp("testdev")
    data = json.loads(COCO_GT.read_text())
    info = {key: data[key] for key in ("info", "licenses", "images", "categories")}
    (folder / "image_info.json").write_text(json.dumps(info))
    config = apply_overrides(tiny_config(epochs=0), [
        f"data.test=[{{type: coco, ann_file: {folder / 'image_info.json'}, "
        f"image_root: {SHARED / 'coco'}, bbox_file: {COCO_DETS}, bbox_score_thr: 0.3}}]"])
    save_config(config, folder / "testdev.yaml")
    torch.manual_seed(0)
    model = build_model(load_config(folder / "testdev.yaml"), get_host().registries)
    save_checkpoint({"state_dict": model.state_dict(), "meta": {"config": dump_config(config)}}, folder / "w.pth")
    return folder / "testdev.yaml", folder / "w.pth"


def test_eval_writes_server_results_for_a_split_without_ground_truth(test_dev_setup, tmp_path: Path) -> None:
    config, weights = test_dev_setup
    out = tmp_path / "test-dev_results.json"
    result = posecore("eval", "--config", str(config), "--checkpoint", str(weights), "--split", "test",
                      "--device", "cpu", "--results", str(out))
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())
    detections = [d for d in json.loads(COCO_DETS.read_text()) if d["score"] > 0.3]
    assert 0 < len(rows) <= len(detections) == 33
    coco_ids = {image["id"] for image in json.loads(COCO_GT.read_text())["images"]}
    assert {row["image_id"] for row in rows} <= coco_ids, "COCO image ids, not positions"
    assert all(len(row["keypoints"]) == 51 and row["category_id"] == 1 for row in rows)
    assert all(0 <= row["score"] <= 1 for row in rows)
    assert f"{len(detections)} instances predicted" in result.stdout


@pytest.mark.reliability
def test_eval_without_results_names_the_missing_ground_truth(test_dev_setup) -> None:
    config, weights = test_dev_setup
    result = posecore("eval", "--config", str(config), "--checkpoint", str(weights), "--split", "test",
                      "--device", "cpu")
    assert result.returncode == 2
    assert "no ground truth" in result.stderr and "--results FILE" in result.stderr

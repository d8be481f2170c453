"""A preset's ``predictor`` takes over ``posecore predict`` (few-shot supports, text prompts), and
the evaluation pieces category-agnostic models rely on: mixed keypoint counts in one batch, and
foreign checkpoints whose ``meta`` holds another framework's config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from posecore._components import Preset
from posecore.models._base import PoseResult

FEW_SHOT_PLUGIN = """
    import json
    from pathlib import Path

    import posecore

    POSECORE_PLUGIN_API = 1


    def predict(request):
        assert isinstance(request, posecore.PredictRequest) and request.output.is_dir()
        called = {"inputs": [path.name for path in request.inputs], "shots": request.options["shot"],
                  "core options leak": sorted({"boxes", "checkpoint", "device", "inputs"} & set(request.options))}
        (request.output / "called.json").write_text(json.dumps(called))
        return 3


    @posecore.hookimpl
    def posecore_presets():
        return [
            posecore.Preset("fewshot-a", "posecore._presets:simplebaseline_res50_coco", default=True,
                            predictor="posecore_fake_fewshot:predict"),
            posecore.Preset("fewshot-plain", "posecore._presets:simplebaseline_res50_coco"),
        ]


    @posecore.hookimpl
    def posecore_cli_arguments(command, parser):
        if command == "predict":
            parser.add_argument("--shot", action="append", default=[])
"""


def _predict(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "posecore", "predict", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_a_preset_predictor_receives_a_typed_request(fake_plugin_dist, plugin_env, tmp_path) -> None:
    env = plugin_env(fake_plugin_dist("fewshot", FEW_SHOT_PLUGIN))
    for name in ("q1.jpg", "q2.jpg", "q.jpg"):
        (tmp_path / name).write_bytes(b"")  # the command checks the inputs exist; the predictor reads them
    out = tmp_path / "out"
    result = _predict("--plugin", "fewshot", "--shot", "s.jpg", "q1.jpg", "q2.jpg", "--output", str(out), env=env,
                      cwd=tmp_path)
    assert result.returncode == 3, result.stderr  # the predictor's exit status is the command's
    assert json.loads((out / "called.json").read_text()) == {"inputs": ["q1.jpg", "q2.jpg"], "shots": ["s.jpg"],
                                                             "core options leak": []}
    named = _predict("--preset", "fewshot-a", "q.jpg", "--output", str(tmp_path / "named"), env=env, cwd=tmp_path)
    assert named.returncode == 3 and (tmp_path / "named" / "called.json").exists()
    missing = _predict("--preset", "fewshot-a", "absent.jpg", "--output", str(tmp_path / "m"), env=env, cwd=tmp_path)
    assert missing.returncode == 2 and "input not found: absent.jpg" in missing.stderr


def test_presets_without_a_predictor_predict_top_down(fake_plugin_dist, plugin_env, tmp_path) -> None:
    env = plugin_env(fake_plugin_dist("fewshot", FEW_SHOT_PLUGIN))
    for preset in ("fewshot-plain", "simplebaseline-res50-coco-256x192"):
        result = _predict("--preset", preset, "--output", str(tmp_path / preset), env=env, cwd=tmp_path)
        assert result.returncode == 2 and "give at least one INPUT" in result.stderr, result.stderr
        assert not (tmp_path / preset / "called.json").exists()


def test_a_posecore_checkpoint_picks_the_predictor_of_its_preset(fake_plugin_dist, plugin_env, tmp_path) -> None:
    import yaml

    from posecore._presets import simplebaseline_res50_coco
    from posecore.config import unstructure

    config = unstructure(simplebaseline_res50_coco())
    checkpoint = tmp_path / "best.pth"
    env = plugin_env(fake_plugin_dist("fewshot", FEW_SHOT_PLUGIN))
    for name, called in (("fewshot-a", True), ("my-own-experiment", False)):
        torch.save({"state_dict": {}, "meta": {"config": yaml.safe_dump({**config, "name": name})}}, checkpoint)
        out = tmp_path / name
        result = _predict("--checkpoint", str(checkpoint), "--output", str(out), env=env, cwd=tmp_path)
        assert (out / "called.json").exists() is called, result.stderr
        if not called:  # not a preset's checkpoint: the generic path asks for its inputs
            assert result.returncode == 2 and "give at least one INPUT" in result.stderr


@pytest.mark.parametrize("predictor", [42, "no_colon"])
def test_a_predictor_must_be_callable_or_a_reference(predictor) -> None:
    with pytest.raises((TypeError, ValueError), match="predictor"):
        Preset("p", "posecore._presets:simplebaseline_res50_coco", predictor=predictor)
    assert Preset("p", "posecore._presets:simplebaseline_res50_coco", predictor=print).predictor is print


def test_instance_results_keep_each_samples_own_keypoints() -> None:
    """A batch mixing categories of 3 and 5 keypoints: the model predicts 5 slots; each result
    keeps its own K, mapped through its own warp."""
    from posecore.engine._evaluation import instance_results

    warp = torch.tensor([[[2.0, 0.0, -10.0], [0.0, 2.0, -20.0]], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    batch = {
        "warp": warp,
        "image_keypoints": [np.zeros((3, 2), np.float32), np.zeros((5, 2), np.float32)],
        "eval_visibility": [np.ones(3, np.float32), np.ones(5, np.float32)],
        "visibility": [np.ones(3, np.float32), np.ones(5, np.float32)],
        "image_id": torch.tensor([1, 2]), "id": torch.tensor([11, 12]), "category_id": torch.tensor([7, 8]),
        "bbox": torch.tensor([[0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 9.0, 9.0]]), "sample_index": torch.tensor([0, 1]),
        "episode": torch.tensor([0, 4]),
    }
    keypoints = torch.arange(20, dtype=torch.float32).view(2, 5, 2)
    results = instance_results(batch, PoseResult(keypoints=keypoints, scores=torch.ones(2, 5)))
    assert [r["keypoints"].shape for r in results] == [(3, 2), (5, 2)]
    assert [r["keypoint_scores"].shape for r in results] == [(3,), (5,)]
    # crop = 2 * image - (10, 20)  =>  image = (crop + (10, 20)) / 2
    np.testing.assert_allclose(results[0]["keypoints"], (keypoints[0, :3].numpy() + [10, 20]) / 2)
    np.testing.assert_allclose(results[1]["keypoints"], keypoints[1].numpy())
    assert [r["episode"] for r in results] == [0, 4]


def test_foreign_checkpoint_meta_configs_are_not_posecore_configs() -> None:
    from posecore._api import config_from_checkpoint
    from posecore._presets import simplebaseline_res50_coco
    from posecore.config import dump_config

    mmcv = {"meta": {"config": "model = dict(\n    type='PoseAnythingModel', backbone=dict(type='SwinV2'))\n",
                     "epoch": 200}, "state_dict": {}}
    assert config_from_checkpoint(mmcv) is None
    assert config_from_checkpoint({"meta": {"config": "type: something: else: [unbalanced"}}) is None
    assert config_from_checkpoint({"meta": {"config": "a: 1\nb: 2\n"}}) is None
    config = simplebaseline_res50_coco()
    assert config_from_checkpoint({"meta": {"config": dump_config(config)}}) == config

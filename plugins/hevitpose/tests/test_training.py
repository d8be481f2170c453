"""Training for real: a few hundred steps drive the heatmap loss down; posecore's own checkpoint
round-trips; the ONNX export runs in onnxruntime with the model's numbers. (No checkpoint was ever
released, so there is no converter to test.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from posecore_hevitpose.presets import model_spec

import posecore
from posecore._plugins import get_host
from posecore.config import DataConfig, EvalConfig, ExperimentConfig, OptimizerConfig, TrainConfig, dump_config
from posecore.engine._builder import build_model
from posecore.testing import loss_history, model_and_batch

INPUT, HEATMAP = (48, 64), (12, 16)
BACKBONE = {"widths": [16, 32, 48], "depths": [1, 1, 1], "groups": [1, 2, 2], "heads": [1, 1, 1], "sr_ratios": [4, 2, 1]}


def _config(cache: str) -> ExperimentConfig:
    return ExperimentConfig(
        name="hevitpose-train-test",
        model=model_spec("T", 17, INPUT, **BACKBONE, head_channels=32),
        codec={"type": "msra_heatmap", "input_size": list(INPUT), "heatmap_size": list(HEATMAP), "sigma": 1.0},
        data=DataConfig(train=[{"type": "synthetic_people", "split": "train", "num_images": 8, "cache_dir": cache}],
                        val=[{"type": "synthetic_people", "split": "val", "num_images": 4, "cache_dir": cache}],
                        batch_size=8, num_workers=0, input_size=INPUT),
        train=TrainConfig(epochs=1, optimizer=OptimizerConfig(type="adamw", lr=2e-3)),
        eval=EvalConfig(metrics=[{"type": "coco_ap", "metainfo": "coco"}], main_metric="AP"),
        plugins=("hevitpose",),
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A tiny HEViTPose after 250 steps on 8 synthetic crops, with its loss history."""
    config = _config(str(tmp_path_factory.mktemp("synthetic")))
    model, batch = model_and_batch(config, 8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = [step["loss_heatmap"] for step in loss_history(model, batch, optimizer, 250)]
    return config, model.eval(), batch, history


def test_a_few_hundred_steps_drive_the_loss_down(trained) -> None:
    _, _, _, history = trained
    assert all(np.isfinite(history))
    assert np.mean(history[-10:]) < 0.5 * np.mean(history[:10]), (history[:3], history[-3:])


def test_posecores_own_checkpoint_round_trips(trained, tmp_path: Path) -> None:
    config, model, batch, _ = trained
    path = tmp_path / "best.pth"
    # The layout the trainer writes for best.pth: weights plus the config they were trained with.
    torch.save({"state_dict": model.state_dict(), "meta": {"preset": config.name, "config": dump_config(config)}}, path)
    loaded, loaded_config, _ = posecore.load_model(path, device="cpu", fuse=False)
    assert loaded_config == config
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch), model(batch), rtol=0, atol=0)
    # For inference load_model folds the BatchNorms into the convolutions: the same heatmaps.
    fused, _, _ = posecore.load_model(path, device="cpu")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.backbone.modules())
    with torch.no_grad():
        torch.testing.assert_close(fused(batch), model(batch), rtol=1e-3, atol=1e-4)
    fresh = build_model(config, get_host().registries)
    report = posecore.load_weights(fresh, path, strict=True)
    assert not report.missing and not report.unexpected
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(batch), model(batch), rtol=0, atol=0)


def test_onnx_export_matches_the_model_in_onnxruntime(trained, tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from posecore._export import export_onnx

    _, model, _, _ = trained
    path = export_onnx(model, tmp_path / "hevitpose.onnx", INPUT)
    images = torch.randn(3, 3, INPUT[1], INPUT[0])  # another batch size than the export's example
    session = onnxruntime.InferenceSession(str(path))
    exported = session.run(None, {"image": images.numpy()})[0]
    with torch.no_grad():
        native = model.head(model.backbone(images)).numpy()
    np.testing.assert_allclose(exported, native, atol=1e-4, rtol=1e-3)

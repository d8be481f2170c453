"""``posecore compare``: two tiny trained models of different architectures measured side by side,
with the same numbers ``posecore eval`` gives each; models of another keypoint set refused."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from posecore._cli.main import main
from posecore.config import save_config

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
AIC = SHARED / "aic"
pytestmark = [
    pytest.mark.skipif(not AIC.is_dir(), reason=f"shared sample data not found at {SHARED}"),
    pytest.mark.usefixtures("clean_plugin_env"),
]


def posecore(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSECORE_")}
    return subprocess.run([sys.executable, "-m", "posecore", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


def _train(config, folder: Path, *extra: str) -> None:
    """``posecore run`` of ``config`` into ``<folder>/runs/<config name>``."""
    save_config(config, folder / f"{config.name}.yaml")
    run = folder / "runs" / config.name
    result = posecore("run", "--config", str(folder / f"{config.name}.yaml"), "--output", str(run), "--quiet", *extra)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def runs(tiny_config, tmp_path_factory) -> Path:
    """Under ``<folder>/runs``: a ResNet-18 and a ViT trained for one epoch on the same synthetic
    data, and an untrained 14-keypoint model evaluated on the AI Challenger sample images."""
    folder = tmp_path_factory.mktemp("compare")
    resnet = tiny_config(epochs=1)
    _train(attrs.evolve(resnet, name="tiny-resnet"), folder)
    vit = {"type": "topdown_heatmap",
           "backbone": {"type": "vit", "arch": "small", "embed_dim": 64, "depth": 2, "num_heads": 2, "patch_size": 8,
                        "input_size": [48, 64]},
           "head": {"type": "heatmap_deconv", "in_channels": 64, "num_keypoints": 17, "deconv_channels": [32],
                    "input_stride": 8},
           "input_size": [48, 64]}
    _train(attrs.evolve(resnet, name="tiny-vit", model=vit), folder)
    aic_model = {**resnet.model.to_dict(), "head": {**resnet.model.args["head"], "num_keypoints": 14}}
    aic = attrs.evolve(
        resnet, name="tiny-aic", model=aic_model,
        data=attrs.evolve(resnet.data, val=[{"type": "aic", "ann_file": str(AIC / "test_aic.json"),
                                             "image_root": str(AIC)}]),
        eval=attrs.evolve(resnet.eval, metrics=[{"type": "coco_ap", "metainfo": "aic", "use_area": False}]))
    _train(aic, folder, "--epochs", "0")
    return folder


def test_compare_measures_the_runs_on_the_same_data_as_eval_scores_them(runs: Path, capsys) -> None:
    result = posecore("compare", "--min-time", "0.05", "--output", "out", cwd=runs)
    assert result.returncode == 0, result.stderr
    document = json.loads((runs / "out" / "compare.json").read_text())
    models = {model["label"]: model for model in document["models"]}
    assert list(models) == ["tiny-resnet", "tiny-vit"]
    assert document["not_compared"] == [{"label": "tiny-aic", "reason": "evaluated on other data.val than tiny-resnet"}]
    assert document["protocol"]["source"] == "tiny-resnet" and document["protocol"]["flip_test"] is True
    for label, model in models.items():
        assert main(["eval", "--checkpoint", str(runs / "runs" / label / "checkpoints" / "best.pth"), "--json"]) == 0
        assert model["metrics"] == json.loads(capsys.readouterr().out)["metrics"]
        assert model["params"] > 0 and model["GFLOPs"] > 0
        assert set(model["images_per_s"]) == {"1", "32"} and min(model["images_per_s"].values()) > 0
        assert model["peak_memory_MiB"] is None or model["peak_memory_MiB"] >= 0
        if sys.platform == "linux":
            assert model["peak_memory_MiB"] is not None
    assert models["tiny-resnet"]["params"] != models["tiny-vit"]["params"]

    printed = result.stdout
    assert "tiny-resnet" in printed and "tiny-vit" in printed and "img/s @32" in printed
    assert "not compared: tiny-aic" in printed
    rows = list(csv.DictReader((runs / "out" / "compare.csv").open()))
    assert [row["model"] for row in rows] == ["tiny-resnet", "tiny-vit"]
    assert float(rows[1]["AP"]) == models["tiny-vit"]["metrics"]["synthetic_people-val"]["AP"]
    markdown = (runs / "out" / "compare.md").read_text()
    assert "| tiny-vit | posecore | coco |" in markdown and "images/s: model.predict" in markdown
    assert (runs / "out" / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_model_of_another_keypoint_set_is_refused_with_the_reason(runs: Path, capsys, tmp_path: Path) -> None:
    code = main(["compare", str(runs / "runs" / "tiny-vit"), str(runs / "runs" / "tiny-aic" / "checkpoints" / "best.pth"),
                 "--output", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "tiny-aic: the model predicts aic (14 keypoints), synthetic_people-val is labelled with coco (17 keypoints)" in err
    assert not (tmp_path / "out").exists()


def test_naming_nothing_comparable(tmp_path: Path, capsys) -> None:
    assert main(["compare", "--runs", str(tmp_path / "none")]) == 2
    assert "no run folder" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("name: x\n")
    assert main(["compare", str(tmp_path / "run")]) == 2
    assert "has no checkpoints/best.pth (not finished yet?)" in capsys.readouterr().err


def test_a_checkpoint_without_a_config_takes_its_preset(runs: Path, capsys, tmp_path: Path) -> None:
    """A bare state dict (as other frameworks save) of the ``vit-tiny-synthetic`` architecture is
    compared once ``--preset-for-foreign`` names its preset, at its own input size (128x96)."""
    import torch

    from posecore import get_preset
    from posecore._plugins import load_plugins
    from posecore.engine._builder import build_model

    foreign = tmp_path / "foreign.pth"
    torch.save(build_model(get_preset("vit-tiny-synthetic"), load_plugins().registries).state_dict(), foreign)
    arguments = ["compare", str(runs / "runs" / "tiny-vit"), str(foreign), "--batch-sizes", "1,2", "--min-time", "0",
                 "--output", str(tmp_path / "out")]
    assert main(arguments) == 2
    assert f"{foreign} carries no posecore config: say which model it is with --preset-for-foreign" in capsys.readouterr().err
    assert main([*arguments, "--preset-for-foreign", "vit-tiny-synthetic"]) == 0
    models = json.loads((tmp_path / "out" / "compare.json").read_text())["models"]
    assert [(m["label"], m["config"], m["input_shape"][-2:]) for m in models] == [
        ("tiny-vit", "tiny-vit", [64, 48]), ("foreign", "vit-tiny-synthetic", [128, 96])]

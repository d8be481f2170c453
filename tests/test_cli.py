"""The real ``posecore`` command line, run as ``python -m posecore`` in subprocesses.

Fake plugins are real distributions on ``PYTHONPATH`` (``fake_plugin_dist`` in conftest.py).
Every subprocess runs in a temporary directory with posecore's environment variables cleared.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import tomllib
import yaml

from posecore.hookspecs import PLUGIN_API_VERSION

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = ("pgvl", "vlpose", "posebh", "poseanything", "hevitpose")
COMMANDS = ("plugins", "config", "run", "train", "eval", "predict", "export", "convert", "flops", "compare", "doctor",
            "app")
PRESET = "simplebaseline-res50-coco-256x192"


@pytest.fixture
def posecore_cli(plugin_env, tmp_path):
    """``posecore_cli(*args, path=(dirs on PYTHONPATH), env={extra variables}) -> CompletedProcess``."""

    def run(*args: object, path: tuple[Path, ...] = (), env: dict[str, str] | None = None):
        return subprocess.run(
            [sys.executable, "-m", "posecore", *map(str, args)],
            capture_output=True, text=True, cwd=tmp_path, env=plugin_env(*path, **(env or {})), timeout=300,
        )

    return run


def _declared_version(plugin: str) -> str:
    return tomllib.loads((ROOT / "plugins" / plugin / "pyproject.toml").read_text())["project"]["version"]


def _preset_config():
    from posecore._presets import simplebaseline_res50_coco

    return simplebaseline_res50_coco()


# -- help and start-up cost --------------------------------------------------------------------


def test_every_command_is_covered() -> None:
    from posecore._cli.main import COMMANDS as REGISTERED

    assert set(REGISTERED) == set(COMMANDS)


@pytest.mark.parametrize("command", [None, *COMMANDS], ids=lambda c: c or "top-level")
def test_help(command, posecore_cli) -> None:
    result = posecore_cli(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: posecore{' ' + command if command else ''}")
    assert "Traceback" not in result.stderr
    if command is None:
        assert all(name in result.stdout for name in COMMANDS)
    else:
        assert "--strict-plugins" in result.stdout and "--plugin NAME" in result.stdout


def test_building_the_parser_does_not_import_torch(tmp_path) -> None:
    code = (
        "import sys\n"
        "from posecore._cli.main import build_parser, main\n"
        "parser, parsers = build_parser()\n"
        "assert set(parsers) >= {'plugins', 'run', 'flops'}\n"
        "print('torch' in sys.modules)\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "False"
    assert result.stderr.strip() == "False"


# -- plugins -----------------------------------------------------------------------------------

EXPLODING = "raise RuntimeError('kaboom at import time')\n"


def _plugins(result: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    document = json.loads(result.stdout)  # exactly one JSON document, nothing else on stdout
    assert document["plugin_api"] == PLUGIN_API_VERSION
    return {entry["name"]: entry for entry in document["plugins"]}


def _assert_official_ok(plugins: dict[str, dict]) -> None:
    for name in OFFICIAL:
        entry = plugins[name]
        assert {"name", "version", "distribution", "status", "error", "components"} <= set(entry)
        assert entry["status"] == "ok", entry["error"]
        assert entry["error"] is None
        assert entry["distribution"] == f"posecore-{name}"
        assert entry["version"] == _declared_version(name)
        assert isinstance(entry["components"], dict)


def test_plugins_json(posecore_cli) -> None:
    result = posecore_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = _plugins(result)
    _assert_official_ok(plugins)
    core = plugins["posecore"]
    assert core["builtin"] and core["status"] == "ok"
    assert PRESET in core["components"]["presets"] and "vit-tiny-synthetic" in core["components"]["presets"]
    published = {p["name"]: p["published"] for p in core["presets"]}
    assert published[PRESET][0]["value"] == 70.4


def test_plugins_json_with_a_broken_plugin(posecore_cli, fake_plugin_dist) -> None:
    site = fake_plugin_dist("exploding", EXPLODING)
    result = posecore_cli("plugins", "--json", path=(site,))
    assert result.returncode == 0, result.stderr
    plugins = _plugins(result)
    _assert_official_ok(plugins)
    broken = plugins["exploding"]
    assert broken["status"] == "error"
    assert "kaboom at import time" in broken["error"]
    assert broken["distribution"] == "posecore-fake-exploding" and broken["components"] == {}

    strict = posecore_cli("plugins", "--json", "--strict-plugins", path=(site,))
    assert strict.returncode != 0
    assert "exploding" in strict.stderr and "kaboom at import time" in strict.stderr
    assert "Traceback" not in strict.stderr
    assert strict.stdout == ""


def test_plugins_verbose_shows_presets_with_published_figures(posecore_cli) -> None:
    result = posecore_cli("plugins", "-v")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    ((index, line),) = [(n, line) for n, line in enumerate(lines) if PRESET in line]
    assert "AP 70.4" in line
    from posecore._plugins import get_host

    description = get_host().registries.presets.get(PRESET).description
    assert description and lines[index + 1].split() == description.split()  # what the preset runs, below it


def test_version(posecore_cli) -> None:
    result = posecore_cli("--version")
    assert result.returncode == 0, result.stderr
    assert re.match(rf"posecore 0\.1\.0 \(plugin API {PLUGIN_API_VERSION}\)", result.stdout)
    for name in OFFICIAL:
        pattern = rf"^\s+{name}: posecore-{name} {re.escape(_declared_version(name))} \[ok\]$"
        assert re.search(pattern, result.stdout, re.MULTILINE), result.stdout


# -- config ------------------------------------------------------------------------------------


def _expected_config():
    preset = _preset_config()
    assert preset.train.epochs != 3
    return attrs.evolve(preset, train=attrs.evolve(preset.train, epochs=3))


def test_config_prints_yaml_that_loads_back(posecore_cli) -> None:
    from posecore.config import ExperimentConfig, structure

    result = posecore_cli("config", "--preset", PRESET, "train.epochs=3")
    assert result.returncode == 0, result.stderr
    assert structure(yaml.safe_load(result.stdout), ExperimentConfig) == _expected_config()


def test_config_output_file(posecore_cli, tmp_path) -> None:
    from posecore.config import load_config

    target = tmp_path / "out" / "experiment.yaml"
    result = posecore_cli("config", "--preset", PRESET, "--output", target, "train.epochs=3")
    assert result.returncode == 0, result.stderr
    assert str(target) in result.stdout
    assert load_config(target) == _expected_config()
    assert sorted(p.name for p in target.parent.iterdir()) == ["experiment.yaml"]


def test_config_misspelt_override(posecore_cli) -> None:
    result = posecore_cli("config", "--preset", PRESET, "train.epoch=3")
    assert result.returncode == 2
    assert "did you mean 'epochs'" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_config_unknown_preset(posecore_cli) -> None:
    result = posecore_cli("config", "--preset", "simplebaseline-res50-coco-265x192")
    assert result.returncode == 2
    assert f"did you mean '{PRESET}'" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


# -- flops -------------------------------------------------------------------------------------


def _deconv_head_macs(in_channels: int, height: int, width: int, channels: list[int], keypoints: int) -> int:
    """Stride-2, kernel-4 transposed convs: every input element is multiplied into
    out_channels * 4 * 4 outputs; then a 1x1 conv to the keypoints."""
    macs = 0
    for out in channels:
        macs += height * width * in_channels * out * 4 * 4
        in_channels, height, width = out, height * 2, width * 2
    return macs + height * width * in_channels * keypoints


def test_flops_json_matches_the_model(posecore_cli) -> None:
    from posecore._plugins import load_plugins

    result = posecore_cli("flops", "--json", "--preset", PRESET)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert "multiply-accumulates" in document["convention"]
    figures = document["presets"][PRESET]
    assert list(document["presets"]) == [PRESET]

    model = load_plugins(autoload=False).registries.models.build(_preset_config().model)
    assert figures["params"] == sum(p.numel() for p in model.parameters())
    assert figures["GFLOPs"] > 0 and "multiply-accumulates" in figures["flops_convention"]
    assert figures["input_shape"] == [1, 3, 256, 192]
    # the head is analytic: ResNet-50's 8x6 stride-32 map through three deconvs to 17 heatmaps
    head = _deconv_head_macs(2048, 8, 6, [256, 256, 256], 17)
    assert figures["GFLOPs_by_module"]["head"] == round(head / 1e9, 3)
    assert figures["GFLOPs"] == pytest.approx(sum(figures["GFLOPs_by_module"].values()), abs=2e-3)


def test_measure_complexity_counts_macs_exactly() -> None:
    import torch
    from torch import nn

    from posecore.analysis import measure_complexity

    class TinyPose(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.fc = nn.Linear(8 * 10 * 8, 7)

        def forward(self, batch):
            return self.fc(torch.relu(self.conv(batch["image"])).flatten(1))

    model = TinyPose().train()
    complexity = measure_complexity(model, {"image": torch.randn(1, 3, 20, 16)})
    conv = (8 * 10 * 8) * (3 * 3 * 3)  # output elements x (in_channels x kernel area)
    fc = (8 * 10 * 8) * 7  # in_features x out_features
    assert complexity.macs == conv + fc == 21760
    assert dict(complexity.macs_by_module) == {"conv": conv, "fc": fc}
    assert complexity.params == (8 * 27 + 8) + (640 * 7 + 7)
    assert complexity.input_shape == (1, 3, 20, 16)
    assert complexity.to_json()["GFLOPs"] == round((conv + fc) / 1e9, 3)
    assert model.training, "measuring must restore the training mode"


def test_measure_complexity_modules_convention_leaves_out_products_outside_leaf_modules(posecore_cli) -> None:
    """mmcv's module-hook convention: the linear projections count, the attention products written
    in the attention module's own forward (QK^T, AV, here through fused attention) do not."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from posecore.analysis import measure_complexity

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(8, 24)
            self.block = nn.Sequential(nn.Linear(8, 8), nn.ReLU())  # nested: only its leaves count

        def forward(self, batch):
            tokens = batch["image"].flatten(2).transpose(1, 2)  # (1, 20, 8)
            q, k, v = self.qkv(tokens).chunk(3, dim=-1)
            return self.block(F.scaled_dot_product_attention(q, k, v) + q @ k.transpose(1, 2) @ v)

    model = Attention()
    batch = {"image": torch.randn(1, 8, 4, 5)}
    projections = 20 * 8 * 24 + 20 * 8 * 8
    products = 2 * (2 * 20 * 20 * 8)  # QK^T and AV, twice (fused and written out)
    assert measure_complexity(model, batch).macs == projections + products
    modules = measure_complexity(model, batch, convention="modules")
    assert modules.macs == projections
    assert dict(modules.macs_by_module) == {"qkv": 20 * 8 * 24, "block": 20 * 8 * 8}
    assert "leaf modules" in modules.to_json()["flops_convention"]
    with pytest.raises(ValueError, match="convention must be one of"):
        measure_complexity(model, batch, convention="mmcv")
    result = posecore_cli("flops", "--json", "--convention", "modules", "--preset", PRESET)
    assert result.returncode == 0, result.stderr
    assert "leaf modules only" in json.loads(result.stdout)["convention"]


# -- doctor ------------------------------------------------------------------------------------


def test_doctor_json(posecore_cli) -> None:
    import torch

    result = posecore_cli("doctor", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["python"] == platform.python_version()
    assert document["torch"]["version"] == torch.__version__
    assert document["torch"]["cuda_available"] is torch.cuda.is_available()
    assert len(document["torch"]["devices"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    for name in OFFICIAL:
        assert document["plugins"][name] == {"status": "ok", "version": _declared_version(name), "error": None}
    assert document["plugins"]["posecore"]["status"] == "ok"


# -- convert -----------------------------------------------------------------------------------

STRIP_MODULE = """
    import posecore

    POSECORE_PLUGIN_API = 1


    def strip_module(state_dict):
        return {key.removeprefix("module."): value for key, value in state_dict.items()}


    @posecore.hookimpl
    def posecore_converters():
        return [posecore.Converter("strip-module", "posecore_fake_ddp:strip_module",
                                   "DataParallel checkpoints: module.*")]
"""


@pytest.fixture
def converter_site(fake_plugin_dist) -> Path:
    return fake_plugin_dist("ddp", STRIP_MODULE)


def test_convert_with_a_plugin_converter(posecore_cli, converter_site, tmp_path) -> None:
    import torch

    state = {
        "module.backbone.conv.weight": torch.randn(4, 3, 3, 3),
        "module.head.bias": torch.arange(5.0),
        "head.scale": torch.ones(2),
    }
    source, target = tmp_path / "in.pth", tmp_path / "converted" / "out.pth"
    torch.save({"state_dict": state, "epoch": 7}, source)
    result = posecore_cli("convert", "--converter", "strip-module", source, target, path=(converter_site,))
    assert result.returncode == 0, result.stderr
    assert "3 tensors" in result.stdout

    converted = torch.load(target, weights_only=True)
    assert converted["meta"] == {"converter": "strip-module", "source": str(source)}
    assert sorted(converted["state_dict"]) == ["backbone.conv.weight", "head.bias", "head.scale"]
    assert torch.equal(converted["state_dict"]["backbone.conv.weight"], state["module.backbone.conv.weight"])
    assert torch.equal(converted["state_dict"]["head.bias"], state["module.head.bias"])
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.pth"]


def test_convert_unknown_converter(posecore_cli, converter_site, tmp_path) -> None:
    import torch

    source = tmp_path / "in.pth"
    torch.save({"state_dict": {"module.w": torch.zeros(1)}}, source)
    result = posecore_cli("convert", "--converter", "strip-modul", source, tmp_path / "out.pth", path=(converter_site,))
    assert result.returncode == 2
    assert "strip-module" in result.stderr and "did you mean 'strip-module'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.pth").exists()


def test_convert_refuses_pickled_code(posecore_cli, converter_site, tmp_path, monkeypatch) -> None:
    """A checkpoint whose unpickling would call code from a module: refused, nothing runs, nothing
    is written, even though that module is importable in the subprocess."""
    import torch

    payload = tmp_path / "payload"
    payload.mkdir()
    marker = tmp_path / "code-ran"
    (payload / "ckpt_payload.py").write_text(
        "from pathlib import Path\n\n"
        "def touch(path):\n"
        "    Path(path).touch()\n"
        "    return 'ran'\n\n"
        "class TrainerState:\n"
        "    def __reduce__(self):\n"
        f"        return (touch, ({str(marker)!r},))\n"
    )
    monkeypatch.syspath_prepend(str(payload))
    from ckpt_payload import TrainerState  # noqa: PLC0415 - written just above

    source = tmp_path / "in.pth"
    torch.save({"state_dict": {"module.w": torch.zeros(1)}, "trainer": TrainerState()}, source)
    assert not marker.exists()
    assert torch.load(source, weights_only=False)["trainer"] == "ran"  # the payload is live ...
    assert marker.exists()
    marker.unlink()  # ... so a marker after the CLI ran would prove code ran
    sys.modules.pop("ckpt_payload", None)

    out_dir = tmp_path / "converted"
    out_dir.mkdir()
    result = posecore_cli("convert", "--converter", "strip-module", source, out_dir / "out.pth",
                          path=(converter_site, payload))
    assert result.returncode == 2
    assert "code to run" in result.stderr and str(source) in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists(), "loading the checkpoint ran code from it"
    assert list(out_dir.iterdir()) == []


# -- commands whose engine is not there yet ----------------------------------------------------


def test_run_of_a_preset_without_its_data_names_the_missing_file(posecore_cli) -> None:
    result = posecore_cli("run", "--preset", PRESET, "train.epochs=1")
    assert result.returncode == 2
    assert "annotation file not found" in result.stderr and "person_keypoints_train2017.json" in result.stderr
    assert "Traceback" not in result.stderr


NO_DEFAULT_PRESET = """
    from posecore import Preset, hookimpl

    POSECORE_PLUGIN_API = 1

    @hookimpl
    def posecore_presets():
        return [Preset("nodefault-preset", "posecore._presets:simplebaseline_res50_coco", "not the default")]
"""


def test_run_of_a_plugin_without_a_default_preset_fails_cleanly(posecore_cli, fake_plugin_dist) -> None:
    site = fake_plugin_dist("nodefault", NO_DEFAULT_PRESET)
    result = posecore_cli("run", "--plugin", "nodefault", path=(site,))
    assert result.returncode == 2
    assert "--preset" in result.stderr and "nodefault-preset" in result.stderr
    assert "Traceback" not in result.stderr

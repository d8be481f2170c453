"""Inference precision (``Pose(precision=)``, ``predict``/``eval --precision``) and ``train.mixed_precision: auto``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import posecore
import posecore._inference
from posecore._inference import cpu_has_amx, inference_autocast
from posecore.engine._trainer import _resolved_precision

COCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco"


def _person_boxes() -> tuple[Path, list[list[float]]]:
    document = json.loads((COCO / "test_coco.json").read_text())
    image = document["images"][0]
    boxes = [[x, y, x + w, y + h] for x, y, w, h in
             (a["bbox"] for a in document["annotations"] if a["image_id"] == image["id"] and a["num_keypoints"] > 0)]
    return COCO / image["file_name"], boxes


def test_bf16_inference_follows_fp32_on_a_real_image() -> None:
    torch.manual_seed(0)
    path, boxes = _person_boxes()
    fp32 = posecore.Pose(preset="vit-tiny-synthetic", device="cpu", flip_test=False)
    bf16 = posecore.Pose(preset="vit-tiny-synthetic", device="cpu", flip_test=False, precision="bf16")
    bf16.model.load_state_dict(fp32.model.state_dict())
    a, b = (pose(path, [boxes], return_heatmaps=True)[0] for pose in (fp32, bf16))
    assert a.heatmaps.dtype == b.heatmaps.dtype == np.float32 and a.heatmaps.shape == b.heatmaps.shape
    spread = float(a.heatmaps.max() - a.heatmaps.min())
    assert spread > 0 and float(np.abs(a.heatmaps - b.heatmaps).max()) < 0.05 * spread  # bf16: 8 mantissa bits
    assert not np.array_equal(a.heatmaps, b.heatmaps), "bf16 ran: the heatmaps are rounded differently"


def test_precisions_are_checked_before_anything_runs() -> None:
    with pytest.raises(posecore.PosecoreError, match="fp16 needs a CUDA device"):
        posecore.Pose(preset="vit-tiny-synthetic", device="cpu", precision="fp16")
    with pytest.raises(posecore.PosecoreError, match="precision must be one of fp32, bf16, fp16"):
        inference_autocast("cpu", "fp8")  # type: ignore[arg-type]
    result = subprocess.run([sys.executable, "-m", "posecore", "predict", "--preset", "vit-tiny-synthetic", "--device",
                             "cpu", "--whole-image", "--precision", "fp16", str(_person_boxes()[0])],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "fp16 needs a CUDA device" in result.stderr, result.stderr


@pytest.fixture
def onednn_cap(monkeypatch: pytest.MonkeyPatch):
    """Set oneDNN's ISA cap (``None``: none) for :func:`cpu_has_amx`, which reads it once per
    process, so its cache is cleared before and after."""
    def cap(value: str | None) -> None:
        monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        if value is not None:
            monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", value)
        cpu_has_amx.cache_clear()

    yield cap
    monkeypatch.undo()
    cpu_has_amx.cache_clear()


def test_auto_mixed_precision_is_bf16_only_where_amx_makes_it_pay(onednn_cap) -> None:
    onednn_cap(None)
    expected = "bf16" if (torch.cuda.is_bf16_supported() if torch.cuda.is_available() else cpu_has_amx()) else "no"
    assert _resolved_precision("auto") == expected
    assert [_resolved_precision(s) for s in ("no", "bf16")] == ["no", "bf16"]
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert cpu_has_amx() == ("amx_bf16" in flags.split())  # no cap: the CPU's own flag decides


@pytest.mark.parametrize(("cap", "allows_amx"), [("AVX512_CORE_BF16", False), ("avx2", False), ("AVX512_CORE_AMX", True),
                                                 ("all", True), ("default", True)])
def test_onednn_held_below_amx_counts_as_no_amx(onednn_cap, monkeypatch: pytest.MonkeyPatch, cap: str,
                                                allows_amx: bool) -> None:
    """AMD Zen 4 and Intel Cooper Lake have AVX512_BF16 but no AMX; oneDNN held to their
    instructions is how ``benchmarks/`` measured bf16 slower than fp32 there, and how a user keeps
    a Sapphire Rapids from AMX: both then train ``auto`` in fp32 and are warned off bf16 inference.
    The CPU's flags are set to an AMX CPU's so that the cap decides on any machine."""
    monkeypatch.setattr(posecore._inference, "_cpu_flags", lambda: {"avx512_bf16", "amx_bf16"})
    onednn_cap(cap)
    assert cpu_has_amx() == allows_amx
    if not allows_amx:
        with pytest.warns(UserWarning, match="no AMX"):
            inference_autocast("cpu", "bf16")
        if not torch.cuda.is_available():
            assert _resolved_precision("auto") == "no"
    elif not torch.cuda.is_available():
        assert _resolved_precision("auto") == "bf16"


def test_the_former_cap_name_counts_and_the_current_one_overrides_it(onednn_cap, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(posecore._inference, "_cpu_flags", lambda: {"amx_bf16"})
    onednn_cap(None)
    assert cpu_has_amx()
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX512_CORE_BF16")
    cpu_has_amx.cache_clear()
    assert not cpu_has_amx()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    cpu_has_amx.cache_clear()
    assert cpu_has_amx()
    monkeypatch.setattr(posecore._inference, "_cpu_flags", lambda: {"avx512_bf16"})  # Zen 4's flags
    cpu_has_amx.cache_clear()
    assert not cpu_has_amx()

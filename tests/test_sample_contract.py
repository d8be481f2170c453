"""The ``Sample`` and ``Batch`` TypedDicts declare every key the core reads and every key real data carries.

Real readers on the shared sample files (COCO with detector boxes, MPII with head boxes,
InterHand2.6M per hand) and MP-100 episodes go through the real train and test pipelines (a
heatmap and a coordinate codec) and the engine's evaluation wrapper; every key of every sample
and collated batch must be declared, and every declared key but the plugin-only ones must turn up.
A static scan of the core's source then checks that every key read from a sample or batch is
declared, so a new key cannot be read without being documented.
"""

from __future__ import annotations

import ast
import typing
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from posecore._plugins import get_host
from posecore.codecs import KeypointRegression, MSRAHeatmap
from posecore.data import PipelineDataset, build_pipeline, check_sample, collate_samples, standard_topdown_pipeline
from posecore.data._sample import REQUIRED_SAMPLE_KEYS, Batch, Sample
from posecore.engine._evaluation import IndexedDataset

CORE = Path(__file__).resolve().parents[1] / "core" / "posecore"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
INPUT = (48, 64)  # width, height
#: Keys the core declares for plugins and never sets itself.
PLUGIN_ONLY = {"text", "style"}
#: Set by ``random_flip`` and consumed by ``topdown_affine`` within the same pipeline.
TRANSIENT = {"flip_axis"}

DECLARED = set(Sample.__annotations__)


def _shared(relative: str) -> str:
    path = SHARED / relative
    assert path.exists(), f"shared sample data missing: {path} (the tests expect the checkout beside shared/)"
    return str(path)


def _readers(tmp_path: Path) -> dict[str, Any]:
    """Each reader with the optional fields it adds: detector scores, head sizes, hands, episodes."""
    registry = get_host().registries.datasets
    interhand = {"ann_file": _shared("interhand2.6m/test_interhand2.6m_data.json"),
                 "camera_file": _shared("interhand2.6m/test_interhand2.6m_camera.json"),
                 "joint_file": _shared("interhand2.6m/test_interhand2.6m_joint_3d.json")}
    specs = {
        "coco+detections": {"type": "coco", "ann_file": _shared("coco/test_coco.json"),
                            "bbox_file": _shared("coco/test_coco_det_AP_H_56.json")},
        "mpii+headboxes": {"type": "mpii", "ann_file": _shared("mpii/test_mpii.json"),
                           "headbox_file": _shared("mpii/test_mpii_gt_val.mat")},
        "interhand2d:each": {"type": "interhand2d", "hands": "each", **interhand},
        "mp100:episodes": {"type": "mp100", **registry.get("mp100").example_kwargs(tmp_path / "mp100")},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the readers' loading reports are tested elsewhere
        return {name: registry.build(spec) for name, spec in specs.items()}


def _pipelines() -> dict[str, Any]:
    heatmap = MSRAHeatmap(INPUT, (12, 16), sigma=2.0)
    coordinates = KeypointRegression(INPUT)
    registries = get_host().registries
    return {
        "train/heatmap": build_pipeline(standard_topdown_pipeline(True), registries=registries, codec=heatmap,
                                        input_size=INPUT),
        "train/coordinates": build_pipeline(standard_topdown_pipeline(True), registries=registries,
                                            codec=coordinates, input_size=INPUT),
        "test": build_pipeline(standard_topdown_pipeline(False), registries=registries, codec=heatmap,
                               input_size=INPUT),
        "train/heatmap/jpeg-on-device": build_pipeline(standard_topdown_pipeline(True), registries=registries,
                                                       codec=heatmap, input_size=INPUT, jpeg_decode="device"),
    }


def _samples_and_batches(tmp_path: Path) -> list[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """(where, the samples, a batch of those with the first sample's keypoint count) per reader and pipeline."""
    out = []
    for reader, dataset in _readers(tmp_path).items():
        for name, pipeline in _pipelines().items():
            wrapped = PipelineDataset(dataset, pipeline, seed=1)
            items = IndexedDataset(wrapped) if name == "test" else wrapped
            samples = [items[index] for index in range(min(len(items), 4))]
            k = samples[0]["meta"].num_keypoints
            out.append((f"{reader} {name}", samples, collate_samples([s for s in samples
                                                                      if s["meta"].num_keypoints == k])))
    return out


@pytest.fixture(scope="module")
def pipeline_outputs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    return _samples_and_batches(tmp_path_factory.mktemp("sample_contract"))


def test_required_keys_are_the_typeddicts_required_keys() -> None:
    assert set(REQUIRED_SAMPLE_KEYS) == Sample.__required_keys__
    assert {"image", "keypoints", "visibility", "bbox", "image_id", "id", "category_id", "dataset_index",
            "meta"} == Sample.__required_keys__
    assert {"warp", "image_keypoints", "eval_visibility", "sample_index", "head_size", "episode",
            "bbox_score", "support", "text", "style"} <= Sample.__optional_keys__
    # A batch is the collated samples: the same keys; only the image is in every batch.
    assert set(Batch.__annotations__) == DECLARED
    assert Batch.__required_keys__ == {"image"}


def test_every_key_of_real_samples_is_declared_and_required_keys_are_present(pipeline_outputs) -> None:
    seen: set[str] = set()
    for where, samples, _ in pipeline_outputs:
        for index, sample in enumerate(samples):
            for item in (sample, *sample.get("support", ())):
                undeclared = set(item) - DECLARED
                assert not undeclared, f"{where} sample {index}: keys {sorted(undeclared)} are not declared in Sample"
                check_sample(item, item["meta"].num_keypoints, where=f"{where} sample {index}")
                seen |= set(item)
    unseen = DECLARED - seen - PLUGIN_ONLY - TRANSIENT
    assert not unseen, f"Sample declares {sorted(unseen)}, which no reader or pipeline gave: stale declarations?"


def test_collated_batches_have_the_declared_form(pipeline_outputs) -> None:
    """Tensors where Batch declares tensors (stacked along B), lists where it declares lists."""
    declared = typing.get_type_hints(Batch)
    for where, _, batch in pipeline_outputs:
        size = len(batch["image"])
        assert set(batch) <= DECLARED, where
        for key, value in batch.items():
            if declared[key] is torch.Tensor:
                assert isinstance(value, torch.Tensor) and value.shape[0] == size, (where, key, type(value))
            else:
                assert typing.get_origin(declared[key]) is list, (where, key, declared[key])
                assert isinstance(value, list) and len(value) == size, (where, key, type(value))
        assert batch["image"].dtype == torch.uint8 and tuple(batch["image"].shape[1:]) == (3, INPUT[1], INPUT[0])
        if "warp" in batch:
            assert tuple(batch["warp"].shape) == (size, 2, 3), where


_SAMPLE_NAMES = {"sample", "batch", "item", "query", "support"}


def _keys_read(tree: ast.AST) -> list[tuple[str, int]]:
    """String keys used on variables named like samples and batches: ``sample["k"]``,
    ``batch.get("k")`` / ``setdefault`` / ``pop``, ``"k" in batch`` and ``sample.update(k=...)``."""
    keys = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in _SAMPLE_NAMES
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
            keys.append((node.slice.value, node.lineno))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and isinstance(node.func.value, ast.Name) and node.func.value.id in _SAMPLE_NAMES):
            if node.func.attr in ("get", "setdefault", "pop") and node.args and isinstance(node.args[0], ast.Constant):
                keys.append((node.args[0].value, node.lineno))
            elif node.func.attr == "update":
                keys.extend((keyword.arg, node.lineno) for keyword in node.keywords if keyword.arg)
        elif (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant)
              and isinstance(node.left.value, str) and isinstance(node.ops[0], (ast.In, ast.NotIn))
              and isinstance(node.comparators[0], ast.Name) and node.comparators[0].id in _SAMPLE_NAMES):
            keys.append((node.left.value, node.lineno))
    return keys


def test_every_sample_key_the_core_reads_is_declared() -> None:
    used: dict[str, str] = {}
    for path in sorted(CORE.rglob("*.py")):
        for key, line in _keys_read(ast.parse(path.read_text(encoding="utf-8"))):
            used.setdefault(key, f"{path.relative_to(CORE.parent)}:{line}")
    # The scan must see the keys the engine is known to read, or it scans nothing.
    assert {"warp", "image_keypoints", "eval_visibility", "sample_index", "head_size", "episode",
            "bbox_score"} <= set(used)
    undeclared = {key: where for key, where in used.items() if key not in DECLARED}
    assert not undeclared, f"keys read from samples or batches but not declared in Sample: {undeclared}"

"""Every dataset reader, on every shared sample file, through the standard train and test pipelines.

For each registered reader and each sample of its format (README counts; the detection files too;
MP-100 with stand-in images at the sizes its file states, since MP-100 ships none), every item
goes through ``standard_topdown_pipeline(train=True)`` with an MSRA and a UDP codec (detection
files, which only tests use, excepted) and through ``standard_topdown_pipeline(train=False)``. Shapes come from the shared metainfo and the files
(17, 133, 14, 20, 21, 16, 42, MP-100's per-category K), never from the reader under test. The
test crops are checked against the warp they report, and UDP targets made from them decode back
to the crop keypoints within 0.1 px. Every other registered dataset goes through both pipelines
on its own small example.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import attrs
import cv2
import numpy as np
import pytest
import torch

from posecore._plugins import get_host
from posecore.codecs import MSRAHeatmap, UDPHeatmap
from posecore.data import PipelineDataset, build_pipeline, collate_samples, standard_topdown_pipeline

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
METAINFO = SHARED / "metainfo"
INPUT = (192, 256)  # width, height
HEATMAP = (48, 64)
HUMANART_PREFIX = "HumanArt/images/"
#: Modules whose readers parse the original formats that shared/data holds samples of.
SAMPLE_FORMAT_MODULES = ("posecore.data._coco:", "posecore.data._mpii:", "posecore.data._interhand:",
                         "posecore.data._mp100:")

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared sample data not found at {SHARED}")


def _k(name: str) -> int:
    return int(json.loads((METAINFO / f"{name}.json").read_text(encoding="utf-8"))["num_keypoints"])


@attrs.frozen
class Case:
    """A reader on one sample file: its spec, the README's instance count, the keypoints per sample."""

    id: str
    spec: dict[str, Any]
    count: int
    keypoints: int | None  # None: per category (MP-100), read from the annotation file
    mp100_file: Path | None = None


def _coco(reader: str, path: str, count: int, metainfo_name: str, **args: Any) -> Case:
    suffix = f"+{args['bbox_file'].name}" if "bbox_file" in args else f"({metainfo_name})"
    return Case(f"{reader}:{Path(path).name}{suffix}",
                {"type": reader, "ann_file": str(SHARED / path), **{k: str(v) if isinstance(v, Path) else v
                                                                    for k, v in args.items()}},
                count, _k(metainfo_name))


INTERHAND = SHARED / "interhand2.6m"
MP100 = SHARED / "mp100" / "annotations"
_INTERHAND_FILES = {"ann_file": str(INTERHAND / "test_interhand2.6m_data.json"),
                    "camera_file": str(INTERHAND / "test_interhand2.6m_camera.json"),
                    "joint_file": str(INTERHAND / "test_interhand2.6m_joint_3d.json")}

CASES = [
    _coco("coco", "coco/test_coco.json", 12, "coco"),
    _coco("coco", "coco/test_coco.json", 118, "coco", bbox_file=SHARED / "coco" / "test_coco_det_AP_H_56.json"),
    _coco("coco_wholebody", "coco/test_coco_wholebody.json", 12, "coco_wholebody"),
    _coco("ochuman", "ochuman/test_ochuman.json", 5, "ochuman"),
    _coco("crowdpose", "crowdpose/test_crowdpose.json", 4, "crowdpose"),
    _coco("crowdpose", "crowdpose/test_crowdpose.json", 6, "crowdpose",
          bbox_file=SHARED / "crowdpose" / "test_crowdpose_det_AP_40.json"),
    _coco("aic", "aic/test_aic.json", 9, "aic"),
    _coco("ap10k", "ap10k/test_ap10k.json", 2, "ap10k"),
    _coco("apt36k", "ap10k/test_ap10k.json", 2, "apt36k"),  # the README's stand-in: same 17 keypoints
    _coco("animalpose", "animalpose/test_animalpose.json", 2, "animalpose"),
    _coco("humanart", "humanart/test_humanart.json", 4, "humanart", strip_prefix=HUMANART_PREFIX),
    _coco("humanart", "humanart/test_humanart.json", 4, "humanart21", strip_prefix=HUMANART_PREFIX, keypoint_set=21),
    _coco("humanart", "humanart/test_humanart.json", 13, "humanart", strip_prefix=HUMANART_PREFIX,
          bbox_file=SHARED / "humanart" / "test_humanart_det_AP_H_56.json"),
    _coco("coco_style", "crowdpose/test_crowdpose.json", 4, "crowdpose", metainfo=METAINFO / "crowdpose.json"),
    _coco("coco_style", "aic/test_aic.json", 9, "aic", metainfo=METAINFO / "aic.json"),
    Case("mpii", {"type": "mpii", "ann_file": str(SHARED / "mpii" / "test_mpii.json"),
                  "headbox_file": str(SHARED / "mpii" / "test_mpii_gt_val.mat")}, 5, _k("mpii")),
    Case("interhand2d:both", {"type": "interhand2d", **_INTERHAND_FILES}, 4, _k("interhand3d")),
    Case("interhand2d:each", {"type": "interhand2d", **_INTERHAND_FILES, "hands": "each"}, 6, _k("interhand2d")),
    Case("mp100:split1", {"type": "mp100", "ann_file": str(MP100 / "mp100_split1_test_subset.json")}, 16, None,
         MP100 / "mp100_split1_test_subset.json"),
    Case("mp100:split1-original", {"type": "mp100", "skeleton": "original",
                                   "ann_file": str(MP100 / "mp100_split1_test_subset_original_release.json")},
         16, None, MP100 / "mp100_split1_test_subset_original_release.json"),
    Case("mp100:split4", {"type": "mp100", "ann_file": str(MP100 / "mp100_split4_test_subset.json")}, 9, None,
         MP100 / "mp100_split4_test_subset.json"),
    Case("mp100:split1-episodes", {"type": "mp100", "ann_file": str(MP100 / "mp100_split1_test_subset.json"),
                                   "episodes": True, "num_shots": 1, "num_queries": 1, "num_episodes": 1},
         7, None, MP100 / "mp100_split1_test_subset.json"),  # one episode of one query per category
]


def _registry() -> Any:
    return get_host().registries.datasets


@pytest.fixture(scope="module")
def mp100_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Black JPEGs at every MP-100 ``file_name``, of the width and height the files state."""
    root = tmp_path_factory.mktemp("mp100_images")
    for path in sorted(MP100.glob("*.json")):
        for image in json.loads(path.read_text(encoding="utf-8"))["images"]:
            target = root / image["file_name"]
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(target), np.zeros((image["height"], image["width"], 3), np.uint8))
    return root


def _build(case: Case, mp100_images: Path) -> Any:
    spec = dict(case.spec)
    if case.mp100_file is not None:
        spec["image_root"] = str(mp100_images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the readers' loading reports are tested elsewhere
        return _registry().build(spec)


def _expected_k(case: Case) -> dict[int, int] | int:
    """Keypoints per sample: the metainfo's count, or for MP-100 each annotation's own triplets."""
    if case.keypoints is not None:
        return case.keypoints
    data = json.loads(case.mp100_file.read_text(encoding="utf-8"))  # type: ignore[union-attr]
    return {ann["id"]: len(ann["keypoints"]) // 3 for ann in data["annotations"]}


def _k_of(expected: dict[int, int] | int, sample: dict[str, Any]) -> int:
    return expected if isinstance(expected, int) else expected[sample["id"]]


def _codec(kind: str) -> Any:
    return (UDPHeatmap if kind == "udp" else MSRAHeatmap)(INPUT, HEATMAP, sigma=2.0)


def _pipeline(train: bool, codec_kind: str = "msra", *, targets: bool = False) -> Any:
    specs = standard_topdown_pipeline(train)
    if targets and not train:
        specs.insert(len(specs) - 1, "generate_target")
    return build_pipeline(specs, get_host().registries, codec=_codec(codec_kind), input_size=INPUT,
                          use_udp=codec_kind == "udp")


def _items(dataset: Any, pipeline: Any, seed: int = 0) -> list[dict[str, Any]]:
    wrapped = PipelineDataset(dataset, pipeline, seed=seed)
    return [wrapped[index] for index in range(len(wrapped))]


def _check_common(sample: dict[str, Any], k: int, where: str) -> None:
    image = sample["image"]
    assert isinstance(image, torch.Tensor) and image.dtype == torch.uint8, where
    assert tuple(image.shape) == (3, INPUT[1], INPUT[0]), where
    assert sample["meta"].num_keypoints == k, where
    assert sample["keypoints"].shape == (k, 2) and sample["keypoints"].dtype == np.float32, where
    assert sample["visibility"].shape == (k,), where
    assert sample["warp"].shape == (2, 3), where


def _flattened(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each item, followed by its few-shot supports (which the pipeline transforms too)."""
    return [sample for item in items for sample in (item, *item.get("support", ()))]


# ---------------------------------------------------------------------------------------------
# coverage


def test_every_reader_of_a_sample_format_has_a_case() -> None:
    registry = _registry()
    readers = {name for name in registry.names() if registry.get(name).factory.startswith(SAMPLE_FORMAT_MODULES)}
    assert {"coco", "coco_wholebody", "ochuman", "crowdpose", "aic", "ap10k", "apt36k", "animalpose", "humanart",
            "mpii", "interhand2d", "mp100", "coco_style"} <= readers
    assert readers == {case.spec["type"] for case in CASES}


# ---------------------------------------------------------------------------------------------
# the sample files


@pytest.mark.parametrize("codec_kind", ["msra", "udp"])
@pytest.mark.parametrize("case", [c for c in CASES if "bbox_file" not in c.spec], ids=lambda c: c.id)
def test_train_pipeline_on_every_sample(case: Case, codec_kind: str, mp100_images: Path) -> None:
    dataset = _build(case, mp100_images)
    assert len(dataset) == case.count
    expected = _expected_k(case)
    items = _items(dataset, _pipeline(True, codec_kind), seed=3)
    flips = 0
    for index, sample in enumerate(_flattened(items)):
        where = f"{case.id} sample {index}"
        k = _k_of(expected, sample)
        _check_common(sample, k, where)
        assert sample["heatmaps"].shape == (k, HEATMAP[1], HEATMAP[0]), where
        assert sample["heatmaps"].dtype == np.float32 and sample["keypoint_weights"].shape == (k,), where
        assert 0.0 <= sample["heatmaps"].min() and sample["heatmaps"].max() <= 1.0, where
        # a keypoint without a label never gets a target
        assert not sample["keypoint_weights"][sample["visibility"] == 0].any(), where
        # mmpose draws a map where the weight is above 0.5 (COCO-WholeBody's hands carry v of 0.04..0.37:
        # weighted, not drawn); its peak is 1 when the keypoint lies on the map (UDP: off the grid, >= 0.93)
        drawn = sample["keypoint_weights"] > 0.5
        assert not sample["heatmaps"][~drawn].any(), where
        stride = (np.asarray(INPUT) - 1.0) / (np.asarray(HEATMAP) - 1.0) if codec_kind == "udp" else (
            np.asarray(INPUT) / np.asarray(HEATMAP))
        on_map = drawn & np.all((sample["keypoints"] / stride >= 0) & (sample["keypoints"] / stride <= np.asarray(
            HEATMAP) - 1), axis=1)
        peaks = sample["heatmaps"][on_map].max(axis=(1, 2))
        assert np.all((peaks > 0.93) & (peaks <= 1.0)), (where, peaks.min())
        flips += bool(sample["flipped"])
    assert 0 < flips or len(items) < 4, f"{case.id}: no sample was flipped"
    by_k: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        by_k[item["meta"].num_keypoints].append({key: item[key] for key in ("image", "heatmaps", "keypoint_weights")})
    for k, group in by_k.items():  # MP-100 mixes keypoint counts; a batch holds one
        batch = collate_samples(group)
        assert tuple(batch["image"].shape) == (len(group), 3, INPUT[1], INPUT[0])
        assert tuple(batch["heatmaps"].shape) == (len(group), k, HEATMAP[1], HEATMAP[0])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_test_pipeline_on_every_sample(case: Case, mp100_images: Path) -> None:
    dataset = _build(case, mp100_images)
    expected = _expected_k(case)
    items = _items(dataset, _pipeline(False))
    assert len(items) == case.count
    raw = [dataset.annotation(index) for index in range(len(dataset))]
    for index, (sample, original) in enumerate(zip(items, raw, strict=True)):
        where = f"{case.id} sample {index}"
        _check_common(sample, _k_of(expected, sample), where)
        assert "heatmaps" not in sample and not sample["flipped"] and sample["rotation"] == 0.0, where
        warp = sample["warp"].astype(np.float64)
        # the crop is the padded box about its centre (1.5 for single InterHand hands, else 1.25)
        x1, y1, x2, y2 = original["bbox"].astype(np.float64)
        centre = warp[:, :2] @ [(x1 + x2) / 2, (y1 + y2) / 2] + warp[:, 2]
        np.testing.assert_allclose(centre, [INPUT[0] / 2, INPUT[1] / 2], atol=1e-2, err_msg=where)
        padding = 1.5 if case.id == "interhand2d:each" else 1.25
        zoom = float(np.hypot(*warp[:, 0]))
        box = np.array([x2 - x1, y2 - y1]) * padding
        aspect = INPUT[0] / INPUT[1]
        width = max(box[0], box[1] * aspect)  # the box grown to the input's aspect ratio
        assert zoom == pytest.approx(INPUT[0] / width, rel=1e-4), where
        np.testing.assert_allclose(sample["keypoints"], original["keypoints"] @ warp[:, :2].T + warp[:, 2],
                                   rtol=0, atol=1e-2, err_msg=where)  # the warp is stored in float32
        np.testing.assert_array_equal(sample["visibility"], original["visibility"], err_msg=where)
        for support, support_raw in zip(sample.get("support", ()), original.get("support", ()), strict=True):
            _check_common(support, _k_of(expected, support), where + " support")
            assert support["id"] == support_raw["id"]


@pytest.mark.parametrize("case", [c for c in CASES if "bbox_file" not in c.spec], ids=lambda c: c.id)
def test_udp_targets_of_test_crops_decode_back_within_a_tenth_of_a_pixel(case: Case, mp100_images: Path) -> None:
    """Encode-then-decode (UDP + DARK) of the ground truth as the test pipeline crops it."""
    dataset = _build(case, mp100_images)
    codec = _codec("udp")
    stride = (np.asarray(INPUT) - 1.0) / (np.asarray(HEATMAP) - 1.0)
    checked = 0
    for index, sample in enumerate(_items(dataset, _pipeline(False, "udp", targets=True))):
        keypoints = sample["keypoints"].astype(np.float64)
        decoded, _ = codec.decode(torch.from_numpy(sample["heatmaps"])[None])
        # a Gaussian cut by the heatmap border cannot be recovered exactly, by DARK or anyone
        mu = np.trunc(keypoints / stride + 0.5)
        whole = np.all((mu - 6 >= 0) & (mu + 6 <= np.asarray(HEATMAP) - 1), axis=1)
        scored = (sample["keypoint_weights"] > 0.5) & whole  # drawn maps (see the train test)
        error = np.linalg.norm(decoded[0].double().numpy() - keypoints, axis=1)[scored]
        assert error.size == 0 or error.max() < 0.1, f"{case.id} sample {index}: {error.max():.4f} px"
        checked += int(scored.sum())
    assert checked >= min(10, 2 * len(dataset)), case.id


# ---------------------------------------------------------------------------------------------
# every registered dataset, on its own example


@pytest.mark.parametrize("name", sorted(get_host().registries.datasets.names()))
def test_every_registered_dataset_example_goes_through_both_pipelines(name: str, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = _registry().build_example(name, tmp_path)
    assert len(dataset) > 0
    for train in (True, False):
        for index, sample in enumerate(_flattened(_items(dataset, _pipeline(train)))):
            k = sample["meta"].num_keypoints
            _check_common(sample, k, f"{name} {'train' if train else 'test'} sample {index}")
            if train:
                assert sample["heatmaps"].shape == (k, HEATMAP[1], HEATMAP[0])


def test_mmpose0_load_time_centre_jitter_as_a_pipeline_shift() -> None:
    """mmpose 0.x moves 30% of the training box centres by U(-0.2, 0.2) x the unpadded box size;
    the documented settings draw from that distribution."""
    specs = standard_topdown_pipeline(True, shift_prob=0.3, shift_factor=0.16)
    args = next(spec.args for spec in specs if spec.type == "random_bbox_transform")
    assert (args["shift_prob"], args["shift_factor"]) == (0.3, 0.16)
    assert "shift_prob" not in next(s.args for s in standard_topdown_pipeline(True) if s.type == "random_bbox_transform")
    transform = _registry_transforms().build({"type": "random_bbox_transform", **args})
    box = np.array([100.0, 50.0])  # unpadded width and height
    rng = np.random.default_rng(0)
    moves = []
    for _ in range(4000):
        sample = {"center": np.zeros(2, np.float32), "scale": (box * 1.25).astype(np.float32)}
        moves.append(transform(sample, rng)["center"] / box)
    moves = np.array(moves)
    moved = np.any(moves != 0, axis=1)
    assert moved.mean() == pytest.approx(0.3, abs=0.03)
    assert np.abs(moves).max() <= 0.2 + 1e-6 and np.abs(moves[moved]).max() > 0.19
    assert np.abs(moves[moved]).mean() == pytest.approx(0.1, abs=0.01)  # uniform on [-0.2, 0.2]


def test_mmpose0_centre_shift_is_drawn_once_per_instance_and_discarded_by_half_body() -> None:
    """``shift_once``: the shift comes first (before flip and half-body), each instance keeps its
    draw in every epoch, 30% of the instances move by U(-0.2, 0.2) x the unpadded box, and a
    half-body crop, which makes its own box, leaves no trace of it."""
    from posecore.data import load_metainfo

    specs = standard_topdown_pipeline(True, shift_prob=0.3, shift_factor=0.16, shift_once=True)
    assert [s.type for s in specs][:4] == ["get_bbox_center_scale", "center_shift", "random_flip", "random_half_body"]
    assert "shift_prob" not in next(s.args for s in specs if s.type == "random_bbox_transform")
    shift = _registry_transforms().build(next(s for s in specs if s.type == "center_shift"))
    box = np.array([100.0, 50.0])

    def instance(i: int) -> dict[str, Any]:
        return {"image_id": i // 3, "id": i, "dataset_index": 0, "bbox": np.array([10.0, 20.0, 110.0, 70.0], np.float32),
                "center": np.zeros(2, np.float32), "scale": (box * 1.25).astype(np.float32)}

    epochs = [np.array([shift(instance(i), np.random.default_rng((0, epoch, i)))["center"] for i in range(4000)])
              for epoch in range(2)]
    assert np.array_equal(epochs[0], epochs[1])  # drawn once: the same in every epoch
    moves = epochs[0] / box
    moved = np.any(moves != 0, axis=1)
    assert moved.mean() == pytest.approx(0.3, abs=0.03)
    assert np.abs(moves).max() <= 0.2 + 1e-6 and np.abs(moves[moved]).mean() == pytest.approx(0.1, abs=0.01)
    per_epoch = _registry_transforms().build({"type": "center_shift", "once": False})
    redrawn = [per_epoch(instance(7), np.random.default_rng((0, epoch, 7)))["center"] for epoch in range(40)]
    assert len({tuple(c) for c in redrawn}) > 1  # the per-epoch option draws anew

    meta = load_metainfo("coco")
    keypoints = np.random.default_rng(1).uniform(20, 100, (17, 2)).astype(np.float32)
    half_body = _registry_transforms().build({"type": "random_half_body", "prob": 1.0})
    centres = []
    for i in np.flatnonzero(moved)[:2]:
        sample = dict(instance(int(i)), keypoints=keypoints, visibility=np.full(17, 2.0, np.float32), meta=meta)
        centres.append(half_body(shift(sample, np.random.default_rng(0)), np.random.default_rng(5))["center"])
    assert np.array_equal(centres[0], centres[1])  # two different shifts, the same half-body box


def _registry_transforms() -> Any:
    return get_host().registries.transforms


def test_a_new_dataset_needs_only_a_yaml_metainfo_file(tmp_path: Path) -> None:
    """``coco_style`` with a YAML metainfo (the Animal-Pose facts, rewritten by hand) on the
    Animal-Pose sample: no code, and both pipelines run with the file's 20 keypoints and flips."""
    import yaml

    facts = json.loads((METAINFO / "animalpose.json").read_text(encoding="utf-8"))
    metainfo = tmp_path / "my_animals.yaml"
    metainfo.write_text(yaml.safe_dump({
        "dataset_name": "my_animals", "keypoint_names": facts["keypoint_names"],
        "flip_indices": facts["flip_indices"], "skeleton_links": facts["skeleton_links"], "sigmas": facts["sigmas"],
    }), encoding="utf-8")  # fmt: skip
    spec = {"type": "coco_style", "ann_file": str(SHARED / "animalpose" / "test_animalpose.json"),
            "metainfo": str(metainfo)}
    dataset = _registry().build(spec)
    assert len(dataset) == 2 and dataset.meta.name == "my_animals"
    assert dataset.meta.flip_indices == tuple(facts["flip_indices"])
    for train in (True, False):
        for sample in _items(dataset, _pipeline(train), seed=1):
            _check_common(sample, 20, f"coco_style yaml {'train' if train else 'test'}")

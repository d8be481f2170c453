"""Metrics on the real sample files: COCO-style AP (fast evaluator vs pycocotools), PCKh, PCK, AUC, EPE, NME.

Expected values are derived in the tests (from the ground truth and known perturbations, or by
an independent computation of the formula), never pasted.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest

from posecore._errors import ConfigError
from posecore.metrics import (
    AUCMetric,
    CocoAPMetric,
    EPEMetric,
    InstanceResult,
    Metric,
    MpiiPCKhMetric,
    NMEMetric,
    PCKMetric,
    oks_nms,
)
from posecore.metrics._oks import rescore_instances, soft_oks_nms
from posecore.metrics._results import (
    load_coco_keypoint_annotations,
    load_coco_predictions,
    load_mpii_ground_truth,
    load_mpii_predictions,
    match_predictions_to_annotations,
    predictions_to_instances,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MPII = SHARED / "mpii"
MP100 = SHARED / "mp100" / "annotations" / "mp100_split1_test_subset.json"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared sample data not found at {SHARED}")

# COCOeval's precision is tp / (tp + fp + eps): with a single true positive that is 1 - 2^-52,
# so a perfect score on a category or range holding one instance reads 0.9999999999999998.
ONE = 2 * np.spacing(1.0)

# (file, CocoAPMetric arguments): every COCO-style sample with its dataset's settings.
COCO_STYLE = {
    "coco": ("coco/test_coco.json", {"metainfo": "coco"}),
    "crowdpose": (
        "crowdpose/test_crowdpose.json",
        {"metainfo": "crowdpose", "use_area": False, "iou_type": "keypoints_crowd"},
    ),
    "aic": ("aic/test_aic.json", {"metainfo": "aic", "use_area": False}),
    "ochuman": ("ochuman/test_ochuman.json", {"metainfo": "ochuman"}),
    "ap10k": ("ap10k/test_ap10k.json", {"metainfo": "ap10k"}),
    "animalpose": ("animalpose/test_animalpose.json", {"metainfo": "animalpose"}),
    "humanart": ("humanart/test_humanart.json", {"metainfo": "humanart"}),
    "coco_wholebody": ("coco/test_coco_wholebody.json", {"metainfo": "coco_wholebody", "parts": "coco_wholebody"}),
}


def gt_as_results(metric: CocoAPMetric) -> list[InstanceResult]:
    """The ground truth as top-down results on GT boxes: keypoint score 1 where labelled, else 0."""
    ann = metric.annotations
    results = []
    for n in range(len(ann)):
        kpts = ann.keypoints[n]
        x, y, w, h = ann.bbox[n]
        results.append(
            InstanceResult(
                image_id=int(ann.image_id[n]), id=int(ann.ids[n]), category_id=int(ann.category_id[n]),
                keypoints=kpts[:, :2].copy(), keypoint_scores=(kpts[:, 2] > 0).astype(float),
                bbox=np.array([x, y, x + w, y + h]), bbox_score=1.0,
            )
        )  # fmt: skip
    return results


def perturbed_results(metric: CocoAPMetric, seed: int) -> list[InstanceResult]:
    """Noisy copies of the GT, duplicates, misses, stray people and tied scores."""
    rng = np.random.default_rng(seed)
    results = []
    for result in gt_as_results(metric):
        scale = max(result["bbox"][2] - result["bbox"][0], result["bbox"][3] - result["bbox"][1], 1.0)
        for copy_index in range(int(rng.integers(0, 3))):
            noisy = dict(result)
            noisy["keypoints"] = result["keypoints"] + rng.normal(
                0, rng.uniform(0.002, 0.06) * scale, result["keypoints"].shape
            )
            noisy["keypoint_scores"] = rng.random(len(result["keypoints"]))
            noisy["bbox_score"] = float(rng.choice([0.5, rng.random()]))
            noisy["bbox"] = result["bbox"] + copy_index
            results.append(noisy)
        if rng.random() < 0.3:
            stray = dict(result)
            stray["keypoints"] = rng.uniform(0, 600, result["keypoints"].shape)
            stray["keypoint_scores"] = rng.random(len(result["keypoints"]))
            stray["id"], stray["bbox"] = -1, np.array([0.0, 0.0, 50.0, 80.0]) + rng.random()
            results.append(stray)
    return results


def compute(metric: CocoAPMetric, results: list[InstanceResult]) -> dict[str, float]:
    metric.reset()
    metric.update(results)
    return metric.compute()


# -- COCO-style AP -----------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", COCO_STYLE)
def test_ground_truth_as_predictions_scores_perfect_ap(dataset: str) -> None:
    path, kwargs = COCO_STYLE[dataset]
    metric = CocoAPMetric(str(SHARED / path), **kwargs)  # mmpose's pipeline: rescoring and OKS-NMS 0.9
    table = compute(metric, gt_as_results(metric))
    ap_keys = [k for k in table if k.split("/")[-1] == "AP"]
    assert ap_keys and all(abs(table[k] - 1.0) <= ONE for k in ap_keys), table
    defined = {k: v for k, v in table.items() if v != -1}
    assert all(abs(v - 1.0) <= ONE for v in defined.values()), table
    if dataset in ("coco", "crowdpose", "aic", "ochuman", "animalpose", "humanart"):
        assert table["AP"] == 1.0  # every category holds several instances: exactly 1
    if dataset == "coco":
        assert set(table.values()) == {1.0}  # all ten statistics, medium and large included
    if dataset == "coco_wholebody":
        assert [k.split("/")[0] for k in table][::10] == [
            "body",
            "foot",
            "face",
            "left_hand",
            "right_hand",
            "wholebody",
        ]
        assert table["wholebody/AP"] == table["body/AP"] == table["face/AP"] == 1.0


def test_crowdpose_ap_by_crowd_index(tmp_path: Path) -> None:
    """AP(E)/(M)/(H) split images at crowdIndex 0.2 and 0.8; an empty split reads -1."""
    data = json.loads((SHARED / "crowdpose/test_crowdpose.json").read_text())
    assert {image["crowdIndex"] for image in data["images"]} == {0.33, 0.39}  # both 'medium' as shipped
    kwargs = {"metainfo": "crowdpose", "use_area": False, "iou_type": "keypoints_crowd"}
    metric = CocoAPMetric(str(SHARED / "crowdpose/test_crowdpose.json"), **kwargs)
    table = compute(metric, gt_as_results(metric))
    assert list(table) == ["AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP(E)", "AP(M)", "AP(H)"]
    assert (table["AP(E)"], table["AP(M)"], table["AP(H)"]) == (-1.0, 1.0, -1.0)

    # One image easy, the other hard; predict only the easy one's people.
    data["images"][0]["crowdIndex"], data["images"][1]["crowdIndex"] = 0.1, 0.8
    moved = tmp_path / "crowdpose_split.json"
    moved.write_text(json.dumps(data))
    for backend in ("fast", "pycocotools"):
        metric = CocoAPMetric(str(moved), backend=backend, **kwargs)
        easy = [r for r in gt_as_results(metric) if r["image_id"] == data["images"][0]["id"]]
        table = compute(metric, easy)
        assert (table["AP(E)"], table["AP(M)"], table["AP(H)"]) == (1.0, -1.0, 0.0)
        assert 0 < table["AP"] < 1


def test_aic_use_area_false_is_box_area_times_053(tmp_path: Path) -> None:
    """use_area=False scores as if every annotation's area were 0.53 x its box area."""
    source = SHARED / "aic/test_aic.json"
    data = json.loads(source.read_text())
    for ann in data["annotations"]:
        ann["area"] = ann["bbox"][2] * ann["bbox"][3] * 0.53
    with_area = tmp_path / "aic_with_area.json"
    with_area.write_text(json.dumps(data))
    without = CocoAPMetric(str(source), metainfo="aic", use_area=False)
    explicit = CocoAPMetric(str(with_area), metainfo="aic", use_area=True)
    results = perturbed_results(without, seed=3)
    assert compute(without, results) == compute(explicit, results)
    with pytest.raises(ConfigError, match=r"has no 'area'.*use_area=False"):
        CocoAPMetric(str(source), metainfo="aic")


@pytest.mark.parametrize("dataset", COCO_STYLE)
@pytest.mark.parametrize("seed", [1, 2])
def test_fast_backend_equals_pycocotools_on_real_samples(dataset: str, seed: int) -> None:
    path, kwargs = COCO_STYLE[dataset]
    fast = CocoAPMetric(str(SHARED / path), **kwargs)
    reference = CocoAPMetric(str(SHARED / path), backend="pycocotools", **kwargs)
    results = perturbed_results(fast, seed)
    expected = compute(reference, results)
    assert compute(fast, results) == expected  # exact float equality of every statistic
    assert any(0 < v < 1 for v in expected.values())  # the perturbation made it non-trivial


def synthetic_coco(num_images: int, seed: int, *, crowd: float = 0.05, keypoints: int = 17) -> tuple[dict, list[dict]]:
    """A COCO keypoint document and results: sizes small to large, unlabelled people, crowd
    regions, images without predictions, integer and tied coordinates and scores."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for index in range(num_images):
        image_id = 10 + 3 * index
        images.append({"id": image_id, "crowdIndex": float(rng.random())})
        people = []
        for _ in range(int(rng.integers(0, 6))):
            w, h = rng.uniform(5, 300, size=2)
            x, y = rng.uniform(0, 300, size=2)
            v = rng.choice([0, 1, 2], size=keypoints, p=[0.3, 0.2, 0.5])
            if rng.random() < 0.1:
                v[:] = 0
            xy = np.stack([x + rng.random(keypoints) * w, y + rng.random(keypoints) * h], axis=1)
            xy = np.where(v[:, None] > 0, np.round(xy, int(rng.integers(0, 3))), 0)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                "keypoints": np.concatenate([xy, v[:, None]], axis=1).reshape(-1).tolist(),
                "num_keypoints": int((v == 2).sum()), "bbox": [x, y, w, h], "area": w * h * rng.uniform(0.3, 0.9),
                "iscrowd": int(rng.random() < crowd),
            })  # fmt: skip
            people.append((xy, max(w, h)))
        if rng.random() < 0.2:
            continue
        for _ in range(int(rng.poisson(3))):
            if people and rng.random() < 0.8:
                xy, size = people[int(rng.integers(len(people)))]
                pred = xy + rng.normal(0, rng.uniform(0.005, 0.1) * size, xy.shape)
            else:
                pred = rng.uniform(0, 600, (keypoints, 2))
            scores = rng.random(keypoints) * (rng.random() > 0.02)  # a few all-zero predictions
            results.append({
                "image_id": image_id, "category_id": 1, "score": float(rng.choice([0.5, 0.25, rng.random()])),
                "keypoints": np.concatenate([pred, scores[:, None]], axis=1).reshape(-1).tolist(),
            })  # fmt: skip
    names = [f"k{i}" for i in range(keypoints)]
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "thing", "keypoints": names}],
    }, results


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"use_area": False},
        {"iou_type": "keypoints_crowd", "use_area": False},
        {"keypoints": 14, "sigmas": tuple(np.linspace(0.025, 0.107, 14))},
        {"detection_area": "bbox"},
    ],
    ids=["coco", "no-area", "crowd", "k14-custom-sigmas", "bbox-area"],
)
def test_fast_backend_equals_pycocotools_on_a_larger_synthetic_set(tmp_path: Path, kwargs: dict) -> None:
    kwargs = dict(kwargs)
    gt, results = synthetic_coco(400, seed=7, keypoints=kwargs.pop("keypoints", 17))
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    kwargs.setdefault("sigmas", tuple(np.linspace(0.026, 0.107, 17)))
    tables = {}
    for backend in ("fast", "pycocotools"):
        metric = CocoAPMetric(str(path), backend=backend, score_mode="bbox", nms_thr=None, **kwargs)
        instances = predictions_to_instances(load_coco_predictions(_write(tmp_path, results), metric.annotations))
        if kwargs.get("detection_area") == "bbox":
            for instance in instances:
                instance["bbox"] = np.array([0.0, 0.0, 90.0, 120.0]) * (instance["bbox_score"] + 0.1)
        tables[backend] = compute(metric, instances)
    assert tables["fast"] == tables["pycocotools"]
    assert all(-1 < v < 1 for v in tables["fast"].values())


def _write(tmp_path: Path, results: list[dict]) -> Path:
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(results))
    return path


def test_equals_plain_pycocotools_on_a_standard_file(tmp_path: Path) -> None:
    """On a file with nothing xtcocotools treats differently, the table is pycocotools' own."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, results = synthetic_coco(300, seed=11)
    for ann in gt["annotations"]:
        ann["num_keypoints"] = sum(v > 0 for v in ann["keypoints"][2::3])
    results = [r for r in results if any(s > 0 for s in r["keypoints"][2::3])]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    sigmas = np.linspace(0.026, 0.107, 17)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
        evaluator = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), "keypoints")
        evaluator.params.kpt_oks_sigmas = sigmas
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    metric = CocoAPMetric(str(path), sigmas=tuple(sigmas), score_mode="bbox", nms_thr=None)
    table = compute(
        metric, predictions_to_instances(load_coco_predictions(_write(tmp_path, results), metric.annotations))
    )
    assert list(table.values()) == [float(s) for s in evaluator.stats]


def test_annotation_id_zero_and_missing_iscrowd(tmp_path: Path) -> None:
    """pycocotools reads a match to annotation id 0 as "unmatched"; posecore (like xtcocotools) does not."""
    data = json.loads((SHARED / "coco/test_coco.json").read_text())
    for n, ann in enumerate(data["annotations"]):
        ann["id"] = n  # ids 0 .. 13
        ann.pop("iscrowd")
    path = tmp_path / "ids_from_zero.json"
    path.write_text(json.dumps(data))
    for backend in ("fast", "pycocotools"):
        metric = CocoAPMetric(str(path), metainfo="coco", backend=backend)
        assert set(compute(metric, gt_as_results(metric)).values()) == {1.0}


def test_rescoring_and_oks_nms_follow_mmpose() -> None:
    scores = np.array([[0.1, 0.5, 0.9], [0.1, 0.15, 0.2], [0.3, 0.3, 0.3]])
    boxes = np.array([0.8, 1.0, 0.5])
    assert rescore_instances(scores, boxes, "bbox_keypoint", 0.2) == pytest.approx([0.8 * 0.7, 0.0, 0.5 * 0.3])
    assert rescore_instances(scores, boxes, "bbox", 0.2).tolist() == boxes.tolist()
    assert rescore_instances(scores, boxes, "bbox_rle", 0.2)[0] == pytest.approx(0.8 + 0.5 + 0.9)

    sigmas = np.full(3, 0.08)
    person = np.array([[10.0, 10.0], [20.0, 40.0], [30.0, 70.0]])
    keypoints = np.stack([person, person + 0.5, person + 200.0])  # a near-copy and someone else
    keep = oks_nms(keypoints, np.array([0.9, 0.95, 0.6]), np.full(3, 2000.0), sigmas, thr=0.9)
    assert keep.tolist() == [1, 2]  # the near-copy (lower score) is suppressed, best first
    assert oks_nms(keypoints, np.array([0.9, 0.95, 0.6]), np.full(3, 2000.0), sigmas, thr=1.0).tolist() == [1, 0, 2]


def test_rescoring_keeps_the_scores_dtype() -> None:
    """float32 scores are rescored in float32 (mmpose's arithmetic). The box + mean + max of these two
    instances (fifteen scores of 1.6, two of 0, in another order) differ in float32, as mmpose ranks
    them, but tie in float64."""
    first = np.full(17, 1.6, dtype=np.float32)
    first[[15, 16]] = 0
    second = np.full(17, 1.6, dtype=np.float32)
    second[[2, 4]] = 0
    scores, boxes = np.stack([first, second]), np.full(2, 0.98, dtype=np.float32)
    rescored = rescore_instances(scores, boxes, "bbox_rle", 0.2)
    assert rescored.dtype == np.float32
    assert rescored[0] < rescored[1]
    assert rescored.tolist() == [np.float32(0.98) + row.mean() + row.max() for row in scores]
    in_float64 = rescore_instances(scores.astype(np.float64), boxes.astype(np.float64), "bbox_rle", 0.2)
    assert in_float64.dtype == np.float64 and in_float64[0] == in_float64[1]
    for mode in ("bbox_keypoint", "bbox", "keypoint"):
        assert rescore_instances(scores, boxes, mode, 0.2).dtype == np.float32


def test_soft_oks_nms_damps_instead_of_dropping() -> None:
    sigmas = np.full(3, 0.08)
    person = np.array([[10.0, 10.0], [20.0, 40.0], [30.0, 70.0]])
    keypoints = np.stack([person, person + 0.5, person + 200.0])  # a near-copy and someone else
    scores = np.array([0.9, 0.95, 0.6])
    # The near-copy (OKS ~0.99) is damped by exp(-0.99^2 / 0.9) ~ 0.34 to ~0.3, below the stranger.
    assert soft_oks_nms(keypoints, scores, np.full(3, 2000.0), sigmas, thr=0.9).tolist() == [1, 2, 0]
    assert scores.tolist() == [0.9, 0.95, 0.6]  # the instances keep their own scores
    crowd = np.stack([person + 100.0 * n for n in range(30)])
    kept = soft_oks_nms(crowd, np.linspace(1, 0.1, 30), np.full(30, 2000.0), sigmas, thr=0.9)
    assert kept.tolist() == list(range(20))  # at most 20 per image, COCOeval's maxDets
    with pytest.raises(ConfigError, match="nms_mode='soft' is not one of 'oks', 'soft_oks'"):
        CocoAPMetric(str(SHARED / "coco/test_coco.json"), metainfo="coco", nms_mode="soft")


def test_results_from_several_processes_are_deduplicated() -> None:
    metric = CocoAPMetric(str(SHARED / "coco/test_coco.json"), metainfo="coco")
    results = perturbed_results(metric, seed=5)
    once = compute(metric, results)
    metric.reset()
    metric.update(results[::2])
    metric.update(results[1::2])
    metric.update(results[-3:])  # the padding a distributed sampler adds to the last batch
    assert metric.compute() == compute(metric, results[::2] + results[1::2]) == pytest.approx(once)


def test_sigmas_are_never_guessed() -> None:
    CocoAPMetric(str(SHARED / "coco/test_coco.json"))  # COCO's own keypoint names: COCO sigmas
    with pytest.raises(ConfigError, match=r"14 keypoints .* pass metainfo="):
        CocoAPMetric(str(SHARED / "crowdpose/test_crowdpose.json"), use_area=False)
    with pytest.raises(ConfigError, match=r"pass metainfo="):  # 17 keypoints, but AP-10K's
        CocoAPMetric(str(SHARED / "ap10k/test_ap10k.json"))
    with pytest.raises(ConfigError, match=r"gives 17 OKS sigmas but .* has 14 keypoints"):
        CocoAPMetric(str(SHARED / "aic/test_aic.json"), metainfo="coco", use_area=False)
    with pytest.raises(ConfigError, match=r"crowdIndex"):
        CocoAPMetric(str(SHARED / "aic/test_aic.json"), metainfo="aic", use_area=False, iou_type="keypoints_crowd")


def test_bad_results_raise_clear_errors() -> None:
    metric = CocoAPMetric(str(SHARED / "coco/test_coco.json"), metainfo="coco")
    good = gt_as_results(metric)[0]
    metric.update([{**good, "image_id": 123}])
    with pytest.raises(ConfigError, match=r"image_id 123, which is not an image of .*test_coco.json"):
        metric.compute()
    metric.reset()
    metric.update([{**good, "keypoints": good["keypoints"][:14]}])
    with pytest.raises(ConfigError, match=r"'keypoints' of shape \(14, 2\); expected \(17, 2\)"):
        metric.compute()
    metric.reset()
    with pytest.raises(ConfigError, match=r"lacks 'keypoint_scores'"):
        metric.update([{k: v for k, v in good.items() if k != "keypoint_scores"}])


# -- reading files ---------------------------------------------------------------------------


def test_prediction_files_are_checked(tmp_path: Path) -> None:
    gt = load_coco_keypoint_annotations(SHARED / "coco/test_coco.json")
    ann = json.loads((SHARED / "coco/test_coco.json").read_text())["annotations"][0]
    entry = {"image_id": ann["image_id"], "category_id": 1, "keypoints": ann["keypoints"], "score": 0.9}

    def check(content: object | str, pattern: str) -> None:
        path = tmp_path / "pred.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        with pytest.raises(ConfigError, match=pattern):
            load_coco_predictions(path, gt)

    check("", r"pred.json is empty")
    check("[{", r"pred.json is not valid JSON")
    check([], r"predictions list is empty")
    check([{**entry, "image_id": 999}], r"prediction \[0\] has image_id 999, which is not an image of the ground truth")
    check([{**entry, "keypoints": entry["keypoints"][:42]}], r"'keypoints' has 42 numbers .* needs 51")
    check([{k: v for k, v in entry.items() if k != "keypoints"}], r"prediction \[0\] has no 'keypoints'")
    check([entry, {**entry, "bbox": [1, 2, 3, 4]}], r"1 of 2 predictions have a 'bbox'")
    with pytest.raises(ConfigError, match=r"has no 'score'"):
        predictions_to_instances(
            load_coco_predictions(_write(tmp_path, [{k: v for k, v in entry.items() if k != "score"}]), gt)
        )


def test_ground_truth_files_are_checked(tmp_path: Path) -> None:
    data = json.loads((SHARED / "coco/test_coco.json").read_text())
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({k: v for k, v in data.items() if k != "annotations"}))
    with pytest.raises(ConfigError, match=r"gt.json: required field 'annotations' is missing"):
        load_coco_keypoint_annotations(path)
    data["annotations"][3].pop("image_id")
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"annotations\[3\] \(id \d+\) has no 'image_id'"):
        load_coco_keypoint_annotations(path)
    with pytest.raises(ConfigError, match=r"ground-truth file not found"):
        CocoAPMetric(str(tmp_path / "missing.json"))


def test_predictions_pair_with_their_ground_truth_instance(tmp_path: Path) -> None:
    gt = load_coco_keypoint_annotations(SHARED / "coco/test_coco.json")
    lone_image = next(i for i in gt.image_ids if (gt.image_id == i).sum() == 1)
    crowded_image = next(i for i in gt.image_ids if (gt.image_id == i).sum() > 1)
    n = int(np.flatnonzero(gt.image_id == crowded_image)[1])
    entries = [
        {
            "image_id": int(lone_image),
            "keypoints": gt.keypoints[int(np.flatnonzero(gt.image_id == lone_image)[0])].reshape(-1).tolist(),
        },
        {"image_id": int(crowded_image), "id": int(gt.ids[n]), "keypoints": gt.keypoints[n].reshape(-1).tolist()},
    ]
    pred = _write(tmp_path, entries)
    paired = match_predictions_to_annotations(load_coco_predictions(pred, gt), gt, str(pred))
    assert paired[1]["id"] == gt.ids[n] and np.array_equal(paired[1]["gt_keypoints"], gt.keypoints[n][:, :2])
    entries[1].pop("id")
    pred = _write(tmp_path, entries)
    with pytest.raises(
        ConfigError, match=rf"no 'id' and image {crowded_image} has \d+ ground-truth instances.*add .* 'id'"
    ):
        match_predictions_to_annotations(load_coco_predictions(pred, gt), gt, str(pred))


# -- PCKh on MPII: Tompson et al.'s real predictions ----------------------------------------


def independent_pckh(gt_file: Path, pred_file: Path) -> dict[str, float]:
    """MPII PCKh written out joint by joint from the definition, sharing no code with posecore."""
    from scipy.io import loadmat

    mat = loadmat(str(gt_file))
    pos_gt, missing, boxes = mat["pos_gt_src"], mat["jnt_missing"], mat["headboxes_src"]
    pred = json.loads(pred_file.read_text())["pos_pred"]
    people = pos_gt.shape[2]
    names = [str(n[0]) for n in mat["dataset_joints"][0]]  # rank, rkne, ..., head, ...
    joint = {name: names.index(name) for name in names}

    def rate(thr: float, joints: list[int]) -> tuple[int, int]:
        hits = total = 0
        for i in range(people):
            head = 0.6 * float(np.hypot(*(boxes[1, :, i] - boxes[0, :, i])))
            for j in joints:
                if missing[j, i]:
                    continue
                total += 1
                error = float(np.hypot(pred[i][j][0] - pos_gt[j, 0, i], pred[i][j][1] - pos_gt[j, 1, i]))
                hits += error / head <= thr
        return hits, total

    def pct(thr: float, joints: list[int]) -> float:
        hits, total = rate(thr, joints)
        return 100.0 * hits / total

    pairs = {"Shoulder": ("lsho", "rsho"), "Elbow": ("lelb", "relb"), "Wrist": ("lwri", "rwri"),
             "Hip": ("lhip", "rhip"), "Knee": ("lkne", "rkne"), "Ankle": ("lank", "rank")}  # fmt: skip
    table = {"Head": pct(0.5, [joint["head"]])}
    for row, (left, right) in pairs.items():
        table[row] = (pct(0.5, [joint[left]]) + pct(0.5, [joint[right]])) / 2
    scored = [j for name, j in joint.items() if name not in ("pelv", "thor")]
    table["Mean"] = pct(0.5, scored)
    table["Mean@0.1"] = pct(0.1, scored)
    return table


def test_pckh_on_the_tompson_sample_matches_an_independent_computation() -> None:
    gt_file, pred_file = MPII / "test_mpii_gt_val.mat", MPII / "test_mpii_tompson2015_preds.json"
    metric = MpiiPCKhMetric()
    metric.update(load_mpii_predictions(pred_file, load_mpii_ground_truth(gt_file)))
    table = metric.compute()
    expected = independent_pckh(gt_file, pred_file)
    assert list(table) == ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean", "Mean@0.1"]
    assert table == pytest.approx(expected, abs=1e-9)
    assert 0 < table["Mean@0.1"] < table["Mean"] < 100


def test_pckh_from_the_mpii_reader_equals_the_mat_file_protocol() -> None:
    """The MPII reader's instances (json, moved to 0-based; head sizes from the .mat) scored with
    the Tompson predictions moved the same way give the table of the MATLAB-frame protocol."""
    import warnings

    from posecore.data._mpii import MpiiDataset

    gt_file, pred_file = MPII / "test_mpii_gt_val.mat", MPII / "test_mpii_tompson2015_preds.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = MpiiDataset(str(MPII / "test_mpii.json"), headbox_file=str(gt_file))
    predictions = np.asarray(json.loads(pred_file.read_text())["pos_pred"], dtype=np.float64)
    results = []
    for index in range(len(dataset)):
        sample = dataset.annotation(index)
        results.append(InstanceResult(
            image_id=sample["image_id"], id=sample["id"], keypoints=predictions[index] - 1.0,
            keypoint_scores=np.ones(16), gt_keypoints=sample["keypoints"], gt_visibility=sample["visibility"],
            head_size=sample["head_size"],
        ))  # fmt: skip
    metric = MpiiPCKhMetric()
    metric.update(results)
    assert metric.compute() == pytest.approx(independent_pckh(gt_file, pred_file), abs=1e-9)


def test_pckh_checks_its_inputs(tmp_path: Path) -> None:
    from scipy.io import savemat

    metric = MpiiPCKhMetric()
    with pytest.raises(ConfigError, match="lacks 'head_size'"):
        metric.update(
            [
                {
                    "image_id": 0,
                    "keypoints": np.zeros((16, 2)),
                    "gt_keypoints": np.zeros((16, 2)),
                    "gt_visibility": np.ones(16),
                }
            ]
        )
    with pytest.raises(ConfigError, match="cannot be read as a MATLAB .mat file"):
        load_mpii_ground_truth(SHARED / "coco/000000000785.jpg")
    savemat(tmp_path / "gt.mat", {"pos_gt_src": np.zeros((16, 2, 3)), "jnt_missing": np.zeros((16, 3))})
    with pytest.raises(ConfigError, match=r"gt.mat: required field 'headboxes_src' is missing"):
        load_mpii_ground_truth(tmp_path / "gt.mat")
    gt = load_mpii_ground_truth(MPII / "test_mpii_gt_val.mat")
    (tmp_path / "pred.json").write_text(json.dumps({"pos_pred": np.zeros((4, 16, 2)).tolist()}))
    with pytest.raises(ConfigError, match=r"pred.json has 4 people but the ground truth .* has 5"):
        load_mpii_predictions(tmp_path / "pred.json", gt)


# -- PCK on MP-100 (K varies with the category), AUC, EPE, NME ----------------------------


OFFSETS = np.array([0.0, 0.07, 0.12, 0.18, 0.22, 0.3])  # as fractions of max(w, h); none sits on a threshold
THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25)


def offset_predictions(gt_path: Path) -> tuple[list[InstanceResult], list[tuple[int, np.ndarray, np.ndarray]]]:
    """Each labelled keypoint k of instance i moved by OFFSETS[(i + k) % 6] x max(w, h) along a
    direction that varies with k. Returns the results and, per instance, (category, fractions, labelled)."""
    gt = load_coco_keypoint_annotations(gt_path)
    results, plan = [], []
    for i in range(len(gt)):
        kpts = gt.keypoints[i]
        x, y, w, h = gt.bbox[i]
        size = max(w, h)
        k = np.arange(len(kpts))
        fraction = OFFSETS[(i + k) % len(OFFSETS)]
        angle = 0.7 * k
        shift = np.stack([np.cos(angle), np.sin(angle)], axis=1) * (fraction * size)[:, None]
        results.append(
            InstanceResult(
                image_id=int(gt.image_id[i]), id=int(gt.ids[i]), category_id=int(gt.category_id[i]),
                keypoints=kpts[:, :2] + shift, keypoint_scores=np.ones(len(kpts)), gt_keypoints=kpts[:, :2],
                gt_visibility=kpts[:, 2], gt_bbox=np.array([x, y, x + w, y + h]),
            )
        )  # fmt: skip
        plan.append((int(gt.category_id[i]), fraction, kpts[:, 2] > 0))
    return results, plan


def test_pck_both_means_on_mp100() -> None:
    results, plan = offset_predictions(MP100)
    assert len({len(p[1]) for p in plan}) > 3  # several keypoint counts in one evaluation
    metric = PCKMetric(thresholds=THRESHOLDS, mean="both")
    metric.update(results)
    table = metric.compute()

    expected = {}
    for thr in THRESHOLDS:
        per_instance = [np.mean(f[m] < thr) if m.any() else 0.0 for _, f, m in plan]
        expected[f"PCK@{thr:g}/instance"] = float(np.mean(per_instance))
    expected["mPCK/instance"] = float(np.mean([expected[f"PCK@{t:g}/instance"] for t in THRESHOLDS]))
    for thr in THRESHOLDS:
        per_type = {}
        for category, f, m in plan:
            for k in np.flatnonzero(m):
                per_type.setdefault((category, k), []).append(f[k] < thr)
        expected[f"PCK@{thr:g}/keypoint"] = float(np.mean([np.mean(v) for v in per_type.values()]))
    expected["mPCK/keypoint"] = float(np.mean([expected[f"PCK@{t:g}/keypoint"] for t in THRESHOLDS]))
    assert list(table) == list(expected)
    assert table == pytest.approx(expected, abs=1e-12)
    assert table["PCK@0.2/instance"] != table["PCK@0.2/keypoint"]  # the two means differ here

    only = PCKMetric(thresholds=(0.2,), mean="instance")
    only.update(results)
    assert only.compute() == {"PCK@0.2/instance": table["PCK@0.2/instance"]}


def shifted_coco_results(
    dx: float, dy: float
) -> tuple[list[InstanceResult], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    gt = load_coco_keypoint_annotations(SHARED / "coco/test_coco.json")
    results, plan = [], []
    for i in range(len(gt)):
        kpts = gt.keypoints[i]
        x, y, w, h = gt.bbox[i]
        results.append(
            InstanceResult(
                image_id=int(gt.image_id[i]), id=int(gt.ids[i]), keypoints=kpts[:, :2] + [dx, dy],
                keypoint_scores=np.ones(len(kpts)), gt_keypoints=kpts[:, :2], gt_visibility=kpts[:, 2],
                gt_bbox=np.array([x, y, x + w, y + h]),
            )
        )  # fmt: skip
        plan.append((kpts[:, 2] > 0, np.array([w, h]), kpts[:, :2]))
    return results, plan


def test_epe_nme_and_auc_with_a_known_shift() -> None:
    results, plan = shifted_coco_results(3.0, 4.0)  # every error is 5 px
    labelled = sum(int(m.sum()) for m, _, _ in plan)
    assert labelled > 100

    epe = EPEMetric()
    epe.update(results)
    assert epe.compute() == {"EPE": pytest.approx(5.0, rel=1e-6)}

    nme = NMEMetric(norm_mode="bbox_size")
    nme.update(results)
    expected = sum(5.0 / max(size) * m.sum() for m, size, _ in plan) / labelled
    assert nme.compute()["NME"] == pytest.approx(expected, rel=1e-6)

    eyes = NMEMetric(norm_mode="keypoint_distance", keypoint_indices=(1, 2))
    eyes.update(results)
    scored = [(m, np.hypot(*(g[1] - g[2]))) for m, _, g in plan]
    scored = [(m, d) for m, d in scored if d != 0]  # mmpose skips instances whose normaliser is 0
    expected = sum(5.0 / d * m.sum() for m, d in scored) / sum(m.sum() for m, _ in scored)
    assert eyes.compute()["NME"] == pytest.approx(expected, rel=1e-6)

    auc = AUCMetric(norm_factor=30.0, num_thresholds=20)
    auc.update(results)
    # 5 / 30 = 0.1667 is below the thresholds 0.20, 0.25, ..., 0.95: 16 of the 20
    assert auc.compute() == {"AUC": pytest.approx(16 / 20)}


def test_distance_metrics_reject_missing_fields() -> None:
    results, _ = shifted_coco_results(1.0, 1.0)
    pck = PCKMetric()
    with pytest.raises(ConfigError, match="lacks 'gt_bbox'"):
        pck.update([{k: v for k, v in results[0].items() if k != "gt_bbox"}])
    with pytest.raises(ConfigError, match="needs keypoint_indices"):
        NMEMetric(norm_mode="keypoint_distance")
    assert NMEMetric(norm_mode="keypoint_distance", metainfo="coco_wholebody_face").keypoint_indices == (36, 45)


def test_every_metric_follows_the_protocol_and_builds_from_the_registry(tmp_path: Path) -> None:
    from posecore._plugins import load_plugins
    from posecore.metrics._catalog import METRICS

    registries = load_plugins(autoload=False).registries
    assert [c.name for c in METRICS] == ["coco_ap", "pckh", "pck", "auc", "epe", "nme"]
    for component in METRICS:
        metric = registries.metrics.build_example(component.name, tmp_path)
        assert isinstance(metric, Metric), component.name
        assert component.resolve().__doc__ and "Result table" in component.resolve().__doc__
    example = registries.metrics.build_example("coco_ap", tmp_path)
    assert compute(example, gt_as_results(example))["AP"] == 1.0
    with pytest.raises(ConfigError, match="has no argument 'nms_th'.*did you mean 'nms_thr'"):
        registries.metrics.validate({"type": "coco_ap", "ann_file": "x.json", "nms_th": 0.5})


def test_queries_of_different_episodes_are_not_duplicates():
    """Few-shot evaluation scores one instance once per episode it is the query of."""
    from posecore.metrics._base import ResultBuffer

    base = {"image_id": 3, "id": 7, "bbox": np.array([0.0, 0.0, 10.0, 10.0])}
    buffer = ResultBuffer("pck", ())
    buffer.extend([{**base, "episode": 0}, {**base, "episode": 1}, {**base, "episode": 1}])
    assert [r["episode"] for r in buffer.unique()] == [0, 1]

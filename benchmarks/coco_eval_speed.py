"""posecore's ``coco_ap`` against plain pycocotools on 15,000 predictions for 5,000 images.

The ground truth and predictions are synthetic but COCO-like and deterministic (seeded): 1-4
people per image of all sizes, 17 keypoints with v in {0, 1, 2}, some people with no labelled
keypoint, some crowd regions, 3 predictions per image on average (most near a person, some
elsewhere, some images without any), tied scores included. Both sides evaluate the same
results list; the timings exclude reading the ground truth, which both do once up front.

The issue's target: identical statistics, and posecore at most half of pycocotools' time.

    python benchmarks/coco_eval_speed.py [--images 5000] [--predictions 15000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

COCO_SIGMAS = (
    np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89])
    / 10
)
COCO_NAMES = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
]  # fmt: skip


def synthetic_coco(num_images: int, num_predictions: int, seed: int = 0) -> tuple[dict, list[dict]]:
    """A COCO keypoint annotation document and a results list, the same for the same arguments."""
    rng = np.random.default_rng(seed)
    images, annotations, people = [], [], []
    for index in range(num_images):
        image_id = 100_000 + 7 * index
        images.append({"id": image_id, "width": 640, "height": 480, "file_name": f"{image_id}.jpg"})
        for _ in range(int(rng.integers(1, 5))):
            w, h = rng.uniform(8, 320), rng.uniform(16, 400)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h) if h < 480 else 0.0
            xy = np.stack([x + rng.random(17) * w, y + rng.random(17) * h], axis=1)
            v = rng.choice([0, 1, 2], size=17, p=[0.25, 0.15, 0.6])
            if rng.random() < 0.05:
                v[:] = 0
            xy[v == 0] = 0
            kpts = np.concatenate([np.round(xy, 2), v[:, None]], axis=1)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                "keypoints": kpts.reshape(-1).tolist(), "num_keypoints": int((v > 0).sum()),
                "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                "area": round(w * h * rng.uniform(0.4, 0.8), 2), "iscrowd": int(rng.random() < 0.02),
            })  # fmt: skip
            people.append((image_id, xy, w, h))
    results = []
    person_index = rng.integers(0, len(people), size=num_predictions)
    for n in range(num_predictions):
        image_id, xy, w, h = people[person_index[n]]
        if rng.random() < 0.85:
            noise = rng.normal(0, rng.uniform(0.002, 0.03) * max(w, h), size=(17, 2))
            pred = xy + noise
        else:
            pred = np.stack([rng.uniform(0, 640, 17), rng.uniform(0, 480, 17)], axis=1)
        scores = rng.random(17)
        score = float(rng.choice([rng.random(), 0.5])) if rng.random() < 0.1 else float(rng.random())
        keypoints = np.concatenate([np.round(pred, 2), np.round(scores, 4)[:, None]], axis=1)
        results.append(
            {"image_id": image_id, "category_id": 1, "keypoints": keypoints.reshape(-1).tolist(), "score": score}
        )
    categories = [{"id": 1, "name": "person", "keypoints": COCO_NAMES, "skeleton": []}]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def time_pycocotools(gt_file: Path, results: list[dict]) -> tuple[float, list[float]]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_file))
        detections = copy.deepcopy(results)  # loadRes writes into the dicts
        start = time.perf_counter()
        evaluator = COCOeval(coco, coco.loadRes(detections), "keypoints")
        evaluator.params.kpt_oks_sigmas = COCO_SIGMAS
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        elapsed = time.perf_counter() - start
    return elapsed, [float(s) for s in evaluator.stats]


def time_posecore(gt_file: Path, results: list[dict], pred_file: Path) -> tuple[float, float, list[float]]:
    """Seconds from the results list to the table, and from the predictions file to the table.

    The score is the file's (``score_mode="bbox"``) and there is no NMS: the results are scored
    as written, as pycocotools scores them.
    """
    from posecore.metrics import CocoAPMetric
    from posecore.metrics._results import load_coco_predictions, parse_coco_predictions, predictions_to_instances

    metric = CocoAPMetric(str(gt_file), metainfo="coco", score_mode="bbox", nms_thr=None)
    start = time.perf_counter()
    metric.update(predictions_to_instances(parse_coco_predictions(results, metric.annotations)))
    table = metric.compute()
    elapsed = time.perf_counter() - start
    metric.reset()
    start = time.perf_counter()
    metric.update(predictions_to_instances(load_coco_predictions(pred_file, metric.annotations)))
    metric.compute()
    from_file = time.perf_counter() - start
    return elapsed, from_file, list(table.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--predictions", type=int, default=15000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    gt, results = synthetic_coco(args.images, args.predictions)
    with tempfile.TemporaryDirectory() as tmp:
        gt_file, pred_file = Path(tmp) / "gt.json", Path(tmp) / "pred.json"
        gt_file.write_text(json.dumps(gt))
        pred_file.write_text(json.dumps(results))
        plain, ours, ours_file = [], [], []
        for _ in range(args.repeat):
            seconds, reference = time_pycocotools(gt_file, results)
            plain.append(seconds)
            seconds, with_file, stats = time_posecore(gt_file, results, pred_file)
            ours.append(seconds)
            ours_file.append(with_file)
            if stats != reference:  # exact float equality, all 10 statistics
                raise SystemExit(f"statistics differ:\n pycocotools {reference}\n posecore    {stats}")
    print(
        f"{len(gt['annotations'])} GT instances on {args.images} images, {args.predictions} predictions; "
        f"median of {args.repeat}"
    )
    print(f"{'pycocotools evaluate+accumulate+summarize (s)':<52} {statistics.median(plain):.3f}")
    print(f"{'posecore coco_ap: check results, update+compute (s)':<52} {statistics.median(ours):.3f}")
    print(f"{'posecore coco_ap from the predictions file (s)':<52} {statistics.median(ours_file):.3f}")
    print(f"{'ratio posecore / pycocotools':<52} {statistics.median(ours) / statistics.median(plain):.3f}")
    print("statistics: identical (all 10, exact float equality)")
    print(
        " ".join(
            f"{k}={v:.4f}"
            for k, v in zip(
                ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"), reference, strict=True
            )
        )
    )
    print("target: ratio <= 0.5")


if __name__ == "__main__":
    main()

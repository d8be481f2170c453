"""Regenerate ``docs/images/detected_people.jpg``, the README's picture of detected people.

No trained detector or pose weights can be downloaded on this project's machines, so the picture
is made from real data, honestly labelled, through posecore's own paths:

* the boxes are a real person detector's output: the COCO detections file mmpose publishes for
  val2017 (Faster R-CNN, person AP 56.4; ``shared/data/coco/test_coco_det_AP_H_56.json``),
  served by a ``posecore_detectors`` component registered here as a plugin's would be, built for
  the classes posecore chooses for the COCO keypoint set, checked against the detector contract
  and thresholded as ``posecore predict --box-score-thr`` does;
* the skeletons are the COCO annotation's keypoints of the person each box overlaps most,
  drawn with posecore's renderer (what ``posecore predict`` draws with), not a model's prediction.

    python docs/images/detected_people.py [--image-id 197388] [--box-score-thr 0.9]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import posecore
from posecore._detect import build_detector, detection_classes
from posecore.data import load_metainfo, read_image

REPO = Path(__file__).resolve().parents[2]
COCO = REPO.parent / "shared" / "data" / "coco"


class DetectionsFile:
    """A detector that answers with a COCO detections file's boxes for one image."""

    def __init__(self, path: str, image_id: int, classes: tuple[str, ...] = ("person",)) -> None:
        entries = [d for d in json.loads(Path(path).read_text()) if d["image_id"] == image_id]
        self.boxes = [[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in entries)]
        self.scores = [d["score"] for d in entries]
        self.label = classes[0]

    def __call__(self, images: list[np.ndarray]) -> list[posecore.Detections]:
        return [posecore.Detections(self.boxes, self.scores, [self.label] * len(self.boxes)) for _ in images]


@posecore.hookimpl
def posecore_detectors() -> list[posecore.Component]:
    return [posecore.Component("coco_detections_file", DetectionsFile, "a COCO detections file's boxes")]


POSECORE_PLUGIN_API = 2


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-id", type=int, default=197388)
    parser.add_argument("--box-score-thr", type=float, default=0.9)
    parser.add_argument("--output", default=str(REPO / "docs" / "images" / "detected_people.jpg"))
    args = parser.parse_args()

    host = posecore.load_plugins()
    host.register(__import__(__name__), "readme-figure")  # this module, as a plugin
    meta = load_metainfo("coco")
    spec = {"type": "coco_detections_file", "path": str(COCO / "test_coco_det_AP_H_56.json"),
            "image_id": args.image_id}
    detector = build_detector(host.registries, spec, classes=detection_classes(meta), device="cpu")
    image = read_image(COCO / f"{args.image_id:012d}.jpg")
    [found] = detector([image])
    boxes = found.above(args.box_score_thr)

    annotations = [a for a in json.loads((COCO / "test_coco.json").read_text())["annotations"]
                   if a["image_id"] == args.image_id and a["num_keypoints"] > 0]
    truth = [np.array([x, y, x + w, y + h]) for x, y, w, h in (a["bbox"] for a in annotations)]
    canvas = image
    for box in boxes:
        overlaps = [_iou(np.array(box[:4]), other) for other in truth]
        best = int(np.argmax(overlaps)) if overlaps else -1
        if best >= 0 and overlaps[best] >= 0.3:
            triplets = np.asarray(annotations[best]["keypoints"], np.float32).reshape(-1, 3)
            canvas = posecore.draw_pose(canvas, triplets[:, :2], triplets[:, 2], meta, threshold=0, bbox=box[:4])
        else:
            canvas = posecore.draw_pose(canvas, np.zeros((0, 2)), bbox=box[:4])
    posecore.save_image(canvas, args.output)
    print(f"{len(boxes)} detections above {args.box_score_thr} on image {args.image_id}: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Procedural keypoint datasets, so that ``posecore run`` works with no data to download.

Two kinds, both written once to a cache folder in the formats the real readers take, so the
default run exercises the same readers, pipeline, metrics and engine as a real experiment:

* ``people``: COCO-format images of articulated stick figures with the COCO-17 layout (head with
  eyes and ears, torso, arms, legs), several per image, of varied sizes and poses, on cluttered
  backgrounds with limb-like distractors, partly hidden behind occluders (``v = 1``) or cut by
  the image border (``v = 0``). The person's left side is drawn in cool colours and the right in
  warm ones: without such a cue left and right could not be told apart and no detector could
  learn them (real images have the face, the body's asymmetry and context).
* ``categories``: MP-100-format images of "creatures" from many categories, each category a
  random tree of 5-16 keypoints with its own skeleton and colours, for category-agnostic methods;
  the test split holds categories never seen in training.

Everything is deterministic in ``seed``: the same call writes byte-identical files on any
machine. The cache folder is written to a temporary name and renamed when complete, so an
interrupted generation never leaves a half-written dataset behind.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from posecore.data._metainfo import load_metainfo

__all__ = ["SYNTHETIC_VERSION", "SYNTHETIC_VERSIONS", "default_cache_dir", "synthetic_dataset_files"]

#: Per kind, bumped when its drawing changes, so caches written by an older posecore are not reused.
SYNTHETIC_VERSIONS = {"people": 2, "categories": 4}
#: The people's version (the first kind; kept for callers that name the cache folder).
SYNTHETIC_VERSION = SYNTHETIC_VERSIONS["people"]
Kind = Literal["people", "categories"]
IMAGE_SIZE = (320, 240)  # (width, height)


def default_cache_dir() -> Path:
    """``$POSECORE_CACHE`` or ``~/.cache/posecore``."""
    return Path(os.environ.get("POSECORE_CACHE") or Path.home() / ".cache" / "posecore")


def synthetic_dataset_files(
    kind: Kind, split: str, *, num_images: int, seed: int = 0, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The annotation file of a synthetic split, generating it on first use.

    Images of split ``"train"`` and of any other split are drawn from different random streams,
    so no image is in both. For ``categories``, ``"train"`` holds the training categories and
    every other split the held-out ones.
    """
    if kind not in ("people", "categories"):
        raise ValueError(f"synthetic dataset kind must be 'people' or 'categories'; got {kind!r}")
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = root / f"synthetic-{kind}-v{SYNTHETIC_VERSIONS[kind]}" / f"{split}-seed{seed}-n{num_images}"
    ann_file = folder / "annotations.json"
    if ann_file.exists():
        return ann_file
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        generate = _write_people if kind == "people" else _write_categories
        generate(staging, split, num_images, seed)
        try:
            os.replace(staging, folder)
        except OSError:  # another process finished first: theirs is identical
            if not ann_file.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ann_file


def _split_rng(split: str, seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *split.encode()])


# ---------------------------------------------------------------------------------------------
# Backgrounds and occluders


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A gradient with random blobs, bars and thin lines: clutter for the detector to ignore."""
    width, height = size
    top, bottom = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    image = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (height, width, 3)).astype(np.uint8).copy()
    for _ in range(int(rng.integers(6, 16))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        shape = rng.integers(0, 3)
        if shape == 0:
            cv2.circle(image, (x, y), int(rng.integers(4, 30)), colour, -1, cv2.LINE_AA)
        elif shape == 1:
            w, h = int(rng.integers(5, 60)), int(rng.integers(5, 60))
            cv2.rectangle(image, (x, y), (x + w, y + h), colour, -1)
        else:
            end = (x + int(rng.integers(-60, 60)), y + int(rng.integers(-60, 60)))
            cv2.line(image, (x, y), end, colour, int(rng.integers(1, 6)), cv2.LINE_AA)
    noise = rng.normal(0.0, 6.0, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _occlude(image: np.ndarray, rng: np.random.Generator, box: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Draw an opaque patch over part of ``box``; return the mask of ``points`` it hides."""
    x1, y1, x2, y2 = box
    w, h = (x2 - x1) * rng.uniform(0.25, 0.5), (y2 - y1) * rng.uniform(0.2, 0.4)
    cx, cy = rng.uniform(x1, x2), rng.uniform(y1, y2)
    corners = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    cv2.rectangle(image, (int(corners[0]), int(corners[1])), (int(corners[2]), int(corners[3])), colour, -1)
    return ((points[:, 0] >= corners[0]) & (points[:, 0] <= corners[2])
            & (points[:, 1] >= corners[1]) & (points[:, 1] <= corners[3]))


def _annotation(points: np.ndarray, visible: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> dict[str, Any] | None:
    """COCO fields for one figure: keypoints with v in {0, 1, 2}, the box of its pixels, its area."""
    width, height = size
    inside = (points[:, 0] >= 0) & (points[:, 0] <= width - 1) & (points[:, 1] >= 0) & (points[:, 1] <= height - 1)
    v = np.where(inside, np.where(visible, 2, 1), 0)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0 or not (v > 0).any():
        return None
    keypoints = np.concatenate([np.where(v[:, None] > 0, np.round(points, 2), 0.0), v[:, None]], axis=1)
    x1, y1, x2, y2 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
    # The OKS scale is the instance's area. A stick figure covers far fewer pixels than a person of
    # its size, so its area is taken as 0.53 x its box, the convention for data without masks (AIC).
    return {
        "keypoints": [float(value) if i % 3 < 2 else int(value) for i, value in enumerate(keypoints.ravel())],
        "num_keypoints": int((v > 0).sum()),
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "area": round(0.53 * (x2 - x1) * (y2 - y1), 2),
        "iscrowd": 0,
    }


def _save(image: np.ndarray, path: Path) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])


# ---------------------------------------------------------------------------------------------
# People (COCO-17)


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _person_keypoints(rng: np.random.Generator) -> np.ndarray:
    """COCO-17 keypoints of a front-facing figure 1 unit tall, centred on the pelvis (y down)."""
    lean = rng.normal(0.0, 0.15)
    spine = _rotation(lean)
    pelvis = np.zeros(2)
    neck = pelvis + spine @ [0.0, -0.34]
    head = neck + _rotation(lean + rng.normal(0.0, 0.15)) @ [0.0, -0.12]
    turn = rng.uniform(-0.02, 0.02)  # the face turned a little to one side
    points = np.zeros((17, 2))
    points[0] = head + [turn, 0.015]
    points[1], points[2] = head + [0.025 + turn, -0.012], head + [-0.025 + turn, -0.012]
    points[3], points[4] = head + [0.05, 0.0], head + [-0.05, 0.0]
    for side, sign in ((0, 1.0), (1, -1.0)):  # left (+x: the viewer's right) then right
        shoulder = neck + spine @ [sign * 0.11, 0.02]
        hip = pelvis + spine @ [sign * 0.085, 0.0]
        arm = rng.uniform(-0.3, 2.6)  # radians away from hanging down, outwards
        elbow = shoulder + _rotation(-sign * arm) @ [0.0, 0.16]
        wrist = elbow + _rotation(-sign * (arm + rng.uniform(-0.3, 2.0))) @ [0.0, 0.14]
        leg = rng.uniform(-0.15, 0.6)
        knee = hip + _rotation(-sign * leg) @ [0.0, 0.24]
        ankle = knee + _rotation(-sign * (leg - rng.uniform(0.0, 1.6))) @ [0.0, 0.23]
        for index, point in zip((5, 7, 9, 11, 13, 15), (shoulder, elbow, wrist, hip, knee, ankle), strict=True):
            points[index + side] = point
    return points


def _side_colours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(left, right, torso) colours: cool hues on the left, warm on the right."""
    def hsv(hue: float) -> tuple[int, ...]:
        pixel = np.uint8([[[hue, rng.integers(150, 256), rng.integers(120, 256)]]])
        return tuple(int(c) for c in cv2.cvtColor(pixel, cv2.COLOR_HSV2RGB)[0, 0])

    return hsv(rng.uniform(90, 125)), hsv(rng.uniform(0, 20)), hsv(rng.uniform(30, 80))


def _draw_person(image: np.ndarray, mask: np.ndarray, points: np.ndarray, height: float, rng: np.random.Generator) -> None:
    left, right, torso = _side_colours(rng)
    width = max(2, int(round(height * 0.045)))

    def line(a: int, b: int, colour: tuple[int, ...], thickness: int = width) -> None:
        for canvas, value in ((image, colour), (mask, 255)):
            cv2.line(canvas, _pt(points[a]), _pt(points[b]), value, thickness, cv2.LINE_AA)

    hips, shoulders = (points[11] + points[12]) / 2, (points[5] + points[6]) / 2
    for canvas, value in ((image, torso), (mask, 255)):
        polygon = np.round(points[[5, 6, 12, 11]]).astype(np.int32)
        cv2.fillConvexPoly(canvas, polygon, value, cv2.LINE_AA)
        cv2.line(canvas, _pt(hips), _pt(shoulders), value, width, cv2.LINE_AA)
    for side, colour in ((0, left), (1, right)):
        for a, b in ((5, 7), (7, 9), (11, 13), (13, 15)):
            line(a + side, b + side, colour)
    head = (points[3] + points[4]) / 2
    radius = max(3, int(round(height * 0.065)))
    skin = tuple(int(c) for c in rng.integers(150, 240, 3))
    for canvas, value in ((image, skin), (mask, 255)):
        cv2.circle(canvas, _pt(head), radius, value, -1, cv2.LINE_AA)
    dot = max(1, int(round(height * 0.012)))
    for index, colour in ((1, left), (2, right), (0, (30, 30, 30))):
        cv2.circle(image, _pt(points[index]), dot, colour, -1, cv2.LINE_AA)
    for index, colour in ((3, left), (4, right)):
        cv2.circle(image, _pt(points[index]), dot + 1, colour, -1, cv2.LINE_AA)


def _pt(point: np.ndarray) -> tuple[int, int]:
    return int(round(point[0])), int(round(point[1]))


def _write_people(folder: Path, split: str, num_images: int, seed: int) -> None:
    rng = _split_rng(split, seed, 1)
    meta = load_metainfo("coco")
    (folder / "images").mkdir()
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        image = _background(rng, IMAGE_SIZE)
        file_name = f"images/{image_id:06d}.jpg"
        for _ in range(int(rng.choice([1, 1, 2, 2, 3]))):
            height = rng.uniform(70, 210)
            centre = np.array([rng.uniform(0.1, 0.9) * IMAGE_SIZE[0], rng.uniform(0.35, 0.75) * IMAGE_SIZE[1]])
            points = _person_keypoints(rng) * height @ _rotation(rng.normal(0.0, 0.2)).T + centre
            mask = np.zeros(IMAGE_SIZE[::-1], np.uint8)
            _draw_person(image, mask, points, height, rng)
            visible = np.ones(17, bool)
            box = np.array([*points.min(0), *points.max(0)])
            if rng.random() < 0.3:
                visible &= ~_occlude(image, rng, box, points)
            annotation = _annotation(points, visible, mask, IMAGE_SIZE)
            if annotation is not None:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, **annotation})
        _save(image, folder / file_name)
        images.append({"id": image_id, "file_name": file_name, "width": IMAGE_SIZE[0], "height": IMAGE_SIZE[1]})
    category = {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(meta.keypoint_names),
                "skeleton": [[a + 1, b + 1] for a, b in meta.skeleton]}
    _write_json(folder / "annotations.json", {"images": images, "annotations": annotations, "categories": [category]})


# ---------------------------------------------------------------------------------------------
# Categories (MP-100 layout)

NUM_TRAIN_CATEGORIES, NUM_TEST_CATEGORIES = 24, 8


def _category_template(category_id: int, seed: int) -> dict[str, Any]:
    """A category: a random tree of 5..16 keypoints (parent links), rest pose, colours, markers.

    Each limb leaves its parent within about 70 degrees of the parent limb's direction (the root's
    limbs in any direction), so limbs spread out instead of folding back over each other; the
    keypoints' colours are spread around the hue circle and the limbs share one dark body colour:
    a keypoint is told by its colour and marker, as a real category's parts are by their appearance.
    """
    rng = np.random.default_rng([seed, 7, category_id])
    k = int(rng.integers(5, 17))
    parents = [-1] + [int(rng.integers(0, i)) for i in range(1, k)]
    angles = np.where(np.array(parents) <= 0, rng.uniform(-math.pi, math.pi, k), rng.uniform(-1.2, 1.2, k))
    lengths = rng.uniform(0.15, 0.3, k)
    hues = (rng.uniform(0, 180) + np.arange(k) * 180 / k + rng.uniform(-0.2, 0.2, k) * 180 / k) % 180
    order = rng.permutation(k)  # neighbours in the tree need not have neighbouring hues
    colours = []
    for index in range(k):
        pixel = np.uint8([[[hues[order[index]], rng.integers(140, 256), rng.integers(150, 256)]]])
        colours.append(tuple(int(c) for c in cv2.cvtColor(pixel, cv2.COLOR_HSV2RGB)[0, 0]))
    body = tuple(int(c) for c in rng.integers(20, 90, 3))
    return {"id": category_id, "k": k, "parents": parents, "angles": angles, "lengths": lengths,
            "colours": colours, "body": body, "markers": rng.integers(0, 2, k)}


def _creature_points(template: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """One instance: every joint turned a little (N(0, 0.15) radians) from the category's rest pose."""
    points = np.zeros((template["k"], 2))
    absolute = np.zeros(template["k"])
    for i, parent in enumerate(template["parents"]):
        if parent < 0:
            continue
        absolute[i] = absolute[parent] + template["angles"][i] + rng.normal(0.0, 0.15)
        points[i] = points[parent] + template["lengths"][i] * np.array([math.cos(absolute[i]), math.sin(absolute[i])])
    return points - points.mean(0)


def _draw_creature(image: np.ndarray, mask: np.ndarray, points: np.ndarray, template: dict[str, Any], size: float) -> None:
    """Limbs in the category's body colour, then every keypoint as a filled disc or square of its
    own colour with a light rim."""
    width = max(2, int(round(size * 0.025)))
    for i, parent in enumerate(template["parents"]):
        if parent >= 0:
            for canvas, value in ((image, template["body"]), (mask, 255)):
                cv2.line(canvas, _pt(points[parent]), _pt(points[i]), value, width, cv2.LINE_AA)
    radius = max(3, int(round(size * 0.05)))
    for i, point in enumerate(points):
        colour = template["colours"][i]
        if template["markers"][i] == 0:
            cv2.circle(image, _pt(point), radius + 1, (235, 235, 235), -1, cv2.LINE_AA)
            cv2.circle(image, _pt(point), radius, colour, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(image, _pt(point - radius - 1), _pt(point + radius + 1), (235, 235, 235), -1)
            cv2.rectangle(image, _pt(point - radius), _pt(point + radius), colour, -1)
        cv2.circle(mask, _pt(point), radius + 1, 255, -1)


def _write_categories(folder: Path, split: str, num_images: int, seed: int) -> None:
    first = 1 if split == "train" else NUM_TRAIN_CATEGORIES + 1
    count = NUM_TRAIN_CATEGORIES if split == "train" else NUM_TEST_CATEGORIES
    templates = [_category_template(first + i, seed) for i in range(count)]
    rng = _split_rng(split, seed, 2)
    (folder / "images").mkdir()
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        template = templates[(image_id - 1) % count]  # balanced categories
        image = _background(rng, IMAGE_SIZE)
        size = rng.uniform(110, 200)
        centre = np.array([rng.uniform(0.35, 0.65) * IMAGE_SIZE[0], rng.uniform(0.35, 0.65) * IMAGE_SIZE[1]])
        points = _creature_points(template, rng) * size @ _rotation(rng.normal(0.0, 0.3)).T + centre
        mask = np.zeros(IMAGE_SIZE[::-1], np.uint8)
        _draw_creature(image, mask, points, template, size)
        annotation = _annotation(points, np.ones(template["k"], bool), mask, IMAGE_SIZE)
        file_name = f"images/{image_id:06d}.jpg"
        _save(image, folder / file_name)
        images.append({"id": image_id, "file_name": file_name, "width": IMAGE_SIZE[0], "height": IMAGE_SIZE[1]})
        if annotation is not None:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": template["id"], **annotation})
    categories = [
        {"id": t["id"], "name": f"creature_{t['id']:02d}", "supercategory": "creature",
         "keypoints": [str(i) for i in range(t["k"])],
         "skeleton": [[parent, i] for i, parent in enumerate(t["parents"]) if parent >= 0]}
        for t in templates
    ]
    _write_json(folder / "annotations.json", {"images": images, "annotations": annotations, "categories": categories})


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")


def synthetic_people(split: str = "train", num_images: int = 1000, seed: int = 0, cache_dir: str | None = None,
                     dataset_index: int = 0) -> Any:
    """The ``synthetic_people`` dataset: COCO-17 stick figures, read by the ``coco`` reader."""
    from posecore.data._coco import coco

    ann_file = synthetic_dataset_files("people", split, num_images=num_images, seed=seed, cache_dir=cache_dir)
    return coco(str(ann_file), dataset_index=dataset_index)


def synthetic_categories(split: str = "train", num_images: int = 1000, seed: int = 0, cache_dir: str | None = None,
                         episodes: bool = True, num_shots: int = 1, num_queries: int = 15, num_episodes: int = 0,
                         dataset_index: int = 0) -> Any:
    """The ``synthetic_categories`` dataset: many creature categories, read by the ``mp100`` reader;
    ``split="train"`` holds the training categories, any other split the unseen ones."""
    from posecore.data._mp100 import MP100Dataset

    ann_file = synthetic_dataset_files("categories", split, num_images=num_images, seed=seed, cache_dir=cache_dir)
    return MP100Dataset(str(ann_file), skeleton="file", episodes=episodes, num_shots=num_shots,
                        num_queries=num_queries, num_episodes=num_episodes, seed=seed, dataset_index=dataset_index)


def write_people_example(directory: Path) -> dict[str, Any]:
    """Contract-check example: a 6-image people split cached under ``directory``."""
    return {"split": "train", "num_images": 6, "cache_dir": str(directory)}


def write_categories_example(directory: Path) -> dict[str, Any]:
    """Contract-check example: the held-out categories, 16 images, as single instances."""
    return {"split": "test", "num_images": 16, "cache_dir": str(directory), "episodes": False}

"""Few-shot prediction on images: ``FewShotPose`` and the ``posecore predict`` command of Pose Anything.

    posecore predict --plugin poseanything --checkpoint W.pth \\
        --support dog1.jpg --support-keypoints dog1.json --skeleton dog.json  dog2.jpg photos/
    posecore predict --plugin poseanything --checkpoint W.pth --category sofa.yaml sofa2.jpg

The support and every query go through the preset's test pipeline: the box (the whole image
unless ``--boxes`` gives boxes for the queries) padded 1.25x and warped into the square crop, as
in training, so supports of any aspect ratio work and the colours are RGB throughout. The
predicted keypoints are mapped back through each query's crop and drawn, with the category's
limbs, on the *original* query image; the supports are drawn too. ``predictions.json`` holds one
row per query instance: ``file_name``, ``category`` and ``keypoints`` as ``[x, y, score] * K``
in image pixels (score 1 where the supports define the keypoint, 0 where they do not).

A released checkpoint (mmcv layout) is recognised by its key names and its architecture (Tiny,
Small or the legacy SwinV2-B) by its tensor shapes; a posecore checkpoint carries its own config.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posecore._api import PosePrediction, config_from_checkpoint
from posecore.config import ExperimentConfig
from posecore._errors import CheckpointError, ConfigError
from posecore_poseanything.category import Category, category_from_files, load_category

__all__ = ["FewShotPose", "load_poseanything", "predict_command"]


def load_poseanything(checkpoint: str | Path | None = None, *, preset: str | None = None,
                      config: ExperimentConfig | None = None,
                      device: str | torch.device | None = None) -> tuple[Any, ExperimentConfig]:
    """A Pose Anything model in eval mode on ``device``, and its config.

    The config is ``config``, else ``preset``'s, else the one a posecore checkpoint carries, else
    (a released checkpoint) the MP-100 preset of the architecture its shapes show, else the
    plugin's default preset. Every tensor must fit: a checkpoint that does not is an error listing
    the keys.
    """
    from posecore._checkpoint import compare_state_dicts, convert_state_dict, extract_state_dict, load_checkpoint
    from posecore.engine._builder import build_model
    from posecore._plugins import get_host
    from posecore_poseanything.model import detect_variant
    from posecore_poseanything.presets import mp100_preset

    host = get_host()
    loaded = load_checkpoint(checkpoint) if checkpoint is not None else None
    state = extract_state_dict(loaded, source=str(checkpoint)) if loaded is not None else None
    if config is None and preset is not None:
        config = host.registries.presets.get(preset).load()
    if config is None and loaded is not None:
        config = config_from_checkpoint(loaded)
        if config is None:
            try:
                config = mp100_preset(detect_variant(state), 1, 1)
            except ValueError as exc:
                raise CheckpointError(f"{checkpoint}: {exc}; name its preset with --preset") from None
    if config is None:
        config = host.default_preset("poseanything").load()
    if config.model.type != "poseanything":
        raise ConfigError(f"config {config.name!r} builds a {config.model.type!r} model, not 'poseanything'")
    model = build_model(config)
    if state is not None:
        expected = model.state_dict()
        name, converted = convert_state_dict(state, expected=expected, source=str(checkpoint))
        report = compare_state_dicts(expected, converted, converter=name)
        if not report.clean:
            raise CheckpointError(f"{checkpoint} does not fit {config.name!r}:\n{report.format()}")
        model.load_state_dict(converted)
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), config


class FewShotPose:
    """Pose Anything on images: a category's supports in, its keypoints on query images out.

    Args:
        checkpoint: weights (released or posecore); ``None`` keeps the random initialisation.
        preset, config, device: as :func:`load_poseanything`.
        batch_size: query crops per forward pass.
        original_demo_colours: reproduce the released demo's colour bug: it applied the ImageNet
            mean and std (RGB order) to BGR pixels, so R and B got each other's statistics
            (``False``: the statistics of each channel, as in training and evaluation).

    Example::

        pose = FewShotPose("1shot-swin_graph_split1.pth")     # architecture told by its shapes
        sofa = load_category("sofa.yaml")
        [prediction] = pose(sofa, ["sofa2.jpg"])
        prediction.keypoints  # (N, K, 2) image pixels, one row per box (the whole image: N = 1)
    """

    def __init__(self, checkpoint: str | Path | None = None, *, preset: str | None = None,
                 config: ExperimentConfig | None = None, device: str | torch.device | None = None,
                 batch_size: int = 16, original_demo_colours: bool = False) -> None:
        from posecore.engine._builder import experiment_pipeline

        self.model, self.config = load_poseanything(checkpoint, preset=preset, config=config, device=device)
        if original_demo_colours:
            normalizer = self.model.normalizer
            normalizer.mean.copy_(normalizer.mean.flip(1))
            normalizer.std.copy_(normalizer.std.flip(1))
        self.pipeline = experiment_pipeline(self.config, None, self.model.codec, train=False)
        self.batch_size = batch_size
        self.device = next(self.model.parameters()).device

    def _crop(self, image: np.ndarray, box: np.ndarray, keypoints: np.ndarray, visibility: np.ndarray,
              meta: Any, index: int) -> dict[str, Any]:
        sample = {"image": image, "bbox": np.asarray(box, np.float32), "keypoints": keypoints, "visibility": visibility,
                  "meta": meta, "image_id": index, "id": -1, "category_id": 0}
        return self.pipeline(sample, np.random.default_rng(0))

    def support_samples(self, category: Category) -> list[dict[str, Any]]:
        """The category's shots as crops with their heatmap targets, ready for a batch."""
        meta = category.meta
        return [self._crop(shot.image, shot.bbox, shot.keypoints, shot.visibility, meta, -1 - index)
                for index, shot in enumerate(category.shots)]

    def __call__(self, category: Category, images: Sequence[str | Path | np.ndarray],
                 boxes: Sequence[Sequence[Sequence[float]] | None] | None = None) -> list[PosePrediction]:
        """The category's keypoints on every box of every image (the whole image when its boxes
        are ``None``), in image pixels."""
        from posecore.data._images import read_image
        from posecore.data._sample import collate_samples
        from posecore.engine._evaluation import crop_to_image, move_to_device

        arrays = [read_image(image) if isinstance(image, (str, Path)) else np.asarray(image) for image in images]
        boxes = list(boxes) if boxes is not None else [None] * len(arrays)
        if len(boxes) != len(arrays):
            raise ConfigError(f"{len(arrays)} query images but {len(boxes)} box lists; give one list (or None) each")
        supports = self.support_samples(category)
        k = category.num_keypoints
        crops = []
        for index, (array, image_boxes) in enumerate(zip(arrays, boxes, strict=True)):
            height, width = array.shape[:2]
            for box in image_boxes if image_boxes is not None else [[0.0, 0.0, width - 1.0, height - 1.0]]:
                crops.append((index, np.asarray(box, np.float32)[:4]))
        keypoints, scores, warps = [], [], []
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start:start + self.batch_size]
            samples = [self._crop(arrays[i], box, np.zeros((k, 2), np.float32), np.zeros(k, np.float32),
                                  category.meta, i) for i, box in chunk]
            batch = move_to_device(collate_samples(samples), self.device)
            batch["support"] = [supports] * len(samples)
            with torch.inference_mode():
                prediction = self.model.predict(batch)
            keypoints.append(crop_to_image(prediction.keypoints[:, :k].float(), batch["warp"]).float().cpu().numpy())
            scores.append(prediction.scores[:, :k].float().cpu().numpy())
            warps.append(batch["warp"].cpu().numpy())
        stacked = [np.concatenate(part) if part else np.zeros((0, k, 2)) for part in (keypoints, scores, warps)]
        results = []
        for index in range(len(arrays)):
            rows = [i for i, (image_index, _) in enumerate(crops) if image_index == index]
            results.append(PosePrediction(keypoints=stacked[0][rows], scores=stacked[1][rows],
                                          boxes=np.stack([crops[i][1] for i in rows]), warps=stacked[2][rows]))
        return results


def _category(args: argparse.Namespace) -> Category:
    separate = args.support or args.support_keypoints or args.skeleton
    if args.category:
        if separate:
            raise ConfigError("give either --category FILE or --support/--support-keypoints/--skeleton, not both")
        return load_category(args.category)
    return category_from_files(args.support, args.support_keypoints, args.skeleton)


def predict_command(args: argparse.Namespace) -> int:
    """``posecore predict`` for Pose Anything presets (``Preset.predictor``)."""
    from posecore._cli.predict import VIDEO_SUFFIXES, boxes_for, expand_inputs, load_boxes
    from posecore.config import atomic_write_text
    from posecore.data._images import read_image
    from posecore._visualize import draw_pose, save_image

    category = _category(args)
    if not args.inputs:
        raise ConfigError("give at least one QUERY: an image or a folder of images to find the support's keypoints in")
    files = list(expand_inputs(args.inputs))
    videos = [str(path) for path in files if path.suffix.lower() in VIDEO_SUFFIXES]
    if videos:
        raise ConfigError(f"poseanything predicts images, not videos ({videos[0]}); extract the frames first")
    pose = FewShotPose(args.checkpoint, preset=args.preset, device=args.device,
                       original_demo_colours=getattr(args, "original_demo_colours", False))
    if args.checkpoint is None:
        print("posecore predict: no --checkpoint, so the model has random weights", flush=True)
    boxes = load_boxes(args.boxes, args.box_score_thr)
    output = Path(args.output or Path("runs") / f"predict-{time.strftime('%Y%m%d-%H%M%S')}")
    output.mkdir(parents=True, exist_ok=True)
    meta = category.meta
    for index, shot in enumerate(category.shots):
        save_image(draw_pose(shot.image, shot.keypoints, shot.visibility, meta), output / f"support{index}.jpg")
    rows = []
    for image_id, path in enumerate(files, start=1):
        image = read_image(path)
        image_boxes = boxes_for(path, boxes)
        [prediction] = pose(category, [image], [image_boxes])
        canvas = image
        for keypoints, scores, box in zip(prediction.keypoints, prediction.scores, prediction.boxes, strict=True):
            canvas = draw_pose(canvas, keypoints, scores, meta, threshold=args.keypoint_thr,
                               bbox=box if image_boxes is not None else None)
            triplets = np.concatenate([keypoints, scores[:, None]], axis=1).ravel()
            x1, y1, x2, y2 = (float(v) for v in box)
            rows.append({"image_id": image_id, "file_name": path.name, "category": category.name,
                         "keypoints": [round(float(v), 2) for v in triplets], "bbox": [x1, y1, x2 - x1, y2 - y1]})
        save_image(canvas, output / f"{path.stem}.jpg")
    atomic_write_text(output / "predictions.json", json.dumps(rows))
    print(f"posecore predict: {category.name!r} ({category.num_keypoints} keypoints, {len(category.shots)} "
          f"shot(s)) on {len(rows)} instance(s) in {len(files)} image(s); results and pictures in {output}")
    return 0

"""Few-shot prediction on images: ``FewShotPose`` and the ``posecore predict`` command of Pose Anything.

    posecore predict --plugin poseanything --checkpoint W.pth \\
        --support dog1.jpg --support-keypoints dog1.json --skeleton dog.json  dog2.jpg photos/
    posecore predict --plugin poseanything --checkpoint W.pth --category sofa.yaml sofa2.jpg

The support and every query go through the preset's test pipeline: the box (the whole image
unless ``--boxes`` gives boxes for the queries) padded 1.25x and warped into the square crop, as
in training, so supports of any aspect ratio work and the colours are RGB throughout
(``--original-demo-geometry`` and ``--original-demo-colours`` crop and normalise as the released
demo did instead: see :mod:`posecore_poseanything.demo_geometry`). The
predicted keypoints are mapped back through each query's crop and drawn, with the category's
limbs, on the *original* query image; the supports are drawn too. ``predictions.json`` holds one
row per query instance: ``file_name``, ``category`` and ``keypoints`` as ``[x, y, score] * K``
in image pixels (score 1 where the supports define the keypoint, 0 where they do not).

A released checkpoint (mmcv layout) is recognised by its key names and its architecture (Tiny,
Small or the legacy SwinV2-B) by its tensor shapes; a posecore checkpoint carries its own config.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import posecore
from posecore import ConfigError, PosePrediction, PredictRequest
from posecore.config import ExperimentConfig, atomic_write_text
from posecore.data import read_image, standard_topdown_pipeline
from posecore_poseanything.category import Category, category_from_files, load_category
from posecore_poseanything.demo_geometry import ResizePad

__all__ = ["FewShotPose", "load_poseanything", "predict_command"]


def load_poseanything(checkpoint: str | Path | None = None, *, preset: str | None = None,
                      config: ExperimentConfig | None = None,
                      device: str | torch.device | None = None) -> tuple[Any, ExperimentConfig]:
    """A Pose Anything model in eval mode on ``device``, and its config.

    The config is ``config``, else ``preset``'s, else the one a posecore checkpoint carries, else
    (a released checkpoint) the MP-100 preset of the architecture its shapes show, else the
    plugin's default preset (:func:`posecore.load_model` chooses, with this plugin's converters).
    Every tensor must fit: a checkpoint that does not is an error listing the keys.
    """
    model, config, _ = posecore.load_model(checkpoint, preset=preset, config=config, plugin="poseanything",
                                           device=device)
    _require_poseanything(config)
    return model, config


def _require_poseanything(config: ExperimentConfig) -> None:
    if config.model.type != "poseanything":
        raise ConfigError(f"config {config.name!r} builds a {config.model.type!r} model, not 'poseanything'")


class FewShotPose:
    """Pose Anything on images: a category's supports in, its keypoints on query images out.

    The crops, batches and mapping back to the image are :class:`posecore.Pose`'s; this adds the
    support set, given to the model beside every query crop.

    Args:
        checkpoint: weights (released or posecore); ``None`` keeps the random initialisation.
        preset, config, device: as :func:`load_poseanything`.
        batch_size: query crops per forward pass.
        original_demo_colours: reproduce the released demo's colour bug: it applied the ImageNet
            mean and std (RGB order) to BGR pixels, so R and B got each other's statistics
            (``False``: the statistics of each channel, as in training and evaluation).
        original_demo_geometry: crop as the released demo: the image (or box) padded to a square
            with the mean colour and resized to the input (``False``: the box padded 1.25x and
            warped, as in training and evaluation); see
            :mod:`posecore_poseanything.demo_geometry`.

    Example::

        pose = FewShotPose("1shot-swin_graph_split1.pth")     # architecture told by its shapes
        sofa = load_category("sofa.yaml")
        [prediction] = pose(sofa, ["sofa2.jpg"])
        prediction.keypoints  # (N, K, 2) image pixels, one row per box (the whole image: N = 1)
    """

    def __init__(self, checkpoint: str | Path | None = None, *, preset: str | None = None,
                 config: ExperimentConfig | None = None, device: str | torch.device | None = None,
                 batch_size: int = 16, original_demo_colours: bool = False,
                 original_demo_geometry: bool = False) -> None:
        self.pose = posecore.Pose(checkpoint, preset=preset, config=config, plugin="poseanything", device=device,
                                  flip_test=False, batch_size=batch_size)
        _require_poseanything(self.pose.config)
        if original_demo_colours:
            normalizer = self.model.normalizer
            normalizer.mean.copy_(normalizer.mean.flip(1))
            normalizer.std.copy_(normalizer.std.flip(1))
        if original_demo_geometry:
            self.pose.pipeline = self._demo_pipeline()

    def _demo_pipeline(self) -> Any:
        """The test pipeline with its box crop (everything up to ``topdown_affine``) replaced by the
        demo's :class:`ResizePad`, padding with the normalisation's mean (0 once normalised, as in
        the demo, whichever channel order ``original_demo_colours`` chose)."""
        specs = list(self.config.data.test_pipeline) or standard_topdown_pipeline(train=False)
        types = [spec.type for spec in specs]
        if "topdown_affine" not in types:
            raise ConfigError(f"config {self.config.name!r}: original_demo_geometry replaces the test pipeline's "
                              f"'topdown_affine', which it does not have ({', '.join(types)})")
        after = self.pose.pipeline.transforms[types.index("topdown_affine") + 1:]
        fill = tuple(int(round(v)) for v in self.model.normalizer.mean.flatten().tolist())
        steps = [ResizePad(self.model.input_size, fill), *after]

        def pipeline(sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
            for step in steps:
                sample = step(sample, rng)
            return sample

        return pipeline

    @property
    def model(self) -> Any:
        return self.pose.model

    @property
    def config(self) -> ExperimentConfig:
        return self.pose.config

    def support_samples(self, category: Category) -> list[dict[str, Any]]:
        """The category's shots as crops with their heatmap targets, ready for a batch."""
        return [self.pose.crop(shot.image, shot.bbox, keypoint_set=category.meta, keypoints=shot.keypoints,
                               visibility=shot.visibility, image_id=-1 - index)
                for index, shot in enumerate(category.shots)]

    def __call__(self, category: Category, images: Sequence[str | Path | np.ndarray],
                 boxes: Sequence[Sequence[Sequence[float]] | None] | None = None) -> list[PosePrediction]:
        """The category's keypoints on every box of every image (the whole image when its boxes
        are ``None``), in image pixels."""
        return self.pose(list(images), boxes, keypoint_set=category.meta,
                         batch_extras={"support": self.support_samples(category)})


def _category(options: dict[str, Any]) -> Category:
    separate = options["support"] or options["support_keypoints"] or options["skeleton"]
    if options["category"]:
        if separate:
            raise ConfigError("give either --category FILE or --support/--support-keypoints/--skeleton, not both")
        return load_category(options["category"])
    return category_from_files(options["support"], options["support_keypoints"], options["skeleton"])


def predict_command(request: PredictRequest) -> int:
    """``posecore predict`` for Pose Anything presets (their :class:`posecore.Predictor`)."""
    options = dict(request.options)
    category = _category(options)
    if not request.inputs:
        raise ConfigError("give at least one QUERY: an image or a folder of images to find the support's keypoints in")
    if request.videos:
        raise ConfigError(f"poseanything predicts images, not videos ({request.videos[0]}); extract the frames first")
    pose = FewShotPose(request.checkpoint, preset=request.preset, device=request.device,
                       original_demo_colours=options.get("original_demo_colours", False),
                       original_demo_geometry=options.get("original_demo_geometry", False))
    if request.checkpoint is None:
        print("posecore predict: no --checkpoint, so the model has random weights", flush=True)
    meta = category.meta
    for index, shot in enumerate(category.shots):
        posecore.save_image(posecore.draw_pose(shot.image, shot.keypoints, shot.visibility, meta),
                            request.output / f"support{index}.jpg")
    rows = []
    for image_id, path in enumerate(request.images, start=1):
        image = read_image(path)
        image_boxes = request.boxes_for(path)
        [prediction] = pose(category, [image], [image_boxes])
        canvas = image
        for keypoints, scores, box in zip(prediction.keypoints, prediction.scores, prediction.boxes, strict=True):
            canvas = posecore.draw_pose(canvas, keypoints, scores, meta, threshold=request.keypoint_threshold,
                                        bbox=box if image_boxes is not None else None)
        rows += posecore.prediction_rows(prediction, image_id, path.name, category=category.name)
        posecore.save_image(canvas, request.output / f"{path.stem}.jpg")
    atomic_write_text(request.output / "predictions.json", json.dumps(rows))
    print(f"posecore predict: {category.name!r} ({category.num_keypoints} keypoints, {len(category.shots)} "
          f"shot(s)) on {len(rows)} instance(s) in {len(request.images)} image(s); results and pictures in "
          f"{request.output}")
    return 0

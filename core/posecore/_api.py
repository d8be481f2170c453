"""``posecore.Pose``: keypoints for images and person boxes in three lines.

    pose = posecore.Pose(checkpoint="runs/vit-tiny-synthetic-.../checkpoints/best.pth")
    results = pose(["a.jpg", image_array], boxes=[[[10, 20, 110, 220]], None])
    results[0].keypoints  # (N, K, 2) image pixels; results[0].scores (N, K)

A checkpoint written by posecore carries its experiment config, so it is enough on its own; a
foreign checkpoint needs ``preset=`` (or ``plugin=`` for that plugin's default preset). Crops are
made with the preset's test pipeline and predicted in batches of ``batch_size`` on ``device``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from posecore.config import ExperimentConfig, structure
from posecore.data._metainfo import DatasetMeta
from posecore._errors import ConfigError

__all__ = ["Pose", "PosePrediction", "config_from_checkpoint", "load_model"]

ImageLike = str | Path | np.ndarray


@attrs.frozen
class PosePrediction:
    """The instances of one image.

    Attributes:
        keypoints: (N, K, 2) x, y in the image's pixels.
        scores: (N, K) keypoint confidences.
        boxes: (N, 4) x1, y1, x2, y2 the crops were made from.
        heatmaps: (N, K, h, w) when the model makes heatmaps and ``return_heatmaps`` was set.
        warps: (N, 2, 3) image-to-crop affine of each instance (to place heatmaps on the image).
    """

    keypoints: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    heatmaps: np.ndarray | None = None
    warps: np.ndarray | None = None


def config_from_checkpoint(checkpoint: Any) -> ExperimentConfig | None:
    """The experiment config a posecore checkpoint (``best.pth`` or a training state) carries, as
    loaded by :func:`posecore._checkpoint.load_checkpoint`; ``None`` for foreign checkpoints."""
    import yaml

    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    text = meta.get("config") if isinstance(meta, dict) else None
    if text is None and isinstance(checkpoint, dict) and isinstance(checkpoint.get("config"), str):
        text = checkpoint["config"]  # a training state (latest.pth)
    if not isinstance(text, str):
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None  # another framework's config (mmcv keeps its Python config source in meta)
    if not isinstance(data, dict) or not {"name", "model"} <= set(data):
        return None
    return structure(data, ExperimentConfig)


def load_model(
    checkpoint: str | Path | None = None,
    *,
    preset: str | None = None,
    plugin: str | None = None,
    config: ExperimentConfig | None = None,
    device: str | torch.device | None = None,
) -> tuple[Any, ExperimentConfig, DatasetMeta]:
    """The model of ``config`` / ``preset`` / the checkpoint's own config, with the checkpoint's
    weights (converted from a foreign layout when needed), in eval mode on ``device``, its config
    and the keypoint set it predicts (``None`` when neither the checkpoint nor the config tells)."""
    from posecore._checkpoint import load_checkpoint
    from posecore.engine._builder import build_model
    from posecore._plugins import get_host

    host = get_host()
    loaded = load_checkpoint(checkpoint) if checkpoint is not None else None
    if config is None and preset is not None:
        config = host.registries.presets.get(preset).load()
    if config is None and loaded is not None:
        config = config_from_checkpoint(loaded)
    if config is None:
        if plugin is None and checkpoint is not None:
            raise ConfigError(f"{checkpoint} carries no posecore config; say which model it is with preset=NAME")
        config = host.default_preset(plugin).load()
    model = build_model(config)
    if loaded is not None:
        _load_weights(model, loaded, str(checkpoint))
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), config, keypoint_set(config, loaded)


def keypoint_set(config: ExperimentConfig, checkpoint: Any = None) -> DatasetMeta | None:
    """The keypoint set a model predicts, for flip pairs and drawing: the one a posecore checkpoint
    recorded, else the ``metainfo`` or built-in reader name of the config's datasets."""
    from posecore.data._metainfo import builtin_keypoint_sets, load_metainfo

    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("keypoint_set"), dict):
        return structure(meta["keypoint_set"], DatasetMeta)
    builtin = set(builtin_keypoint_sets())
    for spec in (*config.data.val, *config.data.test, *config.data.train):
        name = spec.args.get("metainfo") or spec.type
        if isinstance(name, str) and (name in builtin or Path(name).suffix in (".json", ".yaml", ".yml")):
            return load_metainfo(name)
    return None


def _load_weights(model: torch.nn.Module, checkpoint: Any, source: str) -> None:
    from posecore._checkpoint import compare_state_dicts, extract_state_dict, fit_model_to
    from posecore._errors import CheckpointError

    state = extract_state_dict(checkpoint, source=source)
    fit_model_to(model, state)
    report = compare_state_dicts(model.state_dict(), state)
    if not report.clean:
        raise CheckpointError(f"{source} does not fit the model:\n{report.format()}")
    model.load_state_dict(state)


class Pose:
    """Top-down pose estimation for images and boxes, batched.

    Args:
        checkpoint: weights (a posecore ``best.pth`` needs nothing else).
        preset: the experiment whose model and test pipeline to use.
        plugin: use this plugin's default preset.
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        flip_test: average with the mirrored crop, as evaluation does.
        batch_size: crops per forward pass.
    """

    def __init__(self, checkpoint: str | Path | None = None, *, preset: str | None = None, plugin: str | None = None,
                 config: ExperimentConfig | None = None, device: str | torch.device | None = None,
                 flip_test: bool = True, batch_size: int = 32) -> None:
        from posecore.engine._builder import experiment_pipeline

        self.model, self.config, self.meta = load_model(checkpoint, preset=preset, plugin=plugin, config=config,
                                                        device=device)
        if self.meta is None:
            raise ConfigError(
                f"cannot tell which keypoints config {self.config.name!r} predicts (for flip pairs and drawing): its "
                "datasets name no built-in keypoint set or metainfo file; use a checkpoint written by posecore"
            )
        self.device = next(self.model.parameters()).device
        self.flip_test = flip_test
        self.batch_size = batch_size
        self.pipeline = experiment_pipeline(self.config, None, getattr(self.model, "codec", None), train=False)

    def __call__(self, images: ImageLike | Sequence[ImageLike],
                 boxes: Sequence[Sequence[Sequence[float]] | None] | None = None, *,
                 return_heatmaps: bool = False) -> list[PosePrediction]:
        """Keypoints for every box of every image (the whole image when its boxes are ``None``).

        Args:
            images: paths or (H, W, 3) RGB uint8 arrays.
            boxes: per image, a list of x1, y1, x2, y2 boxes, or ``None``.
        """
        from posecore.data._images import read_image

        single = isinstance(images, (str, Path, np.ndarray))
        images = [images] if single else list(images)
        if boxes is None:
            boxes = [None] * len(images)
        if len(boxes) != len(images):
            raise ConfigError(f"Pose: {len(images)} images but {len(boxes)} box lists; give one list (or None) per image")
        arrays = [read_image(image) if isinstance(image, (str, Path)) else np.asarray(image) for image in images]
        crops: list[tuple[int, np.ndarray]] = []
        for index, (array, image_boxes) in enumerate(zip(arrays, boxes, strict=True)):
            if image_boxes is None:
                image_boxes = [[0.0, 0.0, float(array.shape[1] - 1), float(array.shape[0] - 1)]]
            for box in image_boxes:
                crops.append((index, np.asarray(box, dtype=np.float32)[:4]))
        outputs = self._predict_crops(arrays, crops, return_heatmaps)
        return [self._gather(outputs, crops, index, return_heatmaps) for index in range(len(arrays))]

    def _predict_crops(self, arrays: list[np.ndarray], crops: list[tuple[int, np.ndarray]],
                       return_heatmaps: bool) -> dict[str, np.ndarray]:
        from posecore.data._sample import collate_samples
        from posecore.engine._evaluation import crop_to_image, move_to_device

        k = self.meta.num_keypoints
        parts: dict[str, list[np.ndarray]] = {"keypoints": [], "scores": [], "warps": [], "heatmaps": []}
        rng = np.random.default_rng(0)
        for start in range(0, len(crops), self.batch_size):
            samples = []
            for image_index, box in crops[start:start + self.batch_size]:
                sample = {"image": arrays[image_index], "bbox": box, "keypoints": np.zeros((k, 2), np.float32),
                          "visibility": np.zeros(k, np.float32), "meta": self.meta, "image_id": image_index, "id": -1}
                samples.append(self.pipeline(sample, rng))
            batch = move_to_device(collate_samples(samples), self.device)
            with torch.inference_mode():
                prediction = self.model.predict(batch, flip_test=self.flip_test)
            parts["keypoints"].append(crop_to_image(prediction.keypoints.float(), batch["warp"]).float().cpu().numpy())
            parts["scores"].append(prediction.scores.float().cpu().numpy())
            parts["warps"].append(batch["warp"].cpu().numpy())
            if return_heatmaps and prediction.heatmaps is not None:
                parts["heatmaps"].append(prediction.heatmaps.float().cpu().numpy())
        return {key: np.concatenate(value) if value else None for key, value in parts.items()}  # type: ignore[misc]

    @staticmethod
    def _gather(outputs: dict[str, np.ndarray], crops: list[tuple[int, np.ndarray]], index: int,
                return_heatmaps: bool) -> PosePrediction:
        rows = [i for i, (image_index, _) in enumerate(crops) if image_index == index]
        heatmaps = outputs.get("heatmaps")
        return PosePrediction(
            keypoints=outputs["keypoints"][rows], scores=outputs["scores"][rows],
            boxes=np.stack([crops[i][1] for i in rows]) if rows else np.zeros((0, 4), np.float32),
            heatmaps=heatmaps[rows] if return_heatmaps and heatmaps is not None else None,
            warps=outputs["warps"][rows],
        )

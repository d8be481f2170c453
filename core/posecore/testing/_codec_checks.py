"""The codec contract check: encode then decode gives the keypoints back, within what the encoding can keep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from posecore._registry import Registries
from posecore.codecs._base import Codec
from posecore.config._spec import ComponentSpec

__all__ = ["check_codec", "round_trip_tolerance"]

_BATCH, _KEYPOINTS = 2, 16
#: Fewest keypoints the round trip must compare, so that a check comparing nothing cannot pass.
_MINIMUM_COMPARED = 4


def round_trip_tolerance(target: str, encoded: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """How far, in input pixels per axis ``(x, y)``, a decoded keypoint may lie from the encoded one,
    and which keypoints ``(B, K)`` the encoding keeps well enough to be held to it.

    * ``heatmaps`` ``(B, K, h, w)``: a Gaussian heatmap is drawn around a heatmap pixel (MSRA
      rounds the keypoint to the nearest one; UDP centres it exactly but samples it on that grid),
      so no decoder can promise better than half a heatmap pixel per axis: half a stride, taken as
      ``(input - 1) / (heatmap - 1)``, the larger of MSRA's and UDP's strides. Only keypoints whose
      Gaussian lies whole inside the map (nothing on its border) are held to it: a truncated
      Gaussian biases every sub-pixel decoder (DARK-UDP misses by a heatmap pixel and more there).
    * ``keypoint_labels`` ``(B, K, 2)``: coordinates as fractions of the input, an exact linear
      map; only float32 rounding is lost, so 1e-3 px, for every keypoint.

    A codec whose targets are of another kind is outside this check until its tolerance is stated
    here; the error says so.
    """
    width, height = input_size
    if target == "heatmaps":
        map_height, map_width = encoded.shape[-2:]
        border = np.concatenate([encoded[..., 0, :], encoded[..., -1, :], encoded[..., :, 0], encoded[..., :, -1]], -1)
        whole = ~np.any(border != 0, axis=-1)
        return 0.5 * np.array([(width - 1) / max(map_width - 1, 1), (height - 1) / max(map_height - 1, 1)]), whole
    if target == "keypoint_labels":
        return np.array([1e-3, 1e-3]), np.ones(encoded.shape[:-1], bool)
    raise AssertionError(f"the codec round-trip check knows targets 'heatmaps' and 'keypoint_labels'; "
                         f"got {target!r}: state its tolerance in posecore.testing's codec check")


def check_codec(registries: Registries, name: str, workdir: Path) -> None:
    """Builds from its example; encodes a batch of keypoints inside the crop into ``keypoint_weights``
    (0 where unlabelled) and one target; decoding that target gives the labelled keypoints back within
    the tolerance of its kind (:func:`round_trip_tolerance`)."""
    kwargs = registries.codecs.get(name).example_kwargs(workdir)
    codec = registries.codecs.build(ComponentSpec(name, kwargs))
    assert isinstance(codec, Codec), f"codec {name!r} must have input_size, encode, decode and flip_back"
    width, height = codec.input_size
    keypoints = np.random.default_rng(0).uniform(0.1, 0.9, (_BATCH, _KEYPOINTS, 2)) * (width - 1, height - 1)
    visibility = np.ones((_BATCH, _KEYPOINTS), np.float32)
    visibility[:, -1] = 0.0  # one unlabelled keypoint: no weight, and not compared
    targets = codec.encode(keypoints.astype(np.float32), visibility)
    weights = np.asarray(targets.get("keypoint_weights"))
    assert weights.shape == (_BATCH, _KEYPOINTS), f"codec {name!r}: encode must give keypoint_weights (B, K); got {weights.shape}"
    assert np.all(weights[:, -1] == 0), f"codec {name!r}: keypoint_weights must be 0 where visibility is 0"
    outputs = [key for key in targets if key != "keypoint_weights"]
    assert len(outputs) == 1, f"codec {name!r}: encode must give keypoint_weights and one target for decode; got {list(targets)}"
    encoded = np.asarray(targets[outputs[0]])
    decoded, scores = codec.decode(torch.from_numpy(encoded))
    assert tuple(decoded.shape) == (_BATCH, _KEYPOINTS, 2), f"codec {name!r}: decode gave keypoints {tuple(decoded.shape)}"
    assert tuple(scores.shape) == (_BATCH, _KEYPOINTS), f"codec {name!r}: decode gave scores {tuple(scores.shape)}"
    tolerance, kept = round_trip_tolerance(outputs[0], encoded, (width, height))
    compared = kept & (visibility > 0)
    assert compared.sum() >= _MINIMUM_COMPARED, (
        f"codec {name!r}: only {int(compared.sum())} keypoints of its example can be held to the round trip; give the "
        f"example a target large enough (heatmaps: a whole Gaussian must fit inside the map)")
    error = np.abs(decoded.double().numpy() - keypoints)[compared]
    worst = error.max(axis=0)
    assert np.all(worst <= tolerance), (
        f"codec {name!r}: encode -> decode moved keypoints by up to {worst.round(3).tolist()} px (x, y); the "
        f"{outputs[0]!r} round trip must stay within {tolerance.round(3).tolist()} px"
    )

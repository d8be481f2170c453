"""The two loss functions PoseBH's terms are made of.

* :func:`joints_mse`: mmpose 0.x's ``JointsMSELoss`` with target weights, which multiplies *both*
  prediction and target by the weight before the squared error, so a weight ``w`` scales a
  keypoint's error by ``w^2``. For the 0/1 weights of ground truth that is the core's
  ``keypoint_mse``; PoseBH's self-supervision weights pseudo-labels by a confidence in (0, 1),
  where the square matters, so the plugin keeps the original form.
* :func:`prototype_contrast`: ProtoSeg's pixel-prototype contrast: cross-entropy over the
  ``|cos|`` logits (PPC) plus the squared distance of the target logit from 1 (PPD), weighted
  ``weight * (ppc_weight * PPC + ppd_weight * PPD)`` (1.25e-5, 0.01, 0.001 in every PoseBH config).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

__all__ = ["PrototypeLossWeights", "joints_mse", "prototype_contrast"]


def joints_mse(output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """mean over (B, K) of ``mean_HW ((output - target) * w)^2``; output, target (B, K, H, W), weight (B, K); fp32."""
    error = (output.float() - target.float()).pow(2).mean(dim=(2, 3))
    if weight is not None:
        error = error * weight.float().pow(2)
    return error.mean()


@attrs.frozen
class PrototypeLossWeights:
    """``weight * (ppc * cross-entropy + ppd * (1 - target logit)^2)``."""

    weight: float = 1.25e-5
    ppc: float = 0.01
    ppd: float = 0.001


def prototype_contrast(logits: torch.Tensor, targets: torch.Tensor,
                       weights: PrototypeLossWeights = PrototypeLossWeights()) -> torch.Tensor:
    """logits (N, K M) in [0, 1], targets (N,) with -1 ignored -> the weighted PPC + PPD scalar."""
    valid = targets >= 0
    if not bool(valid.any()):
        return logits.sum() * 0.0
    logits, targets = logits[valid].float(), targets[valid].long()
    ppc = F.cross_entropy(logits, targets)
    ppd = (1.0 - logits.gather(1, targets[:, None])).pow(2).mean()
    return weights.weight * (weights.ppc * ppc + weights.ppd * ppd)

"""Models: the :class:`PoseModel` contract and the core's general components."""

from posecore.models.base import Batch, PoseModel, PoseResult

__all__ = ["Batch", "PoseModel", "PoseResult"]

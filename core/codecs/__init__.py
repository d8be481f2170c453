"""Heatmap decoding primitives shared by heads and codecs."""

from posecore.codecs.heatmap import heatmap_argmax

__all__ = ["heatmap_argmax"]

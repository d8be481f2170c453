"""posecore-posebh: PoseBH: multi-dataset ViTPose++ training with keypoint prototypes (CVPR 2025)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("posecore-posebh")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

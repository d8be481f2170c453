"""posecore-vlpose: VLPose: language-vision tuning of ViTPose (COCO -> Human-Art)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("posecore-vlpose")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

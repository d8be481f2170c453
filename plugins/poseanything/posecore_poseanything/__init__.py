"""posecore-poseanything: Pose Anything: category-agnostic pose with a graph transformer decoder (ECCV 2024)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("posecore-poseanything")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

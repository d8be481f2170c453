"""posecore-hevitpose: HEViTPose: an efficient vision transformer for human pose."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("posecore-hevitpose")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

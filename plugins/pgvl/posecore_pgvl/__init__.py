"""posecore-pgvl: PGVL, parse-graph visual-language interaction for pose estimation (arXiv 2509.07385)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("posecore-pgvl")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

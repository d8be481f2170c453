"""posecore-pgvl: Parse-graph visual-language fusion (PGVL): CLIP text + body-part parse graph on a ViT."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("posecore-pgvl")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

"""The ``posecore`` command line. Importing it is cheap; each command imports what it needs."""

from posecore._cli.main import main

__all__ = ["main"]

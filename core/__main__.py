"""``python -m posecore`` runs the CLI."""

import sys

from posecore.cli import main

sys.exit(main())

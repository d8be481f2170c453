"""``python -m posecore`` runs the CLI."""

import sys

from posecore._cli import main

sys.exit(main())

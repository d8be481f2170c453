"""Commands whose engine lands with a later issue: they validate their config, then say so."""

from __future__ import annotations

import argparse
import sys

from posecore.cli.common import resolve_config


def run_command(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    print(
        f"posecore {args.command}: config {config.name!r} is valid, but the training and inference "
        "engine is not part of this posecore version yet (it is tracked as the 'Engine' issue). "
        "'posecore config', 'flops', 'plugins', 'convert' and 'doctor' work now.",
        file=sys.stderr,
    )
    return 2

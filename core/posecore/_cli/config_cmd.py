"""``posecore config``: print (or write) a fully resolved experiment config."""

from __future__ import annotations

import argparse

from posecore._cli.common import resolve_config
from posecore.config import dump_config, save_config


def config_command(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    if args.output:
        path = save_config(config, args.output)
        print(f"wrote {path}")
    else:
        print(dump_config(config), end="")
    return 0

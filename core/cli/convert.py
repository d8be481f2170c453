"""``posecore convert``: foreign checkpoint -> posecore checkpoint, with a key report."""

from __future__ import annotations

import argparse

from posecore.cli.common import host_from_args
from posecore.errors import CheckpointError, ConfigError


def convert_command(args: argparse.Namespace) -> int:
    from posecore.checkpoint import compare_state_dicts, extract_state_dict, load_checkpoint, save_checkpoint

    host = host_from_args(args)
    converters = host.registries.converters
    if not args.converter:
        raise ConfigError(f"choose a converter with --converter; available: {', '.join(converters.names()) or 'none'}")
    convert = converters.get(args.converter).resolve()
    state_dict = convert(extract_state_dict(load_checkpoint(args.input), source=args.input))
    if args.preset:
        model = host.registries.models.build(host.registries.presets.get(args.preset).load().model)
        report = compare_state_dicts(model.state_dict(), state_dict)
        print(report.format())
        if args.strict and not report.clean:
            raise CheckpointError(f"{args.input} does not fit preset {args.preset!r} (--strict); nothing written")
    path = save_checkpoint({"state_dict": state_dict, "meta": {"converter": args.converter, "source": args.input}},
                           args.output)
    print(f"wrote {path} ({len(state_dict)} tensors)")
    return 0

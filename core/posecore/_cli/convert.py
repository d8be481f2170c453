"""``posecore convert``: foreign checkpoint -> posecore checkpoint, with a key report.

Without ``--converter`` the layout is recognised by its key prefixes (converters that can tell,
like the ViTPose ones); with ``--preset`` the result is checked against that preset's model, and
when several converters recognise the file the best fit wins.
"""

from __future__ import annotations

import argparse

from posecore._cli.common import host_from_args
from posecore._errors import CheckpointError, ConfigError


def convert_command(args: argparse.Namespace) -> int:
    from posecore._checkpoint import prepare_weights, save_checkpoint
    from posecore.engine._builder import build_model

    if args.strict and not args.preset:
        raise ConfigError("--strict checks the result against a model: give the model with --preset")
    host = host_from_args(args)
    registries = host.registries
    if args.converter:
        registries.converters.get(args.converter)  # an unknown name fails before the file is read
    model = build_model(registries.presets.get(args.preset).load(), registries) if args.preset else None
    name, converted, report = prepare_weights(model, args.input, args.converter, registries=registries)
    if not args.converter:
        print(f"layout: {f'converter {name!r}' if name else 'posecore (no conversion needed)'}")
    if report is not None:
        print(report.format())
        if args.strict and not report.clean:
            raise CheckpointError(f"{args.input} does not fit preset {args.preset!r} (--strict); nothing written")
    else:
        for key, reason in converted.dropped.items():
            print(f"dropped {key}: {reason}")
    path = save_checkpoint({"state_dict": dict(converted), "meta": {"converter": name, "source": args.input}},
                           args.output)
    print(f"wrote {path} ({len(converted)} tensors)")
    return 0

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
    from posecore._checkpoint import (
        compare_state_dicts,
        convert_state_dict,
        extract_state_dict,
        fit_model_to,
        load_checkpoint,
        save_checkpoint,
    )

    if args.strict and not args.preset:
        raise ConfigError("--strict checks the result against a model: give the model with --preset")
    host = host_from_args(args)
    registries = host.registries
    if args.converter:
        registries.converters.get(args.converter)  # an unknown name fails before the file is read
    state_dict = extract_state_dict(load_checkpoint(args.input), source=args.input)
    model, expected = None, None
    if args.preset:
        model = registries.models.build(registries.presets.get(args.preset).load().model)
        expected = model.state_dict()
    name, converted = convert_state_dict(state_dict, converter=args.converter, expected=expected,
                                         registries=registries, source=args.input)
    if not args.converter:
        print(f"layout: {f'converter {name!r}' if name else 'posecore (no conversion needed)'}")
    if model is not None:
        fit_model_to(model, converted)  # sizes the file decides (PoseModel.fit_to_state_dict)
        expected = model.state_dict()
        report = compare_state_dicts(expected, converted, converter=name)
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

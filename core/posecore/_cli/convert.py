"""``posecore convert``: foreign checkpoint -> posecore checkpoint, with a key report.

Without ``--converter`` the layout is recognised by its key prefixes (converters that can tell,
like the ViTPose ones); with ``--preset`` the result is checked against that preset's model, and
when several converters recognise the file the best fit wins.

A run trained with ``--fsdp`` (its folder, its ``checkpoints/`` or ``checkpoints/latest.json``)
becomes one posecore checkpoint of its whole weights and config, which ``eval``, ``predict``,
``export`` and ``Pose`` take like a ``best.pth``.
"""

from __future__ import annotations

import argparse

from posecore._cli.common import host_from_args
from posecore._errors import CheckpointError, ConfigError


def convert_command(args: argparse.Namespace) -> int:
    from posecore._checkpoint import prepare_weights, save_checkpoint
    from posecore.engine._builder import build_model
    from posecore.engine._sharding import is_sharded_run

    if is_sharded_run(args.input):
        return _join_shards(args)

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


def _join_shards(args: argparse.Namespace) -> int:
    """A sharded training checkpoint as one file: the whole weights, the run's config and progress."""
    from posecore._checkpoint import save_checkpoint
    from posecore.engine._sharding import load_sharded_train_state

    if args.converter or args.preset:
        raise ConfigError(f"{args.input} is a posecore sharded checkpoint: it needs no --converter or --preset")
    state = load_sharded_train_state(args.input)
    weights = state["model"]
    path = save_checkpoint({"state_dict": weights, "meta": {
        "config": state["config"], "epoch": state["epoch"], "optimizer_steps": state["optimizer_steps"],
        "source": str(args.input)}}, args.output)
    print(f"joined {state['world_size']} shards of {args.input} (epoch {state['epoch']}, optimiser step "
          f"{state['optimizer_steps']})")
    print(f"wrote {path} ({len(weights)} tensors)")
    return 0

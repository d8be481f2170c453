"""``posecore compare [RUN_OR_CHECKPOINT ...]``: models measured under one protocol, side by side
(see :mod:`posecore._compare`). Writes ``compare.md``, ``compare.csv``, ``compare.json`` and
``compare.png`` into ``--output`` (default ``runs/compare-<time>``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["add_compare_arguments", "compare_command"]


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``compare`` options (imports nothing heavy: ``--help`` stays fast)."""
    parser.add_argument("models", nargs="*", metavar="RUN_OR_CHECKPOINT",
                        help="run directories (their checkpoints/best.pth) or checkpoint files; the first one's config "
                             "gives the protocol. Default: the finished runs under --runs evaluated on the same data")
    parser.add_argument("--runs", default="runs", metavar="DIR", help="where to find runs when none is named (default: runs)")
    parser.add_argument("--split", choices=("val", "test"), default="val", help="which datasets of the protocol's config")
    parser.add_argument("--data", help="root that relative dataset paths are read from (default: the working directory)")
    parser.add_argument("--set", dest="protocol_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change the protocol (the first model's config), e.g. eval.flip_test=false or "
                             "data.val.0.bbox_file=person_detections.json (repeatable)")
    parser.add_argument("--preset-for-foreign", dest="presets_for_foreign", action="append", default=[],
                        metavar="[CHECKPOINT=]PRESET",
                        help="the preset of a checkpoint that carries no posecore config (original ViTPose, mmpose, "
                             "Hugging Face); a plain PRESET is for every such checkpoint (repeatable)")
    parser.add_argument("--device", help="cpu, cuda, ... for evaluation and timing (default: cuda when available)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads torch uses (default: torch's choice); 1 gives steady CPU timings on a busy "
                             "machine, where threads wait on each other")
    parser.add_argument("--batch-sizes", default="1,32", metavar="N,M",
                        help="batch sizes to time (default: 1,32); peak memory is measured at the largest")
    parser.add_argument("--min-time", type=float, default=2.0, metavar="S",
                        help="seconds to time each model and batch size at least (default: 2)")
    parser.add_argument("--convention", choices=("operators", "modules"), default="operators",
                        help="how GFLOPs are counted, as in posecore flops (default: operators)")
    parser.add_argument("--output", help="output folder (default: runs/compare-<time>)")


def compare_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from posecore._cli.common import host_from_args
    from posecore._compare import (
        compare,
        finished_runs_on_the_same_data,
        from_arguments,
        print_comparison,
        write_outputs,
    )
    from posecore.config import apply_overrides

    host = host_from_args(args)
    batch_sizes = _batch_sizes(args.batch_sizes)
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, args.threads))
    if args.models:
        candidates, foreign_preset = from_arguments(args.models, args.presets_for_foreign)
        skipped = []
    else:
        candidates, skipped = finished_runs_on_the_same_data(Path(args.runs), args.split)
        foreign_preset = None
    console = Console(stderr=True)
    comparison = compare(
        candidates, registries=host.registries, split=args.split, data_root=args.data, device=args.device,
        batch_sizes=batch_sizes, min_time=args.min_time, convention=args.convention, foreign_preset=foreign_preset,
        skipped=skipped, strict=bool(args.models),
        overrides=(lambda config: apply_overrides(config, args.protocol_overrides)) if args.protocol_overrides else None,
        on_model=lambda label: console.print(f"posecore compare: measuring {label}", highlight=False),
    )
    output = Path(args.output or Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    paths = write_outputs(output, comparison)
    print_comparison(Console(), comparison)
    print(f"posecore compare: {', '.join(str(path) for path in paths)}")
    return 0


def _batch_sizes(text: str) -> tuple[int, ...]:
    from posecore._errors import ConfigError

    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--batch-sizes {text!r}: give positive whole numbers separated by commas, e.g. 1,32")
    return sizes

"""Argument parsing and dispatch for ``posecore <command>``.

The parser is built without importing torch or any plugin so that ``posecore --help`` is fast.
Commands whose options plugins may extend are parsed twice: once to learn which plugins to load,
then again after the plugins' ``posecore_cli_arguments`` hooks added their options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from posecore._errors import PosecoreError

__all__ = ["build_parser", "main"]

# command -> (handler "module:function", one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "plugins": ("posecore._cli.info:plugins_command", "list installed plugins, their versions and components"),
    "config": ("posecore._cli.config_cmd:config_command", "print a preset's fully resolved config as YAML"),
    "run": ("posecore._cli.train:run_command", "train and evaluate a plugin's preset (default: the embedded demo)"),
    "train": ("posecore._cli.train:run_command", "train a preset or config file"),
    "eval": ("posecore._cli.evaluate:eval_command", "evaluate a checkpoint, or a predictions file (--gt/--pred)"),
    "predict": ("posecore._cli.predict:predict_command", "predict keypoints on images, folders or videos"),
    "export": ("posecore._cli.export:export_command", "export a model to ONNX (image -> heatmaps)"),
    "convert": ("posecore._cli.convert:convert_command", "convert a foreign checkpoint with a plugin's converter"),
    "flops": ("posecore._cli.flops:flops_command", "params and GFLOPs of presets' models"),
    "compare": ("posecore._cli.compare:compare_command",
                "evaluate, count and time models under one protocol, side by side (default: the runs under runs/)"),
    "doctor": ("posecore._cli.info:doctor_command", "python, torch, devices, accelerate and plugin report"),
    "app": ("posecore._cli.app:app_command", "serve the browser app on 127.0.0.1 (pip install 'posecore[app]')"),
}
#: Commands whose parser plugins may extend through ``posecore_cli_arguments``.
EXTENSIBLE = ("run", "train", "eval", "predict")


def _plugin_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("plugin loading")
    group.add_argument(
        "-p", "--plugin", dest="plugins", action="append", default=[], metavar="NAME",
        help="load plugin NAME even with autoload off, and use it for run/train/predict; "
        "'no:NAME' blocks it (repeatable)",
    )
    group.add_argument("--strict-plugins", action="store_true", help="fail if any plugin is broken")
    return common


def _add_command_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "plugins":
        parser.add_argument("--json", action="store_true", help="print one JSON document")
        parser.add_argument("-v", "--verbose", action="store_true", help="list components and presets with published figures")
    elif name == "config":
        parser.add_argument("--preset", help="preset name (default: the selected plugin's default preset)")
        parser.add_argument("--config", dest="config_file", help="an experiment YAML file instead of a preset")
        parser.add_argument("--output", "-o", help="write the YAML to this file instead of printing it")
        parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. train.epochs=5")
    elif name == "predict":
        from posecore._cli.predict import add_predict_arguments

        parser.add_argument("--preset", help="preset name (default: the checkpoint's own config)")
        parser.add_argument("--output", help="output folder (default: runs/predict-<time>)")
        add_predict_arguments(parser)
    elif name in EXTENSIBLE:
        parser.add_argument("--preset", help="preset name (default: the plugin's default preset)")
        parser.add_argument("--config", dest="config_file", help="an experiment YAML file instead of a preset")
        parser.add_argument("--data", help="root that relative dataset paths are read from (default: the working "
                            "directory; the default presets need no data)")
        parser.add_argument("--output", help="run directory (default: runs/<preset>-<time>)")
        parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
        if name in ("run", "train"):
            parser.add_argument("--epochs", type=int, help="shorthand for train.epochs=N (0: evaluate the untrained model)")
            parser.add_argument("--resume", metavar="RUN", help="continue a run directory (or its checkpoints/latest.pth) "
                                "with its own config; KEY=VALUE may change epochs, the learning rate, intervals")
            parser.add_argument("--overwrite", action="store_true",
                                help="start over in an --output folder that holds a run (deletes that run)")
            from posecore._cli.launch import add_launch_arguments

            add_launch_arguments(parser)
            parser.add_argument("--quiet", action="store_true", help="no progress output")
        if name == "eval":
            group = parser.add_argument_group("evaluating a model")
            group.add_argument("--checkpoint", help="weights to evaluate (a posecore best.pth carries its config)")
            group.add_argument("--split", choices=("val", "test"), default="val", help="which datasets of the config")
            group.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
            group.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                               help="bf16: autocast, faster on GPUs and on CPUs with AMX; fp16: CUDA only")
            group.add_argument("--results", metavar="FILE",
                               help="also write the predictions as a COCO keypoint results file, rescored and OKS-NMSed "
                                    "as coco_ap ranks them (what the COCO test-dev server takes); several datasets "
                                    "get FILE's name with their label")
            from posecore._cli.evaluate import add_eval_arguments

            add_eval_arguments(parser)
    elif name == "convert":
        parser.add_argument("--converter", "-c", help="converter name (posecore plugins -v lists them; default: recognised from the file's keys)")
        parser.add_argument("--preset", help="check the result against this preset's model and print a key report")
        parser.add_argument("--strict", action="store_true", help="fail unless every key matches the preset's model")
        parser.add_argument("input", help="foreign checkpoint file, or a run trained with --fsdp (its sharded checkpoint "
                            "becomes one file)")
        parser.add_argument("output", help="where to write the posecore checkpoint")
    elif name == "export":
        parser.add_argument("--format", choices=("onnx",), default="onnx", help="export format")
        parser.add_argument("--checkpoint", help="weights (a posecore best.pth carries its config)")
        parser.add_argument("--preset", help="preset of a foreign checkpoint")
        parser.add_argument("--config", dest="config_file", help="an experiment YAML file instead of a preset")
        parser.add_argument("--output", "-o", help="the .onnx file (default: <preset>.onnx)")
        parser.add_argument("--opset", type=int, default=18, help="ONNX opset version")
    elif name == "flops":
        parser.add_argument("--preset", dest="presets", action="append", metavar="NAME",
                            help="preset(s) to measure (default: every preset, or the selected plugin's)")
        parser.add_argument("--convention", choices=("operators", "modules"), default="operators",
                            help="operators: every matrix product and convolution (default); modules: only those "
                                 "inside leaf modules, as mmcv's get_model_complexity_info counts (attention's "
                                 "QK^T and AV left out), the convention of e.g. PVTv2's and HEViTPose's papers")
        parser.add_argument("--json", action="store_true", help="print one JSON document")
    elif name == "compare":
        from posecore._cli.compare import add_compare_arguments

        add_compare_arguments(parser)
    elif name == "doctor":
        parser.add_argument("--json", action="store_true", help="print one JSON document")
    elif name == "app":
        from posecore._cli.app import add_app_arguments

        add_app_arguments(parser)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="posecore",
        description="2D pose estimation with methods as plugins. "
        "Run 'posecore plugins' to see what is installed.",
        epilog="Environment: POSECORE_DISABLE_PLUGIN_AUTOLOAD=1, POSECORE_DISABLED_PLUGINS=a,b, "
        "POSECORE_STRICT_PLUGINS=1.",
    )
    parser.add_argument("--version", action="store_true", help="print posecore's and the plugins' versions")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _plugin_options()
    parsers = {}
    for name, (handler, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        command.set_defaults(handler=handler)
        _add_command_arguments(name, command)
        parsers[name] = command
    return parser, parsers


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``posecore`` script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from posecore._malloc import tune_cpu_allocator

    tune_cpu_allocator()  # before torch allocates anything: see posecore._malloc
    parser, parsers = build_parser()
    command = next((token for token in argv if not token.startswith("-")), None)
    try:
        if command in EXTENSIBLE:
            # Load plugins before the full parse so their options are accepted and listed by --help.
            from posecore._cli.common import host_from_args

            early, _ = _plugin_options().parse_known_args(argv)
            core_options = {action.dest for action in parsers[command]._actions}
            host_from_args(early).add_cli_arguments(command, parsers[command])
            args = parser.parse_args(argv)
            args._host = early._host
            args._plugin_options = tuple(action.dest for action in parsers[command]._actions
                                         if action.dest not in core_options)
        else:
            args = parser.parse_args(argv)
        if args.version:
            from posecore._cli.info import version_command

            return version_command(args)
        if args.command is None:
            parser.print_help()
            return 0
        from posecore._components import resolve_reference

        status = int(resolve_reference(args.handler)(args) or 0)
        sys.stdout.flush()  # a closed reader (``| head -1``) shows here, where it is handled
        return status
    except BrokenPipeError:
        return _reader_went_away()
    except PosecoreError as exc:
        print(f"{' '.join(filter(None, ('posecore', command)))}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _reader_went_away() -> int:
    """The output's reader closed early (``posecore eval --json | head -1``): stop quietly, as Unix
    tools do, with the status a process killed by SIGPIPE has."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail loudly either
    return 128 + 13

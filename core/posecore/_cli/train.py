"""``posecore run`` / ``train``: train and evaluate a preset or config file into a run directory.

``--num-processes N`` relaunches the command under ``torch.distributed.run`` (what
``accelerate launch`` does too), so one flag gives multi-GPU training, or several CPU processes
with the gloo backend where there is no GPU. Under ``accelerate launch`` or ``torchrun`` the flag
is not needed: the processes find each other through the environment.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from posecore._cli.common import resolve_config
from posecore.config import ExperimentConfig, apply_overrides

__all__ = ["default_output_dir", "eval_checkpoint_command", "export_command", "run_command"]


def default_output_dir(config: ExperimentConfig) -> Path:
    """``runs/<preset>-<YYYYmmdd-HHMMSS>`` under the working directory."""
    return Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _with_epochs(config: ExperimentConfig, epochs: int | None) -> ExperimentConfig:
    return config if epochs is None else apply_overrides(config, [f"train.epochs={epochs}"])


def run_command(args: argparse.Namespace) -> int:
    config = _with_epochs(resolve_config(args), args.epochs)
    output = Path(args.output) if args.output else (Path(args.resume) if args.resume and Path(args.resume).is_dir()
                                                     else default_output_dir(config))
    if args.num_processes > 1 and "WORLD_SIZE" not in os.environ:
        return _relaunch(args.num_processes, output)
    from posecore.engine._trainer import Trainer

    try:
        result = Trainer(config, output, resume=args.resume, data_root=args.data, quiet=args.quiet).fit()
    finally:
        _leave_process_group()
    value = result.main_value
    if value is not None and int(os.environ.get("RANK", "0")) == 0:
        print(f"{config.name}: {result.main_metric} {value:.4f} (run directory {output})")
    return 0


def _leave_process_group() -> None:
    """Tear the process group down before the interpreter exits: gloo's threads killed during
    interpreter shutdown can abort a finished process (SIGABRT) and fail a good run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _relaunch(num_processes: int, output: Path) -> int:
    """Run this same command line in ``num_processes`` processes that share ``output``."""
    argv = _without_option(sys.argv[1:], "--num-processes")
    argv = _without_option(argv, "--output") + ["--output", str(output)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={num_processes}",
               "-m", "posecore", *argv]
    print(f"posecore: launching {num_processes} processes", file=sys.stderr)
    return subprocess.call(command)


def _without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE``."""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == option:
            skip = True
        elif not token.startswith(option + "="):
            kept.append(token)
    return kept


def eval_checkpoint_command(args: argparse.Namespace) -> int:
    """``posecore eval --checkpoint C``: a model's metrics on its config's val (or test) datasets."""
    from posecore._api import load_model
    from posecore._cli.common import host_from_args, print_json, selected_plugin
    from posecore.engine._builder import build_eval_sets
    from posecore.engine._evaluation import evaluate, merge_gathered, predict_dataset
    from posecore.engine._reporting import print_table
    from posecore._errors import ConfigError

    host = host_from_args(args)
    config = resolve_config(args) if (args.preset or args.config_file) else None
    if args.checkpoint is None and config is None:
        raise ConfigError("give --checkpoint FILE (and --preset for a foreign checkpoint), or --gt and --pred to score "
                          "a predictions file")
    model, config, _ = load_model(args.checkpoint, config=config, plugin=selected_plugin(args), device=args.device)
    if args.overrides and not (args.preset or args.config_file):
        config = apply_overrides(config, args.overrides)
    sets = build_eval_sets(config, host.registries, getattr(model, "codec", None), args.split, args.data)
    if not sets:
        raise ConfigError(f"config {config.name!r} has no data.{args.split} datasets to evaluate on")
    unscored = [eval_set.label for eval_set in sets if not eval_set.metrics]
    if unscored and not args.results:
        raise ConfigError(f"{', '.join(unscored)}: no ground truth to score against (an image-info file with detector "
                          "boxes, as COCO test-dev); give --results FILE to write the predictions for the server")
    tables = {}
    for eval_set in sets:
        results = merge_gathered(predict_dataset(model, eval_set.dataset, batch_size=config.data.eval_batch_size,
                                                 num_workers=config.data.num_workers,
                                                 device=next(model.parameters()).device,
                                                 flip_test=config.eval.flip_test))
        if args.results:
            path = _results_path(Path(args.results), eval_set.label, len(sets))
            _write_coco_results(path, results, config, eval_set.dataset.meta)
            print(f"posecore eval: {eval_set.label}: {len(results)} instances predicted; COCO results in {path}")
        if eval_set.metrics:
            tables[eval_set.label] = evaluate(results, eval_set.metrics)
    if not tables:
        return 0
    if args.json:
        print_json({"checkpoint": args.checkpoint, "config": config.name, "main_metric": config.eval.main_metric,
                    "metrics": tables})
    else:
        from rich.console import Console

        print_table(Console(), f"{config.name}: {args.checkpoint or 'random weights'}", tables)
    return 0


def _results_path(path: Path, label: str, count: int) -> Path:
    return path if count == 1 else path.with_name(f"{path.stem}.{label}{path.suffix}")


def _write_coco_results(path: Path, results: list, config: ExperimentConfig, meta: Any) -> None:
    """The results file: rescored and OKS-NMSed with the options of the config's ``coco_ap``
    metric (its defaults when there is none) and the keypoint set's OKS sigmas."""
    import json

    import numpy as np

    from posecore.config import ComponentSpec, atomic_write_text
    from posecore._errors import ConfigError
    from posecore.metrics._coco_ap import coco_results

    if not meta.sigmas:
        raise ConfigError(f"--results: keypoint set {meta.name!r} has no OKS sigmas, which the OKS-NMS of a COCO "
                          "results file needs; add 'sigmas' to its metainfo")
    specs = [ComponentSpec.parse(metric) for metric in config.eval.metrics]
    options = next((spec.args for spec in specs if spec.type == "coco_ap"), {})
    chosen = {key: options[key] for key in ("score_mode", "keypoint_score_thr", "nms_thr") if key in options}
    rows = coco_results(results, np.asarray(meta.sigmas), **chosen)
    atomic_write_text(path, json.dumps(rows))


def export_command(args: argparse.Namespace) -> int:
    """``posecore export --format onnx``: the model's image-to-heatmaps graph, checked with ONNX Runtime."""
    from posecore._api import load_model
    from posecore._cli.common import host_from_args, selected_plugin
    from posecore._export import export_onnx

    host_from_args(args)
    config = resolve_config(args) if (args.preset or args.config_file) else None
    model, config, _ = load_model(args.checkpoint, config=config, plugin=selected_plugin(args), device="cpu")
    output = Path(args.output or f"{config.name}.onnx")
    export_onnx(model, output, tuple(config.data.input_size), opset=args.opset)
    print(f"posecore export: wrote {output} (input: normalised float images (B, 3, {config.data.input_size[1]}, "
          f"{config.data.input_size[0]}); output: heatmaps; decode with the {config.codec.type if config.codec else ''} "
          "codec)")
    return 0

"""``posecore eval --checkpoint C``: a model's metrics on its config's val (or test) datasets, and
the COCO results file ``--results`` writes (what the COCO test-dev server scores)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from posecore._cli.common import resolve_config
from posecore.config import ExperimentConfig, apply_overrides

__all__ = ["eval_checkpoint_command"]


def eval_checkpoint_command(args: argparse.Namespace) -> int:
    """``posecore eval --checkpoint C``: a model's metrics on its config's val (or test) datasets."""
    from posecore._api import load_model
    from posecore._cli.common import host_from_args, print_json, selected_plugin
    from posecore._errors import ConfigError
    from posecore.engine._builder import build_eval_sets
    from posecore.engine._evaluation import evaluate, predict_as_configured
    from posecore.engine._reporting import print_table

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
        results = predict_as_configured(model, eval_set.dataset, config, args.precision)
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

    from posecore._errors import ConfigError
    from posecore.config import ComponentSpec, atomic_write_text
    from posecore.metrics._coco_ap import coco_results

    if not meta.sigmas:
        raise ConfigError(f"--results: keypoint set {meta.name!r} has no OKS sigmas, which the OKS-NMS of a COCO "
                          "results file needs; add 'sigmas' to its metainfo")
    specs = [ComponentSpec.parse(metric) for metric in config.eval.metrics]
    options = next((spec.args for spec in specs if spec.type == "coco_ap"), {})
    chosen = {key: options[key] for key in ("score_mode", "keypoint_score_thr", "nms_thr", "nms_mode") if key in options}
    rows = coco_results(results, np.asarray(meta.sigmas), **chosen)
    atomic_write_text(path, json.dumps(rows))

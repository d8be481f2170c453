"""``posecore eval --gt FILE --pred FILE --metric NAME``: score a predictions file.

Without ``--gt``/``--pred`` the command evaluates a model checkpoint on its config's datasets
instead (:func:`posecore._cli.evaluate_model.eval_checkpoint_command`).

Any registered metric can be named. A metric whose factory takes ``ann_file`` (``coco_ap``) gets
the ground-truth path and the predictions as written (COCO results: their ``score``, no NMS,
unless ``--option`` says otherwise); the other metrics get each prediction paired with its
ground-truth instance (by ``id``, or by ``image_id`` when the image has one instance). An MPII
``.mat`` ground truth pairs predictions with its columns in order.
"""

from __future__ import annotations

import argparse
import inspect
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["add_eval_arguments", "eval_command", "evaluate_files"]


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``eval`` options for scoring files (imports nothing heavy: ``--help`` stays fast)."""
    group = parser.add_argument_group("scoring a predictions file")
    group.add_argument("--gt", metavar="FILE", help="ground truth: a COCO keypoint json, or an MPII gt .mat (pckh)")
    group.add_argument("--pred", metavar="FILE", help="predictions: COCO results json ([{image_id, keypoints, score}])")
    group.add_argument(
        "--metric",
        dest="metrics",
        action="append",
        default=[],
        metavar="NAME",
        help="metric(s): coco_ap, pckh, pck, auc, epe, nme, or a plugin's; repeatable or comma-separated "
        "(default: pckh for a .mat ground truth, else coco_ap)",
    )
    group.add_argument(
        "--metainfo", help="keypoint set name (coco, crowdpose, aic, ap10k, ...) or metainfo file, for sigmas"
    )
    group.add_argument(
        "--option",
        "-O",
        dest="metric_options",
        action="append",
        default=[],
        metavar="[METRIC.]KEY=VALUE",
        help="a metric argument, e.g. use_area=false, thresholds=[0.05,0.2], pck.mean=instance (repeatable)",
    )
    group.add_argument("--json", action="store_true", help="print one JSON document of the metrics")


def eval_command(args: argparse.Namespace) -> int:
    if args.gt is None and args.pred is None:
        from posecore._cli.evaluate_model import eval_checkpoint_command as run_command

        return run_command(args)
    from posecore._errors import ConfigError

    if args.gt is None or args.pred is None:
        missing = "--gt" if args.gt is None else "--pred"
        raise ConfigError(f"{missing} is missing: scoring a predictions file needs both --gt FILE and --pred FILE")
    from posecore._cli.common import host_from_args

    host = host_from_args(args)
    names = [n.strip() for value in args.metrics for n in value.split(",") if n.strip()]
    if not names:
        names = ["pckh" if Path(args.gt).suffix.lower() == ".mat" else "coco_ap"]
    tables = evaluate_files(
        args.gt, args.pred, names, metainfo=args.metainfo, options=args.metric_options, registries=host.registries
    )
    if args.json:
        from posecore._cli.common import print_json

        print_json(
            {"gt": str(args.gt), "pred": str(args.pred), "metrics": {k: _json_table(t) for k, t in tables.items()}}
        )
    else:
        _print_tables(tables, args.gt, args.pred)
    return 0


def evaluate_files(
    gt: str | Path,
    pred: str | Path,
    metrics: list[str],
    *,
    metainfo: str | None = None,
    options: list[str] | None = None,
    registries: Any = None,
) -> dict[str, dict[str, float]]:
    """Score ``pred`` against ``gt`` with each named metric; ``{metric: result table}``."""
    from posecore._errors import ConfigError

    if registries is None:
        from posecore._plugins import get_host

        registries = get_host().registries
    registry = registries.metrics
    factories = {name: registry.get(name).resolve() for name in dict.fromkeys(metrics)}
    parameters = {name: _parameters(factory) for name, factory in factories.items()}
    scoped = _parse_options(options or [], parameters)
    gt, pred = str(gt), str(pred)
    is_mat = Path(gt).suffix.lower() == ".mat"
    if not Path(gt).is_file():
        raise ConfigError(f"ground-truth file not found: {gt}")
    tables: dict[str, dict[str, float]] = {}
    paired: list[Any] | None = None
    cache: dict[str, Any] = {}
    for name in factories:
        accepted = parameters[name]
        kwargs: dict[str, Any] = {}
        if metainfo is not None and "metainfo" in accepted:
            kwargs["metainfo"] = metainfo
        takes_file = "ann_file" in accepted
        if takes_file:
            if is_mat:
                raise ConfigError(
                    f"metric {name!r} scores COCO-style annotations; {gt} is an MPII .mat file (use --metric pckh, pck, "
                    "epe or auc for it)"
                )
            kwargs.update(_as_written_defaults(accepted, _predictions_json(pred, cache)))
            kwargs["ann_file"] = gt
        elif name == "pckh" and not is_mat:
            raise ConfigError(
                f"metric 'pckh' needs MPII head boxes: give the mpii_gt_val.mat-layout file (pos_gt_src, jnt_missing, "
                f"headboxes_src) as --gt instead of {gt}"
            )
        kwargs.update(scoped.get(name, {}))
        metric = registry.build({"type": name, **kwargs})
        if takes_file:
            from posecore.metrics import _results as results

            annotations = getattr(metric, "annotations", None)
            if annotations is None:
                annotations = results.load_coco_keypoint_annotations(gt)
            predictions = results.parse_coco_predictions(_predictions_json(pred, cache), annotations, pred)
            metric.update(results.predictions_to_instances(predictions))
        else:
            if paired is None:
                paired = _paired_instances(gt, pred, is_mat, cache)
            metric.update(paired)
        tables[name] = metric.compute()
    return tables


def _parameters(factory: Any) -> list[str]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    params = inspect.signature(target).parameters.values()
    return [p.name for p in params if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _predictions_json(pred: str, cache: dict[str, Any]) -> Any:
    """The parsed predictions file, read once however many metrics use it."""
    if "pred" not in cache:
        from posecore.metrics._results import read_json_file

        cache["pred"] = read_json_file(pred, "predictions")
    return cache["pred"]


def _as_written_defaults(accepted: list[str], data: Any) -> dict[str, Any]:
    """Score a results file as pycocotools would: its own score, no NMS, loadRes's area rule
    (the ``bbox`` of the results when the first one has one, else the keypoints' extent)."""
    defaults: dict[str, Any] = {}
    if "score_mode" in accepted:
        defaults["score_mode"] = "bbox"
    if "nms_thr" in accepted:
        defaults["nms_thr"] = None
    if "detection_area" in accepted:
        has_bbox = isinstance(data, list) and bool(data) and isinstance(data[0], Mapping) and bool(data[0].get("bbox"))
        defaults["detection_area"] = "bbox" if has_bbox else "keypoints"
    return defaults


def _paired_instances(gt: str, pred: str, is_mat: bool, cache: dict[str, Any]) -> list[Any]:
    from posecore.metrics import _results as results

    if is_mat:
        return results.load_mpii_predictions(pred, results.load_mpii_ground_truth(gt))
    annotations = results.load_coco_keypoint_annotations(gt)
    predictions = results.parse_coco_predictions(_predictions_json(pred, cache), annotations, pred)
    return results.match_predictions_to_annotations(predictions, annotations, pred)


def _parse_options(options: list[str], parameters: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """``[METRIC.]KEY=VALUE`` -> ``{metric: {key: value}}``, each key checked against the metrics' arguments."""
    from posecore._errors import ConfigError, did_you_mean

    scoped: dict[str, dict[str, Any]] = {name: {} for name in parameters}
    reserved = {"ann_file"}
    for option in options:
        key, sep, raw = option.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--option {option!r} must be KEY=VALUE or METRIC.KEY=VALUE, e.g. use_area=false")
        target, _, arg = key.rpartition(".")
        if target and target not in parameters:
            raise ConfigError(
                f"--option {option!r} names metric {target!r}, which is not selected{did_you_mean(target, parameters)}; "
                f"selected: {', '.join(parameters)}"
            )
        names = [target] if target else list(parameters)
        takers = [n for n in names if arg in parameters[n] and arg not in reserved]
        if not takers:
            accepted = sorted({a for n in names for a in parameters[n]} - reserved)
            where = f"metric {target!r}" if target else f"no selected metric ({', '.join(names)})"
            raise ConfigError(
                f"--option {option!r}: {where} has no argument {arg!r}{did_you_mean(arg, accepted)}; "
                f"accepted: {', '.join(accepted) or 'none'}" + (" (--gt gives ann_file)" if arg in reserved else "")
            )
        value = _parse_value(raw)
        for name in takers:
            scoped[name][arg] = value
    return scoped


def _parse_value(raw: str) -> Any:
    """A YAML scalar or list; ``none`` is None and an unbracketed ``a,b`` is a list."""
    import yaml

    text = raw.strip()
    if text.lower() in ("none", "null", "~"):
        return None
    if "," in text and not text.startswith(("[", "{", "(")):
        text = f"[{text}]"
    if text.startswith("(") and text.endswith(")"):
        text = f"[{text[1:-1]}]"
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return raw


def _json_table(table: Mapping[str, float]) -> dict[str, float | None]:
    return {key: (None if isinstance(v, float) and math.isnan(v) else v) for key, v in table.items()}


def _format(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:.2f}" if abs(value) >= 10 else f"{value:.4f}"


def _print_tables(tables: Mapping[str, Mapping[str, float]], gt: str, pred: str) -> None:
    import shutil

    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=max(120, shutil.get_terminal_size().columns))
    for name, values in tables.items():
        console.print(f"[bold]{name}[/]: {pred} scored against {gt}", soft_wrap=True)
        table = Table()
        if all("/" in key for key in values):
            rows: dict[str, dict[str, float]] = {}
            for key, value in values.items():
                row, _, column = key.partition("/")
                rows.setdefault(row, {})[column] = value
            columns = list(dict.fromkeys(c for r in rows.values() for c in r))
            table.add_column("")
            for column in columns:
                table.add_column(column, justify="right")
            for row, cells in rows.items():
                table.add_row(row, *(_format(cells[c]) if c in cells else "" for c in columns))
        else:
            for key in values:
                table.add_column(key, justify="right")
            table.add_row(*(_format(v) for v in values.values()))
        console.print(table)

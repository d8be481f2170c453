"""What a run shows and leaves behind: progress, a JSONL log, TensorBoard, curves, result tables.

Only the main process reports. On a terminal the progress is a live bar (rich) with loss, lr,
throughput and ETA; elsewhere (CI logs, ``nohup``) it is one plain line every few seconds, so logs
stay readable instead of filling with carriage returns.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from posecore._fileio import atomic_write
from posecore.config import atomic_write_text

__all__ = ["MetricsLog", "ProgressReporter", "plot_curves", "print_table", "write_metrics_json"]


class MetricsLog:
    """Appends one JSON object per line to ``log.jsonl`` (flushed, so a killed run keeps its log)
    and mirrors scalars to TensorBoard when ``tensorboard`` is installed."""

    def __init__(self, path: Path, tensorboard_dir: Path | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None  # noqa: N806
            if SummaryWriter is not None:
                self._writer = SummaryWriter(str(tensorboard_dir))

    @property
    def tensorboard(self) -> bool:
        return self._writer is not None

    def write(self, record: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(record, default=float) + "\n")
        self._file.flush()
        if self._writer is not None:
            step = int(record.get("step", 0))
            prefix = record.get("kind", "train")
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch") and math.isfinite(value):
                    self._writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


class ProgressReporter:
    """Epoch progress with loss, lr, images/s and ETA."""

    def __init__(self, *, enabled: bool, console: Console | None = None, interval_s: float = 10.0) -> None:
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self.interval_s = interval_s
        self._progress: Progress | None = None
        self._task: Any = None
        self._last_line = 0.0
        self._total = 0
        self._done = 0
        self._first = 0
        self._images = 0
        self._label = ""
        self._start = 0.0

    def start(self, label: str, total: int, done: int = 0) -> None:
        if not self.enabled:
            return
        self._label, self._total, self._done, self._start = label, total, done, time.perf_counter()
        self._first = done
        self._images = 0
        self._last_line = self._start
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=self.console, transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(label, total=total, completed=done, status="")

    def advance(self, count: int = 1, *, images: int = 0, **status: float) -> None:
        """``count`` more steps done; ``images`` processed in them (for the images/s figure)."""
        if not self.enabled:
            return
        self._done += count
        self._images += images
        if self._images:
            status["img/s"] = self._images / max(time.perf_counter() - self._start, 1e-9)
        text = "  ".join(_format_status(key, value) for key, value in status.items())
        if self._progress is not None:
            self._progress.update(self._task, advance=count, status=text)
            return
        now = time.perf_counter()
        if now - self._last_line >= self.interval_s or self._done >= self._total:
            self._last_line = now
            rate = (self._done - self._first) / max(now - self._start, 1e-9)
            eta = (self._total - self._done) / rate if rate > 0 else float("inf")
            self.console.print(f"{self._label} {self._done}/{self._total} {text} eta {_duration(eta)}", highlight=False)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def print(self, message: str) -> None:
        if self.enabled:
            self.console.print(message, highlight=False)

    def table(self, title: str, tables: Mapping[str, Mapping[str, float]]) -> None:
        if self.enabled:
            print_table(self.console, title, tables)


def _format_status(key: str, value: float) -> str:
    if key == "lr":
        return f"lr {value:.2e}"
    if key.endswith("/s"):
        return f"{value:.0f} {key}" if value >= 10 else f"{value:.1f} {key}"  # a CPU's 0.4 frames/s is not 0
    return f"{key} {value:.4g}"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"


def print_table(console: Console, title: str, tables: Mapping[str, Mapping[str, float]]) -> None:
    """One row per metric, one column per dataset: tall rather than wide, so it fits any terminal."""
    keys = list(dict.fromkeys(key for table in tables.values() for key in table))
    table = Table(title=title)
    table.add_column("metric")
    for name in tables:
        table.add_column(name, justify="right")
    for key in keys:
        table.add_row(key, *(_cell(values.get(key)) for values in tables.values()))
    console.print(table)


def _cell(value: float | None) -> str:
    if value is None:
        return ""
    if value == -1:
        return "n/a"
    return f"{value:.4f}" if abs(value) <= 1.0 else f"{value:.2f}"


def write_metrics_json(path: Path, main_metric: str, table: Mapping[str, float], extra: Mapping[str, Any] | None = None) -> None:
    """``{"main_metric": NAME, NAME: value, ...}``, written atomically."""
    document = {"main_metric": main_metric, **{key: float(value) for key, value in table.items()}, **(extra or {})}
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")


def plot_curves(path: Path, records: Sequence[Mapping[str, Any]], main_metric: str) -> Path | None:
    """A PNG with the training loss and lr by step and the evaluation metrics by epoch."""
    train = [r for r in records if r.get("kind") == "train" and "loss" in r]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    loss_axis = axes[0]
    if train:
        steps = [r["step"] for r in train]
        loss_axis.plot(steps, [r["loss"] for r in train], color="tab:blue", linewidth=1)
        loss_axis.set_yscale("log")
        loss_axis.set_xlabel("optimiser step")
        loss_axis.set_ylabel("training loss", color="tab:blue")
        lr_axis = loss_axis.twinx()
        lr_axis.plot(steps, [r["lr"] for r in train], color="tab:gray", linewidth=1, linestyle="--")
        lr_axis.set_ylabel("learning rate", color="tab:gray")
    loss_axis.set_title("training")
    metric_axis = axes[1]
    if evals:
        epochs = [r["epoch"] for r in evals]
        keys = [main_metric] + [k for k in ("AP50", "AP75", "AR") if k != main_metric]
        for key in keys:
            values = [r.get(key) for r in evals]
            if all(isinstance(v, (int, float)) for v in values):
                metric_axis.plot(epochs, values, marker="o", linewidth=2 if key == main_metric else 1, label=key)
        metric_axis.set_xlabel("epoch")
        metric_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        metric_axis.legend(loc="lower right")
        metric_axis.grid(alpha=0.3)
    metric_axis.set_title("evaluation")
    figure.tight_layout()

    def write(tmp: str) -> None:
        figure.savefig(tmp, format="png")

    atomic_write(path, write)
    plt.close(figure)
    return path

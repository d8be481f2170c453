"""What a comparison leaves behind: the terminal table, ``compare.md``, ``compare.csv``,
``compare.json`` and ``compare.png`` (accuracy against images/s, one labelled point per model).
Every file is written atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from posecore._compare._comparison import Comparison
from posecore._fileio import atomic_write
from posecore.config import atomic_write_text

__all__ = ["print_comparison", "write_outputs"]

OUTPUTS = ("compare.md", "compare.csv", "compare.json", "compare.png")


def _columns(comparison: Comparison) -> list[str]:
    """The headers of the short table (terminal and Markdown)."""
    sizes = [f"img/s @{size}" for size in comparison.batch_sizes]
    return ["model", "plugin", "keypoints", comparison.protocol.main_metric, "params (M)", "GFLOPs", *sizes,
            f"peak MiB @{max(comparison.batch_sizes)}"]


def _short_rows(comparison: Comparison) -> list[list[str]]:
    rows = []
    for m in comparison.measurements:
        main = m.main
        rows.append([m.prepared.candidate.label, m.prepared.plugin, m.prepared.keypoint_set,
                     "n/a" if main is None else f"{main:.4f}", f"{m.complexity.params_m:.2f}",
                     f"{m.complexity.gflops:.3f}", *(f"{m.images_per_s[size]:.1f}" for size in comparison.batch_sizes),
                     "n/a" if m.peak_memory_mib is None else f"{m.peak_memory_mib:.1f}"])
    return rows


def _title(comparison: Comparison) -> str:
    protocol = comparison.protocol
    return (f"{protocol.main_metric} on {protocol.source}'s data.{protocol.split}, flip test "
            f"{'on' if protocol.flip_test else 'off'}; speed on {comparison.device}")


def print_comparison(console: Console, comparison: Comparison) -> None:
    """The short table, the notes on how each figure was measured, and the models left out."""
    table = Table(title=_title(comparison))
    for index, column in enumerate(_columns(comparison)):
        table.add_column(column, justify="left" if index < 3 else "right")
    for row in _short_rows(comparison):
        table.add_row(*row)
    if not console.is_terminal:  # a file or pipe gets the table whole, not squeezed into 80 columns
        width = Measurement.get(console, console.options.update(max_width=1000), table).maximum
        console = Console(file=console.file, width=max(width, console.width))
    console.print(table)
    for note in comparison.notes.values():
        console.print(f"  {note}", highlight=False, soft_wrap=True)
    for skipped in comparison.skipped:
        console.print(f"  not compared: {skipped.label}: {skipped.reason}", highlight=False, soft_wrap=True)


def write_outputs(folder: Path, comparison: Comparison) -> list[Path]:
    """The four files in ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in OUTPUTS]
    atomic_write_text(paths[0], _markdown(comparison))
    atomic_write_text(paths[1], _csv(comparison))
    atomic_write_text(paths[2], json.dumps(comparison.to_json(), indent=2) + "\n")
    _plot(paths[3], comparison)
    return paths


def _markdown(comparison: Comparison) -> str:
    columns = _columns(comparison)
    lines = [f"# {_title(comparison)}", "",
             "| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if index < 3 else "---:" for index in range(len(columns))) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in _short_rows(comparison)]
    lines += ["", *(f"- {note}" for note in comparison.notes.values())]
    if comparison.skipped:
        lines += ["", "Not compared:", "", *(f"- {s.label}: {s.reason}" for s in comparison.skipped)]
    return "\n".join(lines) + "\n"


def _csv(comparison: Comparison) -> str:
    """One row per model with every metric of every dataset (``<dataset>/<metric>`` when there
    are several), and the raw figures."""
    several = len({label for m in comparison.measurements for label in m.metrics}) > 1
    rows: list[dict[str, Any]] = []
    for m in comparison.measurements:
        row: dict[str, Any] = {"model": m.prepared.candidate.label, "plugin": m.prepared.plugin,
                               "config": m.prepared.config.name, "keypoint_set": m.prepared.keypoint_set,
                               "checkpoint": str(m.prepared.candidate.checkpoint)}
        for label, table in m.metrics.items():
            row.update({f"{label}/{key}" if several else key: value for key, value in table.items()})
        row.update({"params": m.complexity.params, "GFLOPs": m.complexity.gflops,
                    **{f"images_per_s@{size}": m.images_per_s[size] for size in comparison.batch_sizes},
                    f"peak_memory_MiB@{max(comparison.batch_sizes)}": m.peak_memory_mib})
        rows.append(row)
    fields = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _plot(path: Path, comparison: Comparison) -> None:
    """Accuracy against images/s at the largest batch size, one labelled point per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(comparison.batch_sizes)
    points = [(m.images_per_s[size], m.main, m.prepared.candidate.label) for m in comparison.measurements
              if m.main is not None]
    figure, axis = plt.subplots(figsize=(7, 4.5), dpi=100)
    for speed, accuracy, label in points:
        axis.scatter([speed], [accuracy], s=40, zorder=3)
        axis.annotate(label, (speed, accuracy), textcoords="offset points", xytext=(6, 4), fontsize=8)
    speeds = [speed for speed, _, _ in points]
    if speeds and max(speeds) > 20 * min(speeds):
        axis.set_xscale("log")
    axis.set_xlabel(f"images/s at batch {size}, {comparison.device}")
    first = next((label for m in comparison.measurements for label in m.metrics), "the protocol's data")
    axis.set_ylabel(f"{comparison.protocol.main_metric} on {first}")
    better = "up" if comparison.protocol.higher_is_better else "down"
    axis.set_title(f"flip test {'on' if comparison.protocol.flip_test else 'off'}; {better} and to the right is better",
                   fontsize=9)
    axis.grid(alpha=0.3)
    axis.margins(x=0.25, y=0.15)
    figure.tight_layout()

    def write(tmp: str) -> None:
        figure.savefig(tmp, format="png", bbox_inches="tight")  # whole labels, however long

    atomic_write(path, write)
    plt.close(figure)

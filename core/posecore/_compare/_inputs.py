"""What ``posecore compare`` is given: run directories and checkpoint files, or, with no
arguments, the finished runs of a folder that were evaluated on the same data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs

from posecore._compare._protocol import data_signature
from posecore._errors import ConfigError, PosecoreError
from posecore.config import load_config

__all__ = ["Candidate", "Skipped", "finished_runs_on_the_same_data", "from_arguments"]

BEST = Path("checkpoints") / "best.pth"


@attrs.frozen
class Candidate:
    """One model to compare: its weights, the name it is shown under, the run it comes from, and
    the preset of a checkpoint that carries no posecore config (``--preset-for-foreign``)."""

    label: str
    checkpoint: Path
    run: Path | None = None
    preset: str | None = None


@attrs.frozen
class Skipped:
    """A model (or run) left out of the comparison, and why."""

    label: str
    reason: str


def from_arguments(paths: Sequence[str], presets_for_foreign: Sequence[str]) -> tuple[list[Candidate], str | None]:
    """The candidates the arguments name, and the preset for every foreign checkpoint not named
    one by ``CHECKPOINT=PRESET`` (a plain ``PRESET`` in ``presets_for_foreign``), if given."""
    named, default = _parse_presets(presets_for_foreign)
    candidates = []
    for text in paths:
        path = Path(text)
        if (path / BEST).is_file():
            candidates.append(Candidate(path.resolve().name, path / BEST, run=path))
        elif (path / "config.yaml").is_file():
            raise ConfigError(f"{path}: the run has no {BEST} (not finished yet?); let it finish, or compare its "
                              "checkpoints/latest.pth")
        elif path.exists():
            run = path.parent.parent if path.parent.name == "checkpoints" and (path.parent.parent / "config.yaml").is_file() else None
            candidates.append(Candidate(run.resolve().name if run else path.stem, path, run=run,
                                        preset=named.pop(path.resolve(), None)))
        else:
            raise ConfigError(f"{path}: no such run directory (with {BEST}) or checkpoint file")
    if named:
        unused = ", ".join(str(path) for path in named)
        raise ConfigError(f"--preset-for-foreign names {unused}, which is not among the models to compare")
    return _unique_labels(candidates), default


def _parse_presets(values: Sequence[str]) -> tuple[dict[Path, str], str | None]:
    named: dict[Path, str] = {}
    plain = []
    for value in values:
        path, sep, preset = value.rpartition("=")
        if not sep:
            plain.append(value)
        elif path and preset:
            named[Path(path).resolve()] = preset
        else:
            raise ConfigError(f"--preset-for-foreign {value!r}: give PRESET, or CHECKPOINT=PRESET")
    if len(plain) > 1:
        raise ConfigError(f"--preset-for-foreign: one preset for all foreign checkpoints, got {', '.join(plain)}; "
                          "name each checkpoint's with CHECKPOINT=PRESET")
    return named, plain[0] if plain else None


def _unique_labels(candidates: list[Candidate]) -> list[Candidate]:
    """Labels made unique with the parent folder's name (two ``best.pth`` from different places)."""
    labels = [candidate.label for candidate in candidates]
    unique = []
    for candidate, label in zip(candidates, labels, strict=True):
        if labels.count(label) > 1:
            label = f"{candidate.checkpoint.resolve().parent.name}/{label}"
            while label in labels or label in (c.label for c in unique):
                label = f"{label}'"
        unique.append(attrs.evolve(candidate, label=label))
    return unique


def finished_runs_on_the_same_data(runs: Path, split: str) -> tuple[list[Candidate], list[Skipped]]:
    """The finished runs under ``runs`` (a ``config.yaml`` and ``checkpoints/best.pth``) that were
    evaluated on the same ``data.<split>`` as most of them (ties: as the newest), oldest first;
    and the runs left out, with the reason."""
    if not runs.is_dir():
        raise ConfigError(f"no run folder {runs}: train models first (posecore run, posecore run --plugin NAME), or "
                          "name the runs or checkpoints to compare")
    groups: dict[str, list[Candidate]] = {}
    newest: dict[str, int] = {}  # the position, by age, of each group's newest run
    skipped = []
    folders = sorted((path for path in runs.iterdir() if (path / "config.yaml").is_file()),
                     key=lambda path: ((path / "config.yaml").stat().st_mtime, path.name))
    for position, folder in enumerate(folders):
        if not (folder / BEST).is_file():
            skipped.append(Skipped(folder.name, f"unfinished: no {BEST}"))
            continue
        try:
            config = load_config(folder / "config.yaml")
            signature = data_signature(config, split)
        except PosecoreError as exc:
            skipped.append(Skipped(folder.name, f"config.yaml unreadable: {exc}"))
            continue
        if not getattr(config.data, split):
            skipped.append(Skipped(folder.name, f"its config has no data.{split} datasets"))
            continue
        groups.setdefault(signature, []).append(Candidate(folder.name, folder / BEST, run=folder))
        newest[signature] = position
    if not groups:
        raise ConfigError(f"no finished run in {runs} (a folder with config.yaml and {BEST}): train models first "
                          "(posecore run, posecore run --plugin NAME), or name the checkpoints to compare")
    chosen = max(groups, key=lambda signature: (len(groups[signature]), newest[signature]))
    for signature, members in groups.items():
        if signature != chosen:
            skipped += [Skipped(member.label, f"evaluated on other data.{split} than {groups[chosen][0].label}")
                        for member in members]
    return groups[chosen], skipped

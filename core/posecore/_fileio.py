"""Reading and writing files safely.

``atomic_write``: a temporary file beside the target, then a rename. A crash or an exception mid-write never leaves a half-written config or checkpoint; readers see
the old file or the new one. The new file gets the permissions a plain ``open(path, "w")``
would give (mkstemp's are owner-only), or those of the file it replaces.

``parsing_each_file_once``: a block within which every reader of the same JSON file gets one
parsed document (the engine builds a dataset and the metric that scores it in one such block, so
the annotation file they share is parsed once).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from posecore._errors import DataError, PosecoreError

__all__ = ["atomic_write", "parsing_each_file_once", "read_json"]

#: The documents parsed in the current ``parsing_each_file_once`` block, by file identity; None
#: outside one. A context variable, so concurrent threads or tasks each have their own block.
_PARSED: contextvars.ContextVar[dict[tuple[str, int, int], Any] | None] = contextvars.ContextVar(
    "posecore_parsed_json", default=None)


def _default_mode(path: Path) -> int:
    if path.exists():
        return stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call ``write(temporary_path)``, then move the result to ``path``; clean up on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _default_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def parsing_each_file_once() -> Iterator[None]:
    """Within the block, :func:`read_json` parses each file once: a later read of the same,
    unchanged file returns the very object the first read did. Callers must not modify what they
    read. Blocks nest; the outermost one decides how long documents are kept.
    """
    if _PARSED.get() is not None:
        yield
        return
    token = _PARSED.set({})
    try:
        yield
    finally:
        _PARSED.reset(token)


def read_json(path: str | os.PathLike[str], what: str, error: type[PosecoreError] = DataError) -> Any:
    """Parse a JSON file; a missing, empty or malformed file raises ``error`` naming it.

    ``what`` names the file for people, e.g. ``"annotation file"`` or ``"camera file (camera_file)"``.

    Every reader of user files (annotations, detections, predictions, cameras) goes through here,
    so they all fail the same way: one line with the path and what to do. Inside a
    :func:`parsing_each_file_once` block a file already parsed is not parsed again.
    """
    path = Path(path)
    parsed = _PARSED.get()
    if parsed is None:
        return _parse_json(path, what, error)
    try:
        status = path.stat()
    except OSError:  # missing or unreadable: let the parse report it
        return _parse_json(path, what, error)
    key = (os.path.realpath(path), status.st_mtime_ns, status.st_size)
    if key not in parsed:
        parsed[key] = _parse_json(path, what, error)
    return parsed[key]


def _parse_json(path: Path, what: str, error: type[PosecoreError]) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a directory; give the JSON file inside it") from None
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text ({exc.reason}); is it a JSON file?") from None
    if not text.strip():
        raise error(f"{what} {path} is empty; it should hold JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None

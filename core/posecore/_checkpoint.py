"""Reading checkpoints safely, writing them atomically, converting foreign key layouts, and
reporting how a state_dict fits a model.

Reading never runs code from the file. ``.safetensors`` files are plain data. PyTorch files are read
with ``torch.load(weights_only=True)``, and the objects training frameworks pickle beside the weights
(mmengine's ``message_hub``, numpy scalars and arrays in ``meta``, ...) pass through an allowlist:

* numpy arrays, scalars and dtypes are rebuilt for real: they are pure data;
* an object of any other class becomes an inert :class:`ForeignObject` holding the pickled state;
  the class's module is never imported and none of its code runs;
* a file whose unpickling would *call* something (``os.system``, ``eval``, a class constructor) is
  refused with a :class:`~posecore._errors.CheckpointError` that names the call.

Foreign key layouts (original ViTPose, mmpose 1.x, Hugging Face, ...) are turned into posecore's by
the registered converters; :func:`load_weights` recognises the layout by its key prefixes.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import torch

from posecore._errors import CheckpointError
from posecore._fileio import atomic_write

if TYPE_CHECKING:
    from torch import nn

    from posecore._registry import Registries

__all__ = [
    "ConvertedStateDict",
    "ForeignObject",
    "KeyReport",
    "compare_state_dicts",
    "convert_state_dict",
    "extract_state_dict",
    "fit_model_to",
    "load_checkpoint",
    "load_weights",
    "prepare_weights",
    "save_checkpoint",
]

_STATE_DICT_KEYS = ("state_dict", "model", "module", "model_state_dict")
_WRAPPER_PREFIX = "module."  # DataParallel / DistributedDataParallel


# ---------------------------------------------------------------------------------------------
# reading and writing files


class ForeignObject:
    """Stands in for a pickled object whose class posecore does not import.

    ``foreign_name`` is the original class's full name (``mmengine.logging.message_hub.MessageHub``)
    and ``state`` what the pickle would have handed to its ``__setstate__`` (usually its
    ``__dict__``), so the information stays readable while none of the class's code runs.
    """

    foreign_name: ClassVar[str] = "?"
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Restoring an object only uses __new__ and __setstate__; calling the class is what a pickle
        # does to run code (its REDUCE opcode), so that is refused.
        raise _RefusedCall(self.foreign_name, args)

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.foreign_name}, not loaded>"


class _RefusedCall(Exception):
    def __init__(self, name: str, args: tuple[Any, ...]) -> None:
        shown = ", ".join(repr(arg) for arg in args)
        super().__init__(f"{name}({shown[:200]}{'...' if len(shown) > 200 else ''})")


def _stand_in(name: str) -> type[ForeignObject]:
    return type(name.rpartition(".")[2], (ForeignObject,), {"foreign_name": name, "__module__": __name__})


def _numpy_globals() -> dict[str, Any]:
    """numpy's reconstruction functions and dtype classes under the names pickles use for them
    (numpy 1 wrote ``numpy.core``, numpy 2 writes ``numpy._core``). They only rebuild data."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    found: dict[str, Any] = {"numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype}
    for package in ("numpy.core", "numpy._core"):
        found[f"{package}.multiarray._reconstruct"] = core.multiarray._reconstruct
        found[f"{package}.multiarray.scalar"] = core.multiarray.scalar
        if hasattr(core.numeric, "_frombuffer"):
            found[f"{package}.numeric._frombuffer"] = core.numeric._frombuffer
    for name in dir(np.dtypes):  # BUILD checks the instance's own class, e.g. Float64DType
        dtype_class = getattr(np.dtypes, name)
        if isinstance(dtype_class, type) and issubclass(dtype_class, np.dtype):
            found[f"numpy.dtypes.{name}"] = dtype_class
    return found


def _allowed_globals(path: Path) -> list[tuple[Any, str]]:
    """numpy's data globals, plus an inert stand-in for every other global torch does not allow."""
    vetted = _numpy_globals()
    try:
        unknown = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint (legacy format, junk): torch.load decides and explains
        unknown = []
    return [(obj, name) for name, obj in vetted.items()] + [
        (_stand_in(name), name) for name in sorted(unknown) if name not in vetted
    ]


#: What a Hugging Face model folder holds its weights in, in the order they are looked for.
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                   "pytorch_model.bin.index.json")


def load_checkpoint(path: str | os.PathLike[str]) -> Any:
    """Load a checkpoint onto the CPU without running code from it (see the module docstring);
    errors say why and what to do.

    ``path`` is a file, or a Hugging Face model folder (``save_pretrained``'s output), whose
    weights file (:data:`HF_WEIGHT_FILES`, sharded ones through their index) is read.
    """
    path = Path(path)
    if path.is_dir():
        return _load_model_folder(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    if not _looks_like_torch_file(path):
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated, corrupt or another format): it is neither "
            "the zip archive torch.save writes nor a pickle (an empty or cut-off download, or another file under a "
            ".pth name?)"
        )
    try:
        with torch.serialization.safe_globals(_allowed_globals(path)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except _RefusedCall as call:
        raise CheckpointError(
            f"{path} would need code to run to load: unpickling it calls {call}. posecore never runs "
            "code from a checkpoint; if the file comes from a source you trust, re-save its weights "
            "alone (torch.save(checkpoint['state_dict'], ...)) or as .safetensors where it was made."
        ) from None
    except pickle.UnpicklingError as exc:
        lines = str(exc).strip().splitlines()
        culprit = next((line.strip() for line in lines if "unsupported global" in line.lower()), None)
        if culprit is not None:
            raise CheckpointError(
                f"{path} holds objects that would need code to run to load ({culprit}). "
                "posecore loads weights only; if the file comes from a framework you trust, "
                "re-save its state_dict alone, or convert it with 'posecore convert'."
            ) from exc
        # torch's own text here suggests weights_only=False: never passed on, posecore stays safe
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (corrupt, or not written by torch.save)") \
            from exc
    except Exception as exc:  # torch raises many types for junk (KeyError, RuntimeError, EOFError)
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated, corrupt or another format): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _looks_like_torch_file(path: Path) -> bool:
    """``torch.save`` writes a zip archive (since torch 1.6) or, before, a pickle (protocol 2+:
    first byte ``0x80``)."""
    with path.open("rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _load_model_folder(folder: Path) -> dict[str, torch.Tensor]:
    """The weights of a Hugging Face model folder: its single file, or every shard its index names."""
    name = next((name for name in HF_WEIGHT_FILES if (folder / name).is_file()), None)
    if name is None:
        raise CheckpointError(
            f"{folder} is a folder but holds no weights file a Hugging Face model folder has "
            f"({', '.join(HF_WEIGHT_FILES)}); give the checkpoint file itself"
        )
    if not name.endswith(".index.json"):
        return extract_state_dict(load_checkpoint(folder / name), source=str(folder / name))
    from posecore._fileio import read_json

    index = read_json(folder / name, "weights index", CheckpointError)
    shards = sorted(set(index.get("weight_map", {}).values())) if isinstance(index, dict) else []
    if not shards:
        raise CheckpointError(f"{folder / name}: no 'weight_map' naming the shard files")
    tensors: dict[str, torch.Tensor] = {}
    for shard in shards:
        tensors.update(extract_state_dict(load_checkpoint(folder / shard), source=str(folder / shard)))
    return tensors


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(f"{path}: reading .safetensors files needs 'pip install safetensors'") from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{path} is not a readable safetensors file: {type(exc).__name__}: {exc}") from exc


def extract_state_dict(checkpoint: Any, *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensor mapping inside common containers (``state_dict``, ``model``, ``module`` keys),
    without the ``module.`` prefix (Distributed)DataParallel puts on every key."""
    if isinstance(checkpoint, Mapping):
        for key in _STATE_DICT_KEYS:
            if isinstance(checkpoint.get(key), Mapping):
                return extract_state_dict(checkpoint[key], source=source)
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            if all(k.startswith(_WRAPPER_PREFIX) for k in checkpoint):
                return {k[len(_WRAPPER_PREFIX):]: v for k, v in checkpoint.items()}
            return dict(checkpoint)
    if isinstance(checkpoint, ForeignObject):
        raise CheckpointError(
            f"{source} holds a pickled {checkpoint.foreign_name} object, not a state_dict; save "
            "model.state_dict() where the model is defined, and load that"
        )
    keys = ", ".join(map(str, checkpoint)) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
    raise CheckpointError(f"{source}: no state_dict found (top level holds: {keys})")


def save_checkpoint(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: never a half-written file."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


# ---------------------------------------------------------------------------------------------
# key reports


class ConvertedStateDict(dict):
    """A converter's result: tensors under posecore's names, plus ``dropped``, the foreign keys
    the converter discarded on purpose, each with its reason (key reports list them).

    A converter may also return a plain dict, which means it dropped nothing.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor] = (), dropped: Mapping[str, str] | None = None) -> None:
        super().__init__(tensors)
        self.dropped: dict[str, str] = dict(dropped or {})


@attrs.frozen
class KeyReport:
    """How a state_dict fits a model: keys missing, unexpected, or of the wrong shape; and, from
    a converter, the foreign keys it dropped on purpose (``(key, reason)``; not problems)."""

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()
    dropped: tuple[tuple[str, str], ...] = ()
    #: the converter that produced the keys (``None``: they were posecore's already)
    converter: str | None = None

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def format(self) -> str:
        """A plain-text table, one row per problem key (and per dropped key)."""
        if self.clean and not self.dropped:
            return "all keys match (0 missing, 0 unexpected, 0 wrong shape)"
        rows = [("missing", k, "") for k in self.missing]
        rows += [("unexpected", k, "") for k in self.unexpected]
        rows += [("wrong shape", k, f"checkpoint {list(got)} vs model {list(want)}") for k, got, want in self.mismatched]
        rows += [("dropped", k, why) for k, why in self.dropped]
        width = max(len(r[1]) for r in rows)
        lines = [f"{'problem':<12} {'key':<{width}} detail"]
        lines += [f"{a:<12} {b:<{width}} {c}".rstrip() for a, b, c in rows]
        summary = f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, {len(self.mismatched)} wrong shape"
        if self.dropped:
            summary += f", {len(self.dropped)} dropped by the converter"
        lines.append(summary)
        return "\n".join(lines)


def compare_state_dicts(
    expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], *, converter: str | None = None
) -> KeyReport:
    """Compare a model's ``state_dict()`` (``expected``) with a loaded one (``given``); the keys a
    :class:`ConvertedStateDict` dropped are carried into the report."""
    return KeyReport(
        missing=tuple(sorted(k for k in expected if k not in given)),
        unexpected=tuple(sorted(k for k in given if k not in expected)),
        mismatched=tuple(
            (k, tuple(given[k].shape), tuple(expected[k].shape))
            for k in sorted(expected)
            if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
        ),
        dropped=tuple(sorted(getattr(given, "dropped", {}).items())),
        converter=converter,
    )


# ---------------------------------------------------------------------------------------------
# converting and loading


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    converter: str | None = None,
    expected: Mapping[str, torch.Tensor] | None = None,
    registries: Registries | None = None,
    source: str = "checkpoint",
) -> tuple[str | None, ConvertedStateDict]:
    """Bring ``state_dict`` into posecore's key layout; returns ``(converter name, tensors)``.

    With ``converter`` named, that one is used. Otherwise the layout is recognised: every
    registered converter whose function has a ``matches(state_dict) -> bool`` method (recognition
    by key prefixes) and says yes is a candidate. Given ``expected`` (a model's ``state_dict()``),
    the candidate that fits it best wins, the file as it is (name ``None``) included; without it,
    exactly one candidate must match. ``registries`` holds the converters (the caller's: this
    layer never reaches for the process's plugins); ``None`` means none are registered.
    """
    if registries is None:
        if converter is not None:
            raise CheckpointError(f"converter {converter!r} named, but no registries to find it in were given")
        declarations: list[Any] = []
    else:
        declarations = list(registries.converters)
        if converter is not None:
            return converter, _as_converted(registries.converters.get(converter).resolve()(dict(state_dict)), converter)

    candidates: list[tuple[str | None, ConvertedStateDict]] = [(None, ConvertedStateDict(state_dict))] if expected else []
    for declaration in declarations:
        function = declaration.resolve()
        matches = getattr(function, "matches", None)
        if callable(matches) and matches(state_dict):
            candidates.append((declaration.name, _as_converted(function(dict(state_dict)), declaration.name)))
    if expected is not None:
        return min(candidates, key=lambda candidate: _problem_count(compare_state_dicts(expected, candidate[1])))
    if len(candidates) == 1:
        return candidates[0]
    first = ", ".join(list(state_dict)[:4])
    if not candidates:
        raise CheckpointError(
            f"{source}: no registered converter recognises its keys ({first}, ...); name one with --converter "
            f"(available: {', '.join(d.name for d in declarations) or 'none'})"
        )
    raise CheckpointError(
        f"{source}: several converters recognise its keys ({', '.join(str(name) for name, _ in candidates)}); "
        "name one with --converter, or give the model (--preset) so that the best fit is chosen"
    )


def _as_converted(result: Any, name: str) -> ConvertedStateDict:
    if isinstance(result, ConvertedStateDict):
        return result
    if isinstance(result, Mapping):
        return ConvertedStateDict(result)
    raise CheckpointError(f"converter {name!r} returned a {type(result).__name__}; it must return a state_dict mapping")


def _problem_count(report: KeyReport) -> int:
    return len(report.missing) + len(report.unexpected) + len(report.mismatched)


def fit_model_to(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Let a model resize what the file decides (:meth:`posecore.models.PoseModel.fit_to_state_dict`)
    before its keys are compared; ``True`` when the model has that method."""
    fit = getattr(model, "fit_to_state_dict", None)
    if not callable(fit):
        return False
    fit(state_dict)
    return True


#: A weights source: a checkpoint file, a Hugging Face model folder, or a checkpoint already read
#: with :func:`load_checkpoint` (any container :func:`extract_state_dict` knows).
WeightsSource = str | os.PathLike[str] | Mapping[str, Any]
#: A converter: a registered converter's name, or a ``state_dict -> state_dict`` function.
ConverterChoice = str | Callable[[dict[str, torch.Tensor]], Mapping[str, torch.Tensor]] | None


def prepare_weights(
    model: nn.Module | None,
    source: WeightsSource,
    converter: ConverterChoice = None,
    *,
    registries: Registries | None = None,
    name: str | None = None,
) -> tuple[str | None, ConvertedStateDict, KeyReport | None]:
    """Read ``source``, recognise its layout and bring it into posecore's names, fitting ``model``
    (when given) to what the file decides; returns the converter used (``None``: the file was
    posecore's already), the tensors and, with a model, how they fit it.

    This is the whole of loading short of copying tensors: :func:`load_weights` loads what it
    returns, ``posecore convert`` writes it to a file.
    """
    label = name or _source_label(source)
    checkpoint = source if isinstance(source, Mapping) else load_checkpoint(source)
    state_dict = extract_state_dict(checkpoint, source=label)
    expected = model.state_dict() if model is not None else None
    if callable(converter):
        converter_name: str | None = getattr(converter, "__name__", "converter")
        converted = _as_converted(converter(dict(state_dict)), str(converter_name))
    else:
        converter_name, converted = convert_state_dict(state_dict, converter=converter, expected=expected,
                                                       registries=registries, source=label)
    if model is None:
        return converter_name, converted, None
    if fit_model_to(model, converted):
        expected = model.state_dict()
    return converter_name, converted, compare_state_dicts(expected, converted, converter=converter_name)


def load_weights(
    model: nn.Module,
    source: WeightsSource,
    converter: ConverterChoice = None,
    *,
    strict: bool = False,
    registries: Registries | None = None,
    name: str | None = None,
    warn: bool = True,
) -> KeyReport:
    """Load ``source`` into ``model``, whichever known layout it was saved in: the one loading path
    of posecore (``Pose``, ``eval``, ``predict``, ``export``, ``train.init_weights``, resume, and the
    plugins all come here; :func:`posecore.load_weights` is this with the loaded plugins' converters).

    ``source`` is a file (posecore, original ViTPose / mmpose 0.x, mmpose 1.x, Hugging Face
    ``.safetensors``/``.bin``, a plugin's released layout), a Hugging Face model folder, or a
    checkpoint already read. Its layout is recognised and converted (:func:`convert_state_dict`;
    ``converter`` forces a registered one by name, or is a conversion function), the model fits
    itself to the sizes the file decides, and every tensor whose name and shape fit is loaded. The
    returned :class:`KeyReport` lists the rest: with ``strict`` any mismatch is an error and
    nothing is loaded; otherwise a report that is not clean is also issued as a warning (unless
    ``warn`` is off, for callers that log it themselves). A source of which no tensor fits is always
    an error. ``name`` labels the source in messages (default: its path). ``registries`` holds the
    converters that recognise layouts (``None``: the file as it is, or ``converter`` as a function).
    """
    label = name or _source_label(source)
    _, converted, report = prepare_weights(model, source, converter, registries=registries, name=label)
    assert report is not None  # a model was given
    expected = model.state_dict()
    fitting = {k: v for k, v in converted.items() if k in expected and tuple(v.shape) == tuple(expected[k].shape)}
    what = f"{type(model).__name__}" + (f" (after converter {report.converter!r})" if report.converter else "")
    if not fitting:
        raise CheckpointError(f"{label}: none of its {len(converted)} tensors fits {what}:\n{report.format()}")
    if strict and not report.clean:
        raise CheckpointError(f"{label} does not fit {what} exactly (strict); nothing loaded:\n{report.format()}")
    if warn and not report.clean:
        warnings.warn(f"{label}: loaded {len(fitting)} of {len(expected)} tensors of {what}:\n{report.format()}",
                      stacklevel=2)
    model.load_state_dict(fitting, strict=False)
    return report


def _source_label(source: WeightsSource) -> str:
    return "checkpoint" if isinstance(source, Mapping) else str(source)

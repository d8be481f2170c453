"""Checkpoints: atomic saving, weights-only loading, state_dict extraction and key reports."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from posecore._checkpoint import (
    ConvertedStateDict,
    ForeignObject,
    KeyReport,
    compare_state_dicts,
    extract_state_dict,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from posecore._errors import CheckpointError


class Arbitrary:
    """An object whose unpickling would need this module's code to run."""

    def __init__(self, value: int) -> None:
        self.value = value


class ExplodesWhenPickled:
    def __reduce__(self):  # type: ignore[override]
        raise RuntimeError("refusing to be pickled")


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


# ---------------------------------------------------------------------------------------------
# save_checkpoint


def test_save_then_load_round_trip(tmp_path: Path) -> None:
    model = _tiny_model()
    checkpoint = {"state_dict": model.state_dict(), "epoch": 3, "meta": {"name": "tiny", "lr": [0.1, 0.01]}}
    target = tmp_path / "deep" / "dir" / "ckpt.pth"
    assert save_checkpoint(checkpoint, target) == target
    assert sorted(p.name for p in target.parent.iterdir()) == ["ckpt.pth"]
    loaded = load_checkpoint(target)
    assert loaded["epoch"] == 3 and loaded["meta"] == {"name": "tiny", "lr": [0.1, 0.01]}
    assert loaded["state_dict"].keys() == model.state_dict().keys()
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded["state_dict"][key], tensor), key
        assert loaded["state_dict"][key].device.type == "cpu"


def test_save_replaces_an_existing_file_by_rename(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.pth"
    save_checkpoint({"w": torch.zeros(3)}, target)
    old_bytes = target.read_bytes()
    old_inode = target.stat().st_ino
    with open(target, "rb") as old_handle:
        save_checkpoint({"w": torch.ones(5)}, target)
        # The old file's data was not overwritten in place: a reader holding it still sees it whole.
        assert old_handle.read() == old_bytes
    assert target.stat().st_ino != old_inode
    assert torch.equal(load_checkpoint(target)["w"], torch.ones(5))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


def test_failed_save_leaves_existing_file_untouched_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.pth"
    save_checkpoint({"w": torch.arange(4.0)}, target)
    before = target.read_bytes()
    # A large tensor is written first, then pickling the next value fails mid-save.
    with pytest.raises(RuntimeError, match="refusing to be pickled"):
        save_checkpoint({"big": torch.zeros(1 << 18), "bad": ExplodesWhenPickled()}, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]
    assert torch.equal(load_checkpoint(target)["w"], torch.arange(4.0))


def test_failed_save_to_a_new_path_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="refusing to be pickled"):
        save_checkpoint([torch.ones(2), ExplodesWhenPickled()], tmp_path / "new.pth")
    assert list(tmp_path.iterdir()) == []


def test_saved_checkpoint_gets_the_same_permissions_as_torch_save(tmp_path: Path) -> None:
    reference = tmp_path / "reference.pth"
    torch.save({"w": torch.ones(1)}, reference)
    target = save_checkpoint({"w": torch.ones(1)}, tmp_path / "ckpt.pth")
    assert oct(target.stat().st_mode & 0o777) == oct(reference.stat().st_mode & 0o777)


# ---------------------------------------------------------------------------------------------
# load_checkpoint


@pytest.mark.reliability
def test_load_reads_an_unknown_class_as_an_inert_stand_in(tmp_path: Path) -> None:
    path = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "extra": Arbitrary(5)}, path)
    # The file is a real pickle of our class: an unrestricted load gets the object back.
    assert torch.load(path, weights_only=False)["extra"].value == 5
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(1))
    extra = loaded["extra"]
    assert isinstance(extra, ForeignObject) and not isinstance(extra, Arbitrary)
    assert extra.foreign_name == f"{Arbitrary.__module__}.Arbitrary"
    assert extra.state == {"value": 5}
    assert repr(extra) == f"<{Arbitrary.__module__}.Arbitrary, not loaded>"


def test_load_accepts_plain_containers_and_ordered_dicts(tmp_path: Path) -> None:
    path = tmp_path / "plain.pth"
    state = OrderedDict(a=torch.ones(2, 2), b=torch.zeros(3, dtype=torch.int64))
    torch.save({"model": state, "step": 10, "tags": ("x", "y"), "none": None}, path)
    loaded = load_checkpoint(str(path))
    assert loaded["step"] == 10 and loaded["tags"] == ("x", "y") and loaded["none"] is None
    assert torch.equal(loaded["model"]["b"], state["b"]) and loaded["model"]["b"].dtype == torch.int64


# A stand-in for mmengine (not installed here): the classes an mmengine checkpoint pickles in its
# ``message_hub``. Their __setstate__ leaves a file behind, which proves when their code ran.
FAKE_MMENGINE = {
    "mmengine/__init__.py": "",
    "mmengine/logging/__init__.py": "",
    "mmengine/logging/history_buffer.py": """
import numpy as np
from pathlib import Path


class HistoryBuffer:
    def __init__(self, values, marker):
        self._log_history = np.asarray(values, dtype=np.float64)
        self._count_history = np.ones(len(values))
        self.marker = marker

    def __setstate__(self, state):
        Path(state["marker"]).touch()
        self.__dict__.update(state)
""",
    "mmengine/logging/message_hub.py": """
from pathlib import Path


class MessageHub:
    def __init__(self, name, log_scalars, marker):
        self.instance_name = name
        self._log_scalars = log_scalars
        self._runtime_info = {"epoch": 210, "iter": 37590}
        self.marker = marker

    def __setstate__(self, state):
        Path(state["marker"]).touch()
        self.__dict__.update(state)
""",
}


def _write_mmengine_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, dict]:
    """An mmengine-style checkpoint written with pickle protocol 2 while the fake mmengine is
    importable; afterwards it is off sys.path and out of sys.modules again."""
    import sys

    import numpy as np

    package = tmp_path / "fake_site"
    for relative, source in FAKE_MMENGINE.items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_text(source, encoding="utf-8")
    marker = tmp_path / "mmengine-code-ran"
    state_dict = OrderedDict((k, v) for k, v in _tiny_model().state_dict().items())
    with monkeypatch.context() as patch:
        patch.syspath_prepend(str(package))
        from mmengine.logging.history_buffer import HistoryBuffer
        from mmengine.logging.message_hub import MessageHub

        hub = MessageHub("run", {"train/loss": HistoryBuffer([0.5, 0.25], str(marker))}, str(marker))
        checkpoint = {
            "meta": {"epoch": 210, "seed": np.int64(7), "best_score": np.float64(0.757),
                     "dataset_meta": {"flip_indices": np.arange(17), "sigmas": np.full(17, 0.025, np.float32)}},
            "state_dict": state_dict,
            "message_hub": hub,
        }
        path = tmp_path / "best_coco_AP_epoch_210.pth"
        torch.save(checkpoint, path, pickle_protocol=2)
    for module in [m for m in sys.modules if m == "mmengine" or m.startswith("mmengine.")]:
        del sys.modules[module]
    assert not marker.exists()
    return path, marker, checkpoint


def test_load_an_mmengine_checkpoint_without_mmengine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import numpy as np

    path, marker, written = _write_mmengine_checkpoint(tmp_path, monkeypatch)
    loaded = load_checkpoint(path)
    # the weights, and numpy data in meta, come back for real
    assert list(extract_state_dict(loaded)) == list(written["state_dict"])
    assert all(torch.equal(loaded["state_dict"][k], v) for k, v in written["state_dict"].items())
    meta = loaded["meta"]
    assert meta["seed"] == 7 and isinstance(meta["seed"], np.int64)
    assert meta["best_score"] == np.float64(0.757) and isinstance(meta["best_score"], np.float64)
    np.testing.assert_array_equal(meta["dataset_meta"]["flip_indices"], np.arange(17))
    assert meta["dataset_meta"]["sigmas"].dtype == np.float32
    # the framework objects are inert stand-ins that keep their state
    hub = loaded["message_hub"]
    assert isinstance(hub, ForeignObject) and hub.foreign_name == "mmengine.logging.message_hub.MessageHub"
    assert hub.state["instance_name"] == "run" and hub.state["_runtime_info"] == {"epoch": 210, "iter": 37590}
    buffer = hub.state["_log_scalars"]["train/loss"]
    assert buffer.foreign_name == "mmengine.logging.history_buffer.HistoryBuffer"
    np.testing.assert_array_equal(buffer.state["_log_history"], [0.5, 0.25])
    assert not marker.exists() and "mmengine" not in sys.modules


def test_load_never_runs_the_classes_code_even_when_importable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    path, marker, _ = _write_mmengine_checkpoint(tmp_path, monkeypatch)
    monkeypatch.syspath_prepend(str(tmp_path / "fake_site"))
    assert torch.load(path, weights_only=False)["message_hub"].instance_name == "run"  # a plain load runs it ...
    assert marker.exists()
    marker.unlink()
    for module in [m for m in sys.modules if m.startswith("mmengine")]:
        del sys.modules[module]
    assert isinstance(load_checkpoint(path)["message_hub"], ForeignObject)  # ... posecore's does not
    assert not marker.exists() and "mmengine" not in sys.modules


class CallsSystem:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):  # type: ignore[override]
        import os

        return (os.system, (self.command,))


class CallsEval:
    def __init__(self, expression: str) -> None:
        self.expression = expression

    def __reduce__(self):  # type: ignore[override]
        return (eval, (self.expression,))


@pytest.mark.parametrize(
    ("payload", "named"),
    [(lambda marker: CallsSystem(f"touch {marker}"), "system"),
     (lambda marker: CallsEval(f"__import__('pathlib').Path({str(marker)!r}).touch()"), "eval(")],
    ids=["os.system", "eval"],
)
@pytest.mark.reliability
def test_load_refuses_a_file_that_calls_code(tmp_path: Path, payload, named: str) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "payload.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "meta": payload(marker)}, path, pickle_protocol=2)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "code to run" in message and named in message
    assert not marker.exists()


def test_load_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = {"a.weight": torch.randn(3, 2), "b": torch.arange(4)}
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    loaded = load_checkpoint(path)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], v) for k, v in state.items())
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(broken)


@pytest.mark.reliability
def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.pth"
    with pytest.raises(CheckpointError, match="checkpoint not found") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="is a folder but holds no weights file"):
        load_checkpoint(tmp_path)  # a folder is read as a Hugging Face model folder, and names what it lacks


@pytest.mark.reliability
@pytest.mark.parametrize("keep", [0.5, 0.9, 0.0])
def test_truncated_file(tmp_path: Path, keep: float) -> None:
    whole = tmp_path / "whole.pth"
    torch.save({"state_dict": _tiny_model().state_dict()}, whole)
    data = whole.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(truncated)
    message = str(info.value)
    assert message.startswith(f"{truncated} is not a readable PyTorch checkpoint (truncated, corrupt")


@pytest.mark.reliability
def test_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("hello world, this is not a checkpoint\n", encoding="utf-8")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------------------
# extract_state_dict


@pytest.mark.parametrize("key", ["state_dict", "model", "module", "model_state_dict"])
def test_extract_under_container_keys(key: str) -> None:
    state = _tiny_model().state_dict()
    found = extract_state_dict({"epoch": 1, key: state, "optimizer": {"lr": 0.1}})
    assert found.keys() == state.keys()
    assert all(found[k] is state[k] for k in state)


def test_extract_nested_and_bare() -> None:
    state = {"a": torch.ones(1), "b": torch.zeros(2)}
    assert extract_state_dict({"state_dict": {"module": state}}) == state
    assert extract_state_dict(state) == state
    # The first container key in priority order wins.
    other = {"c": torch.ones(1)}
    assert extract_state_dict({"model": other, "state_dict": state}) == state


def test_extract_strips_the_data_parallel_prefix() -> None:
    state = {"module.backbone.w": torch.ones(1), "module.head.b": torch.zeros(2)}
    assert list(extract_state_dict({"state_dict": state})) == ["backbone.w", "head.b"]
    mixed = {"module.a": torch.ones(1), "b": torch.ones(1)}  # not a wrapper prefix: kept as is
    assert list(extract_state_dict(mixed)) == ["module.a", "b"]


@pytest.mark.parametrize(
    ("checkpoint", "listed"),
    [
        ({"epoch": 3, "optimizer": {"lr": 0.1}}, "epoch, optimizer"),
        ({"weights": torch.ones(1), "step": 4}, "weights, step"),
        ({"model": {"a": torch.ones(1), "note": "x"}}, "a, note"),
        ({}, "top level holds: )"),
        ([torch.ones(1)], "list"),
        (torch.ones(3), "Tensor"),
    ],
)
@pytest.mark.reliability
def test_extract_errors_list_top_level_keys(checkpoint: object, listed: str) -> None:
    with pytest.raises(CheckpointError) as info:
        extract_state_dict(checkpoint, source="ckpt.pth")
    message = str(info.value)
    assert message.startswith("ckpt.pth: no state_dict found")
    assert listed in message


# ---------------------------------------------------------------------------------------------
# compare_state_dicts / KeyReport


def test_compare_reports_missing_unexpected_and_wrong_shape() -> None:
    expected = _tiny_model().state_dict()
    given = dict(expected)
    del given["1.running_var"]
    given["3.weight"] = torch.zeros(3, 4)  # model has (2, 4)
    given["extra.bias"] = torch.zeros(1)
    given["aux.weight"] = torch.zeros(1)
    report = compare_state_dicts(expected, given)
    assert not report.clean
    assert report.missing == ("1.running_var",)
    assert report.unexpected == ("aux.weight", "extra.bias")
    assert report.mismatched == (("3.weight", (3, 4), (2, 4)),)
    text = report.format()
    lines = text.splitlines()
    assert lines[0].split() == ["problem", "key", "detail"]
    assert lines[1].split() == ["missing", "1.running_var"]
    assert lines[2].split() == ["unexpected", "aux.weight"]
    assert lines[3].split() == ["unexpected", "extra.bias"]
    assert lines[4].startswith("wrong shape") and "3.weight" in lines[4]
    assert lines[4].endswith("checkpoint [3, 4] vs model [2, 4]")
    assert lines[-1] == "1 missing, 2 unexpected, 1 wrong shape"
    assert len(lines) == 6


def test_compare_clean() -> None:
    expected = _tiny_model().state_dict()
    given = {k: v.clone() + 1 for k, v in expected.items()}  # values differ, keys and shapes do not
    report = compare_state_dicts(expected, given)
    assert report.clean
    assert report == KeyReport()
    assert report.format() == "all keys match (0 missing, 0 unexpected, 0 wrong shape)"


def test_compare_against_a_real_load_state_dict() -> None:
    """The report agrees with what torch itself refuses to load."""
    model = _tiny_model()
    given = {k: v for k, v in model.state_dict().items() if k != "0.bias"}
    given["0.weight"] = torch.zeros(5, 3, 3, 3)
    given["stray"] = torch.zeros(1)
    report = compare_state_dicts(model.state_dict(), given)
    with pytest.raises(RuntimeError) as info:
        model.load_state_dict(given, strict=True)
    torch_message = str(info.value)
    for key in report.missing + report.unexpected + tuple(k for k, _, _ in report.mismatched):
        assert f'"{key}"' in torch_message or key in torch_message
    assert report.missing == ("0.bias",) and report.unexpected == ("stray",)
    assert report.mismatched == (("0.weight", (5, 3, 3, 3), (4, 3, 3, 3)),)


def test_dropped_keys_are_reported_but_not_problems() -> None:
    expected = _tiny_model().state_dict()
    given = ConvertedStateDict(expected, dropped={"backbone.cls_token": "never used"})
    report = compare_state_dicts(expected, given, converter="some-layout")
    assert report.clean and report.converter == "some-layout"
    assert report.dropped == (("backbone.cls_token", "never used"),)
    lines = report.format().splitlines()
    assert lines[1].split(None, 2) == ["dropped", "backbone.cls_token", "never used"]
    assert lines[-1] == "0 missing, 0 unexpected, 0 wrong shape, 1 dropped by the converter"


@pytest.mark.reliability
def test_a_pickled_model_object_is_named_not_extracted(tmp_path: Path) -> None:
    path = tmp_path / "whole_model.pth"
    torch.save(_tiny_model(), path)  # torch.save(model): the classes, not a state_dict
    loaded = load_checkpoint(path)
    assert isinstance(loaded, ForeignObject) and loaded.foreign_name == "torch.nn.modules.container.Sequential"
    with pytest.raises(CheckpointError, match="holds a pickled torch.nn.modules.container.Sequential object, "
                                              "not a state_dict; save model.state_dict()"):
        extract_state_dict(loaded, source=str(path))


class _WidthFromFile(nn.Module):
    """A model whose output width the checkpoint decides (as ViTPose++'s expert width)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def fit_to_state_dict(self, state_dict) -> None:
        width = state_dict["linear.weight"].shape[0]
        if width != self.linear.out_features:
            self.linear = nn.Linear(4, width)


def test_load_weights_lets_the_model_take_sizes_from_the_file(tmp_path: Path) -> None:
    source = nn.Linear(4, 5)
    save_checkpoint({"state_dict": {"linear.weight": source.weight, "linear.bias": source.bias}}, tmp_path / "w.pth")
    model = _WidthFromFile()
    report = load_weights(model, tmp_path / "w.pth", strict=True)
    assert report.clean and model.linear.out_features == 5
    torch.testing.assert_close(model.linear.weight, source.weight)
    # a model without the method is compared as built: the shapes are reported, nothing is resized
    plain = nn.Sequential()
    plain.linear = nn.Linear(4, 2)
    with pytest.raises(CheckpointError, match="linear.weight"):
        load_weights(plain, tmp_path / "w.pth", strict=True)

"""Checkpoints: atomic saving, weights-only loading, state_dict extraction and key reports."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from posecore.checkpoint import KeyReport, compare_state_dicts, extract_state_dict, load_checkpoint, save_checkpoint
from posecore.errors import CheckpointError


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


def test_load_refuses_pickled_arbitrary_objects(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "extra": Arbitrary(5)}, path)
    # The file is a real pickle of our class: an unrestricted load gets the object back.
    assert torch.load(path, weights_only=False)["extra"].value == 5
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    message = message.replace(str(path), "<file>")
    assert "need code to run" in message
    assert "Arbitrary" in message  # torch names the offending global
    assert "posecore convert" in message


def test_load_accepts_plain_containers_and_ordered_dicts(tmp_path: Path) -> None:
    path = tmp_path / "plain.pth"
    state = OrderedDict(a=torch.ones(2, 2), b=torch.zeros(3, dtype=torch.int64))
    torch.save({"model": state, "step": 10, "tags": ("x", "y"), "none": None}, path)
    loaded = load_checkpoint(str(path))
    assert loaded["step"] == 10 and loaded["tags"] == ("x", "y") and loaded["none"] is None
    assert torch.equal(loaded["model"]["b"], state["b"]) and loaded["model"]["b"].dtype == torch.int64


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.pth"
    with pytest.raises(CheckpointError, match="checkpoint not found") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path)  # a directory is not a checkpoint file


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

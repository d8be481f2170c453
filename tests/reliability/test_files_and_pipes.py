"""Files that are not what they claim, and readers that go away: a clear message, never a
traceback, never advice to turn off the safe loader."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import posecore


@pytest.mark.parametrize("head", [b"", b"\x13\x37", b"PK\x03\x04", b"\x80\x02"],
                         ids=["random", "random-2", "zip-magic", "pickle-magic"])
def test_random_bytes_are_not_a_checkpoint_and_the_safe_loader_stays_on(tmp_path: Path, head: bytes) -> None:
    path = tmp_path / "weights.pth"
    path.write_bytes(head + os.urandom(4096))
    with pytest.raises(posecore.CheckpointError, match="is not a readable PyTorch checkpoint") as info:
        posecore.load_checkpoint(path)
    message = str(info.value)
    assert "weights_only" not in message and "will likely succeed" not in message
    assert "would need code to run" not in message, "junk is not a file of foreign objects"


def test_a_real_checkpoint_still_loads_after_the_sniffing(tmp_path: Path) -> None:
    path = tmp_path / "ok.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}}, path)
    assert torch.equal(posecore.load_checkpoint(path)["state_dict"]["w"], torch.ones(2))


@pytest.mark.parametrize("command", [["plugins", "--json"], ["doctor", "--json"]])
def test_a_closed_reader_ends_the_command_quietly(command: list[str]) -> None:
    """``posecore ... | head -1``: the reader is gone before the command writes."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([sys.executable, "-m", "posecore", *command], stdout=write, stderr=subprocess.PIPE,
                                text=True, timeout=120)
    finally:
        os.close(write)
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr
    assert result.returncode == 141

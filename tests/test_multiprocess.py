"""Past one process: 2 gloo processes through the CLI, two "machines" on 127.0.0.1, a SIGKILL
mid-run and its resumption, and sharded (FSDP2) training with its checkpoints.

Every test compares with one reference run: the tiny experiment in 2 processes (DDP), with a
constant learning rate, so that a run stopped after any step or epoch and resumed must end on the
very same weights. Every command runs with a timeout, and it and every process under it are
killed when the tests end, whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from posecore.config import save_config
from posecore.engine._state import load_train_state

TIMEOUT = 600  # seconds for one command: a 2-core machine shared with other work can be very slow
EPOCHS = 3


class Commands:
    """``posecore`` commands and every process under them, all killed at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, *args: str) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSECORE_")}
        # torchrun sets one thread a process only when it starts several on a machine; the same
        # number everywhere keeps float sums in the same order, so runs compare bit for bit.
        env["OMP_NUM_THREADS"] = "1"
        process = subprocess.Popen([sys.executable, "-m", "posecore", *args], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=env)
        self.started.append(process)
        return process

    def run(self, *args: str) -> str:
        """Run to the end; its stderr, after checking it succeeded."""
        process = self.start(*args)
        try:
            _, stderr = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill(process)
            pytest.fail(f"posecore {' '.join(args)} did not finish in {TIMEOUT} s")
        assert process.returncode == 0, stderr
        return stderr

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        """SIGKILL to the command and every process under it (torchrun starts its workers in
        sessions of their own, so killing the command's process group does not reach them)."""
        for pid in [process.pid, *_descendants(process.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.communicate()

    def close(self) -> None:
        for process in self.started:
            self.kill(process)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


@pytest.fixture(scope="module")
def commands() -> Iterator[Commands]:
    started = Commands()
    yield started
    started.close()


@pytest.fixture(scope="module")
def experiment(tiny_config, tmp_path_factory) -> Path:
    """The tiny experiment with batches of 2 (10 optimiser steps an epoch in each of 2 processes),
    a checkpoint every step, a constant learning rate and one evaluation, at the end."""
    import attrs

    from posecore.config import ScheduleConfig

    config = tiny_config(epochs=EPOCHS, schedule=ScheduleConfig(type="step", warmup_iters=0), checkpoint_interval=1,
                         val_interval=100)
    config = attrs.evolve(config, data=attrs.evolve(config.data, batch_size=2))
    path = tmp_path_factory.mktemp("experiment") / "tiny.yaml"
    save_config(config, path)
    return path


@pytest.fixture(scope="module")
def reference(experiment, commands, tmp_path_factory) -> Path:
    """The experiment trained in 2 processes on one machine, uninterrupted."""
    output = tmp_path_factory.mktemp("reference") / "run"
    stderr = commands.run("run", "--config", str(experiment), "--output", str(output), "--quiet", "--num-processes", "2")
    assert "launching 2 processes" in stderr
    return output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _metrics(run: Path) -> dict:
    return {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k != "best"}


def _assert_same_state(state: dict, expected: dict) -> None:
    for key, value in expected["model"].items():
        assert torch.equal(state["model"][key], value), key
    assert state["optimizer_steps"] == expected["optimizer_steps"] and state["epoch"] == expected["epoch"] == EPOCHS


def test_two_processes_write_each_checkpoint_and_record_once(reference):
    """Only the main process writes: one file of each kind, every step logged once, no temporaries."""
    assert sorted(p.name for p in (reference / "checkpoints").iterdir()) == ["best.pth", "latest.pth"]
    assert not [p for p in reference.rglob("*") if p.name.startswith(".")]
    records = [json.loads(line) for line in (reference / "log.jsonl").read_text().splitlines()]
    steps = load_train_state(reference)["optimizer_steps"]
    assert steps == EPOCHS * 10
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, steps + 1))
    assert [r["epoch"] for r in records if r["kind"] == "eval"] == [EPOCHS]
    assert torch.load(reference / "checkpoints" / "best.pth", weights_only=True)["meta"]["epoch"] == EPOCHS


def test_two_machines_meeting_on_localhost_train_as_two_processes(experiment, reference, commands, tmp_path):
    """Ranks 0 and 1, started separately with one process each, meet at a rendezvous on
    127.0.0.1 and end on the reference run's weights and metrics, bit for bit."""
    port = str(_free_port())
    output = tmp_path / "run"  # one folder, as a shared file system gives every machine
    machines = [commands.start("run", "--config", str(experiment), "--output", str(output), "--quiet",
                               "--num-processes", "2", "--num-machines", "2", "--machine-rank", str(rank),
                               "--main-process-ip", "127.0.0.1", "--main-process-port", port) for rank in (1, 0)]
    deadline = time.monotonic() + TIMEOUT
    for machine in machines:
        try:
            _, stderr = machine.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"the two machines did not finish in {TIMEOUT} s")
        assert machine.returncode == 0, stderr
        assert "launching 1 process on machine" in stderr
    _assert_same_state(load_train_state(output), load_train_state(reference))
    assert _metrics(output) == _metrics(reference)
    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["best.pth", "latest.pth"]


def test_two_processes_killed_with_sigkill_resume_exactly(experiment, reference, commands, tmp_path):
    """SIGKILL to the launcher and both workers as soon as a checkpoint exists; ``--resume`` in 2
    processes then ends on the reference run's weights, optimiser state and metrics, bit for bit."""
    output = tmp_path / "run"
    killed = commands.start("run", "--config", str(experiment), "--output", str(output), "--quiet",
                            "--num-processes", "2")
    latest, deadline = output / "checkpoints" / "latest.pth", time.monotonic() + TIMEOUT
    while not latest.exists():
        assert killed.poll() is None, killed.communicate()[1]
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.02)
    commands.kill(killed)
    assert killed.returncode == -signal.SIGKILL and not (output / "metrics.json").exists()
    saved = load_train_state(output)
    assert 0 < saved["optimizer_steps"] < EPOCHS * 10  # killed mid-run

    commands.run("run", "--resume", str(output), "--quiet", "--num-processes", "2")
    state, expected = load_train_state(output), load_train_state(reference)
    _assert_same_state(state, expected)
    for index, slots in expected["optimizer"]["state"].items():
        for slot, value in slots.items():
            assert torch.equal(state["optimizer"]["state"][index][slot], value), (index, slot)
    assert _metrics(output) == _metrics(reference)


def test_sharded_training_resumes_converts_and_matches_two_processes(experiment, reference, commands, tmp_path):
    """--fsdp in 2 processes: one epoch, then resumed from its sharded checkpoint to the end. The
    joined weights equal the reference (DDP) run's within 1e-6 (the gradient is reduce-scattered
    instead of all-reduced; float32 sums of 2 terms), the metrics too; ``posecore convert`` makes
    one checkpoint of the shards that loads strictly into the model."""
    import posecore
    from posecore.engine._sharding import load_sharded_train_state

    output = tmp_path / "run"
    commands.run("run", "--config", str(experiment), "--output", str(output), "--quiet", "--num-processes", "2",
                 "--fsdp", "--epochs", "1")
    first = load_sharded_train_state(output)
    assert (first["epoch"], first["batches_done"], first["optimizer_steps"]) == (1, 0, 10)
    shards = sorted(p.relative_to(output).as_posix() for p in (output / "checkpoints").rglob("*"))
    assert shards == ["checkpoints/best.pth", "checkpoints/latest.json", "checkpoints/sharded-e1-b0-s10",
                      "checkpoints/sharded-e1-b0-s10/rank-0-of-2.pth", "checkpoints/sharded-e1-b0-s10/rank-1-of-2.pth"]
    for shard in (output / "checkpoints" / "sharded-e1-b0-s10").iterdir():  # each holds its half of the weights
        pieces = torch.load(shard, weights_only=True)["model"]
        assert pieces["backbone.model.conv1.weight"].shape[0] == first["model"]["backbone.model.conv1.weight"].shape[0] // 2

    commands.run("run", "--resume", str(output), "--quiet", "--num-processes", "2", "--fsdp", "--epochs", str(EPOCHS))
    state, expected = load_sharded_train_state(output), load_train_state(reference)
    assert state["optimizer_steps"] == expected["optimizer_steps"] and state["epoch"] == EPOCHS
    difference = max(float((state["model"][k].float() - v.float()).abs().max()) for k, v in expected["model"].items())
    assert difference <= 1e-6
    assert _metrics(output) == pytest.approx(_metrics(reference), abs=1e-6)

    commands.run("convert", str(output), str(tmp_path / "whole.pth"))
    whole = torch.load(tmp_path / "whole.pth", weights_only=True)
    assert whole["state_dict"].keys() == state["model"].keys()
    assert all(torch.equal(whole["state_dict"][k], v) for k, v in state["model"].items())
    model, _, _ = posecore.load_model(tmp_path / "whole.pth")  # strict, with the config the file carries
    assert torch.equal(model.state_dict()["backbone.model.conv1.weight"], state["model"]["backbone.model.conv1.weight"])


# ------------------------------------------------------------------------------ the launch flags


ACCELERATE_CONFIGS = Path(__file__).resolve().parents[1] / "core" / "posecore" / "engine" / "accelerate"


def _launch(*argv: str):
    from posecore._cli.launch import launch_from_args
    from posecore._cli.main import build_parser

    parser, _ = build_parser()
    return launch_from_args(parser.parse_args(["run", *argv]))


def test_launch_flags_are_accelerates_and_the_command_line_wins_over_a_config_file(tmp_path):
    from posecore._cli.launch import Launch

    assert _launch() == Launch() and not _launch().distributed
    assert _launch("--num-machines", "2", "--machine-rank", "1", "--main-process-ip", "10.0.0.1") == Launch(
        num_processes=2, num_machines=2, machine_rank=1, main_process_ip="10.0.0.1")  # one process a machine
    shipped = _launch("--accelerate-config", str(ACCELERATE_CONFIGS / "fsdp.yaml"))
    assert shipped.fsdp and shipped.num_processes == 8 and shipped.main_process_port == 29500
    mine = tmp_path / "accelerate.yaml"
    mine.write_text("distributed_type: MULTI_CPU\nnum_machines: 2\nnum_processes: 4\nmachine_rank: 0\n"
                    "main_process_ip: 10.0.0.1\nmain_process_port: 4242\n")
    assert _launch("--accelerate-config", str(mine), "--machine-rank", "1") == Launch(
        num_processes=4, num_machines=2, machine_rank=1, main_process_ip="10.0.0.1", main_process_port=4242)


@pytest.mark.parametrize(("argv", "message"), [
    (("--num-processes", "3", "--num-machines", "2"), "must be a multiple of --num-machines 2"),
    (("--num-machines", "2"), "needs --main-process-ip"),
    (("--num-machines", "2", "--machine-rank", "2", "--main-process-ip", "h"), "between 0 and --num-machines - 1"),
    (("--accelerate-config", str(ACCELERATE_CONFIGS / "deepspeed-zero3.yaml")), "accelerate launch --config_file"),
    (("--accelerate-config", "missing.yaml"), "missing.yaml does not exist"),
])
def test_bad_launch_flags_are_refused_naming_the_fix(argv, message):
    from posecore._errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        _launch(*argv)


def test_a_sharded_checkpoint_missing_a_shard_or_holding_objects_is_refused_naming_the_file(tmp_path):
    """Shards are read with ``weights_only=True``: a missing shard, or one holding a pickled
    object, is an error naming the file, never a partial or unsafe load."""
    from posecore._errors import CheckpointError
    from posecore.engine._sharding import POINTER, SHARDED_FORMAT, load_sharded_train_state

    folder = tmp_path / "checkpoints" / "sharded-e1-b0-s2"
    folder.mkdir(parents=True)
    (tmp_path / "checkpoints" / POINTER).write_text(json.dumps(
        {"format": SHARDED_FORMAT, "folder": folder.name, "world_size": 2, "epoch": 1, "batches_done": 0,
         "optimizer_steps": 2, "best": None, "history": [], "config": ""}))
    for rank in range(2):
        torch.save({"format": SHARDED_FORMAT, "rank": rank, "world_size": 2, "rng": {}, "pieces": [["model", "w"]],
                    "model": {"w": torch.full((2, 3), float(rank))}, "optimizer": {"state": {}, "param_groups": []}},
                   folder / f"rank-{rank}-of-2.pth")
    assert load_sharded_train_state(tmp_path)["model"]["w"].tolist() == [[0.0] * 3] * 2 + [[1.0] * 3] * 2
    torch.save({"format": SHARDED_FORMAT, "model": Commands()}, folder / "rank-1-of-2.pth")
    with pytest.raises(CheckpointError, match="rank-1-of-2.pth"):
        load_sharded_train_state(tmp_path)
    (folder / "rank-1-of-2.pth").unlink()
    with pytest.raises(CheckpointError, match=r"incomplete: .*rank-1-of-2.pth is missing"):
        load_sharded_train_state(tmp_path / "checkpoints" / POINTER)

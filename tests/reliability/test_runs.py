"""Runs under faults: a diverging update never replaces the last good checkpoint, a finished run is
never overwritten by default, a killed save leaves nothing behind, a run resumes with its own
config (and the overrides that keep its past valid), and every weights mismatch is reported where
a user looks. The model is the engine tests' ResNet-18 at 64x48 on 24 synthetic images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import posecore
from posecore._cli.main import main
from posecore._plugins import get_host
from posecore.config import apply_overrides, save_config
from posecore.engine._state import load_train_state
from posecore.engine._trainer import Callback, Trainer, TrainingDiverged


def _trainer(config, output: Path, **kwargs) -> Trainer:
    return Trainer(config, output, registries=get_host().registries, quiet=True, num_prediction_images=0, **kwargs)


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _finite(state: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if isinstance(v, torch.Tensor) and v.is_floating_point())


class _NaNGradientsFrom(Callback):
    """From optimiser step ``step`` on, every gradient is NaN: the update writes NaN into the weights
    while the loss that led to it was still finite (the issue's step 4, loss 3510)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.state.optimizer_steps == self.step - 1:
            for parameter in trainer.model.parameters():
                parameter.register_hook(lambda grad: torch.full_like(grad, float("nan")))


def test_weights_made_nan_by_an_update_are_never_saved(synthetic_cache, tiny_config, tmp_path: Path) -> None:
    config = tiny_config(checkpoint_interval=2)
    with pytest.raises(TrainingDiverged, match=r"by optimiser step 2 .* hold NaN or infinite values") as error:
        _trainer(config, tmp_path, callbacks=[_NaNGradientsFrom(step=2)]).fit()
    assert "no checkpoint had been written yet" in str(error.value)
    assert not (tmp_path / "checkpoints" / "latest.pth").exists()

    run = tmp_path / "later"
    with pytest.raises(TrainingDiverged) as error:
        _trainer(config, run, callbacks=[_NaNGradientsFrom(step=4)]).fit()
    latest = run / "checkpoints" / "latest.pth"
    assert f"the last good checkpoint is {latest}" in str(error.value)
    kept = load_train_state(latest)
    assert kept["optimizer_steps"] == 2, "the step-4 weights were NaN: the step-2 file stays"
    assert _finite(kept["model"]) and all(_finite(slots) for slots in kept["optimizer"]["state"].values())
    assert "--resume RUN_DIR train.optimizer.lr=" in str(error.value)


def test_a_diverged_run_resumes_with_a_lower_learning_rate(synthetic_cache, tiny_config, tmp_path: Path) -> None:
    config = tiny_config(checkpoint_interval=2)
    with pytest.raises(TrainingDiverged):
        _trainer(config, tmp_path, callbacks=[_NaNGradientsFrom(step=4)]).fit()
    lower = apply_overrides(config, ["train.optimizer.lr=0.0001"])
    result = _trainer(lower, tmp_path, resume=tmp_path).fit()
    assert result.main_value is not None
    [resumed] = [record for record in _log(tmp_path) if record["kind"] == "resume"]
    assert resumed["changed"] == {"train.optimizer.lr": {"from": 0.001, "to": 0.0001}}


def test_a_finished_run_is_not_overwritten_by_default(synthetic_cache, tiny_config, tmp_path: Path) -> None:
    config = tiny_config(epochs=1)
    _trainer(config, tmp_path).fit()
    before = {name: (tmp_path / name).read_bytes() for name in ("config.yaml", "log.jsonl", "metrics.json")}
    best = (tmp_path / "checkpoints" / "best.pth").read_bytes()
    with pytest.raises(posecore.ConfigError, match=rf"{tmp_path} already holds a run .*--resume {tmp_path}.*--overwrite"):
        _trainer(config, tmp_path)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert (tmp_path / "checkpoints" / "best.pth").read_bytes() == best
    _trainer(config, tmp_path, overwrite=True).fit()
    assert sum(record["kind"] == "eval" for record in _log(tmp_path)) == 1, "the old run's log is gone, not mixed in"


def test_the_cli_refuses_an_output_that_holds_a_run(synthetic_cache, tiny_config, tmp_path: Path, capsys) -> None:
    save_config(tiny_config(epochs=0), tmp_path / "tiny.yaml")
    command = ["run", "--config", str(tmp_path / "tiny.yaml"), "--output", str(tmp_path / "run"), "--quiet"]
    assert main(command) == 0
    assert main(command) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main([*command, "--overwrite"]) == 0


def test_a_killed_saves_temporary_files_are_removed(synthetic_cache, tiny_config, tmp_path: Path) -> None:
    config = tiny_config(epochs=1)
    _trainer(config, tmp_path).fit()
    stale = [tmp_path / "checkpoints" / ".latest.pth.k1ll3d.tmp", tmp_path / ".config.yaml.x7.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    _trainer(apply_overrides(config, ["train.epochs=2"]), tmp_path, resume=tmp_path).fit()
    assert not any(path.exists() for path in stale)


def test_resume_takes_the_runs_own_config_and_refuses_changes_that_break_it(synthetic_cache, tiny_config,
                                                                             tmp_path: Path, capsys) -> None:
    config = apply_overrides(tiny_config(epochs=1), ["data.batch_size=4"])  # an override the run had
    save_config(config, tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    assert main(["run", "--config", str(tmp_path / "tiny.yaml"), "--output", str(run), "--quiet"]) == 0
    assert main(["run", "--resume", str(run), "--epochs", "2", "train.val_interval=2", "--quiet"]) == 0
    records = _log(run)
    [resumed] = [record for record in records if record["kind"] == "resume"]
    assert resumed["changed"] == {"train.epochs": {"from": 1, "to": 2}, "train.val_interval": {"from": 1, "to": 2}}
    assert max(record["epoch"] for record in records if record["kind"] == "eval") == 2
    capsys.readouterr()
    assert main(["run", "--resume", str(run / "checkpoints" / "latest.pth"), "train.seed=3", "--quiet"]) == 2
    assert "differs from the run's in train.seed: 0 -> 3" in capsys.readouterr().err


def test_a_run_started_on_one_machine_resumes_decoding_on_the_device_and_compiled(synthetic_cache, tiny_config,
                                                                                  tmp_path: Path) -> None:
    """How the run executes (``data.jpeg_decode``, ``train.compile``) may change on resuming, as on
    moving a CPU-started run to a GPU; both changes are recorded."""
    config = tiny_config(epochs=1)
    _trainer(config, tmp_path).fit()
    resumed_config = apply_overrides(config, ["train.epochs=2", "data.jpeg_decode=device", "train.compile=true"])
    _trainer(resumed_config, tmp_path, resume=tmp_path).fit()
    [resumed] = [record for record in _log(tmp_path) if record["kind"] == "resume"]
    assert resumed["changed"] == {"train.epochs": {"from": 1, "to": 2},
                                  "data.jpeg_decode": {"from": "loader", "to": "device"},
                                  "train.compile": {"from": False, "to": True}}
    assert max(record["epoch"] for record in _log(tmp_path) if record["kind"] == "eval") == 2


def test_resuming_with_another_architectures_weights_gives_the_key_table(synthetic_cache, tiny_config,
                                                                         tmp_path: Path) -> None:
    config = tiny_config(epochs=1)
    _trainer(config, tmp_path).fit()
    latest = tmp_path / "checkpoints" / "latest.pth"
    state = torch.load(latest, weights_only=True)
    state["model"] = {key.replace("head.", "decoder."): value for key, value in state["model"].items()}
    torch.save(state, latest)
    with pytest.raises(posecore.CheckpointError, match=r"does not fit TopdownHeatmapModel exactly \(strict\)") as error:
        _trainer(apply_overrides(config, ["train.epochs=2"]), tmp_path, resume=tmp_path).fit()
    assert "missing" in str(error.value) and "unexpected" in str(error.value) and "decoder." in str(error.value)


def test_init_weights_that_fit_badly_are_reported_and_can_be_fatal(synthetic_cache, tiny_config,
                                                                   tmp_path: Path) -> None:
    source = _trainer(tiny_config(epochs=0), tmp_path / "source")
    source.fit()
    state = {key.replace("head.final_layer", "head.other_layer"): value
             for key, value in source.model.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "init.pth")
    config = tiny_config(epochs=0, init_weights=str(tmp_path / "init.pth"))
    with pytest.warns(UserWarning, match=r"train.init_weights .* does not fit the model"):
        _trainer(config, tmp_path / "run").fit()  # quiet: the warning and the log still say it
    [record] = [r for r in _log(tmp_path / "run") if r["kind"] == "init_weights"]
    assert record["missing"] == ["head.final_layer.bias", "head.final_layer.weight"]
    assert record["unexpected"] == ["head.other_layer.bias", "head.other_layer.weight"]
    strict = apply_overrides(config, ["train.init_weights_strict=true"])
    with pytest.raises(posecore.CheckpointError, match=r"does not fit .* exactly \(strict\); nothing loaded"):
        _trainer(strict, tmp_path / "strict").fit()

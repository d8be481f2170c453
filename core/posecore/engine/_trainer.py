"""The trainer every plugin's model runs under, built on Hugging Face Accelerate.

Lifecycle of :meth:`Trainer.fit` (callbacks may implement any of these methods)::

    on_train_start -> for each epoch: [stage change] -> for each batch: forward/backward,
    and on every optimiser step: clip, step, EMA, log, on_step_end(trainer) -> on_epoch_end ->
    [evaluation, on_evaluate(trainer, tables)] -> checkpoint -> ... -> on_train_end

What the trainer knows of a model is the :class:`~posecore.models._base.PoseModel` contract:
``loss(batch)``, ``predict(batch, flip_test=...)`` and ``on_stage``. Staged schedules (freezing,
lr changes, method switches) come from ``train.stages`` in the config.

Determinism: the data order is a function of ``(seed, epoch)`` and every augmentation of
``(seed, epoch, index)``; the data loaders draw from their own generators, never the global one;
the global RNG states are saved in every checkpoint. A run resumed from any checkpoint therefore
continues exactly as the uninterrupted run would have (bit-exact on the CPU).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn
from torch.utils.data import DataLoader

from posecore._errors import CheckpointError, ConfigError, PosecoreError
from posecore._registry import Registries
from posecore.config import ExperimentConfig, dump_config, save_config
from posecore.data._sample import collate_samples
from posecore.engine._builder import build_codec, build_eval_sets, build_model, build_train_set
from posecore.engine._ema import ModelEMA
from posecore.engine._evaluation import evaluate, merge_gathered, move_to_device, predict_dataset
from posecore.engine._optim import apply_stage, build_optimizer, lr_factor, set_learning_rate, stage_at
from posecore.engine._reporting import MetricsLog, ProgressReporter, plot_curves, write_metrics_json
from posecore.engine._sampling import EpochSampler
from posecore.engine._state import capture_rng, load_train_state, restore_rng, save_train_state

__all__ = ["Callback", "RunResult", "Trainer", "TrainingDiverged"]


class TrainingDiverged(PosecoreError):
    """A loss, or the weights, became NaN or infinite; the last good checkpoint is kept."""


#: Config keys a resumed run may change, because the computation done so far stays valid under
#: them: more (or fewer) epochs, a lower learning rate or gradient clipping after a divergence, how
#: often to evaluate, save and log, and how the data is loaded. Any other change needs a new run.
RESUMABLE_KEYS = frozenset({
    "train.epochs", "train.optimizer.lr", "train.grad_clip", "train.val_interval", "train.checkpoint_interval",
    "train.log_interval", "data.num_workers", "data.eval_batch_size", "train.compile", "data.jpeg_decode",
})

#: What a run directory holds (see :class:`Trainer`): its presence means the folder holds a run.
RUN_FILES = ("config.yaml", "log.jsonl", "metrics.json", "curves.png", "checkpoints", "predictions", "tensorboard")


class Callback:
    """Base class for trainer callbacks; override the moments you need."""

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_step_end(self, trainer: Trainer) -> None: ...

    def on_epoch_end(self, trainer: Trainer) -> None: ...

    def on_evaluate(self, trainer: Trainer, tables: dict[str, dict[str, float]]) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...


class _LossForward(nn.Module):
    """Makes ``model.loss`` the forward pass, so DistributedDataParallel sees (and syncs) it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.model.loss(batch)


@attrs.frozen
class RunResult:
    """What :meth:`Trainer.fit` returns: the final tables by dataset and where things were written."""

    tables: dict[str, dict[str, float]]
    main_metric: str
    output_dir: Path

    @property
    def main_value(self) -> float | None:
        first = next(iter(self.tables.values()), {})
        return first.get(self.main_metric)


@attrs.define
class _Progress:
    """The counters a checkpoint stores; everything else is derived from them."""

    epoch: int = 0  # the epoch being (or next to be) trained
    batches_done: int = 0  # batches of ``epoch`` already trained on by this process
    optimizer_steps: int = 0
    best: dict[str, Any] | None = None
    history: list[dict[str, Any]] = attrs.Factory(list)


class Trainer:
    """Trains and evaluates one experiment config into ``output_dir``.

    Args:
        config: the experiment.
        output_dir: the run directory (config.yaml, log.jsonl, metrics.json, curves.png,
            checkpoints/, predictions/).
        registries: the component registries to build the experiment from (the CLI passes its plugin
            host's; the engine never reaches for a process-wide one).
        resume: a run directory or ``latest.pth`` to continue from. The config may differ from the
            run's only in :data:`RESUMABLE_KEYS`; the changes are recorded in ``log.jsonl``.
        overwrite: start over in an ``output_dir`` that holds a run, deleting that run's files;
            without it such a folder is refused (a finished run is never replaced by default).
        data_root: relative dataset file arguments are resolved against it.
        callbacks: :class:`Callback` objects.
        num_prediction_images: validation predictions drawn into ``predictions/`` at the end.
        quiet: no progress output (tests).
        sharded: shard weights, gradients and optimiser state over the processes (FSDP2, see
            :mod:`posecore.engine._sharding`); ``checkpoints/latest`` is then sharded too.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        output_dir: str | Path,
        *,
        registries: Registries,
        resume: str | Path | None = None,
        overwrite: bool = False,
        data_root: str | Path | None = None,
        callbacks: Sequence[Callback] = (),
        num_prediction_images: int = 8,
        quiet: bool = False,
        sharded: bool = False,
    ) -> None:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.utils import DistributedDataParallelKwargs

        if config.train.mixed_precision == "fp16" and not torch.cuda.is_available():
            raise ConfigError("train.mixed_precision 'fp16' needs a CUDA device; on the CPU use 'bf16' or 'no'")
        self.mixed_precision = _resolved_precision(config.train.mixed_precision)
        self.config = config
        self.output_dir = Path(output_dir)
        self.registries = registries
        self.data_root = data_root
        self.callbacks = list(callbacks)
        self.num_prediction_images = num_prediction_images
        # Accelerate keeps its settings in a process-wide singleton; a second Trainer in the same
        # process (a notebook, a test) may want another precision. The process group is kept.
        AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = Accelerator(
            mixed_precision=self.mixed_precision,
            cpu=not torch.cuda.is_available(),
            # Multi-dataset heads and frozen stages leave parameters without gradients in a step.
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        self.main = self.accelerator.is_main_process
        self.sharded = sharded
        if sharded:
            _check_shardable(config, self.accelerator.num_processes)
        self.progress = ProgressReporter(enabled=self.main and not quiet)
        self.state = _Progress()
        self._resume_state = _load_resume_state(resume, sharded) if resume else None
        self._resume_changes: dict[str, tuple[Any, Any]] = {}
        self._init_report: Any = None
        if self._resume_state is not None:
            self._check_resumable(self._resume_state, resume)
        else:
            self._claim_output_dir(overwrite)
        if self.main:
            _remove_stale_temporaries(self.output_dir)
        self.accelerator.wait_for_everyone()  # no process writes before every one has checked the folder
        self.log: MetricsLog | None = None

    # ------------------------------------------------------------------ set-up

    def _check_resumable(self, state: dict[str, Any], resume: str | Path | None) -> None:
        changes = config_changes(state.get("config") or "", self.config)
        refused = sorted(key for key in changes if key not in RESUMABLE_KEYS)
        if refused:
            detail = "; ".join(f"{key}: {changes[key][0]!r} -> {changes[key][1]!r}" for key in refused)
            raise ConfigError(
                f"cannot resume {resume}: the config differs from the run's in {detail}. A resumed run may change only "
                f"{', '.join(sorted(RESUMABLE_KEYS))}; start a new run (another --output) to change the rest"
            )
        self._resume_changes = changes

    def _claim_output_dir(self, overwrite: bool) -> None:
        """Refuse a folder that holds a run, unless asked to start over (then its run files go)."""
        found = [name for name in RUN_FILES if (self.output_dir / name).exists()]
        if not found:
            return
        if not overwrite:
            raise ConfigError(
                f"{self.output_dir} already holds a run ({', '.join(found)}); continue it with --resume "
                f"{self.output_dir}, choose another --output, or start over there with --overwrite (deletes that run)"
            )
        if self.main:
            import shutil

            for name in found:
                path = self.output_dir / name
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    def _setup(self) -> None:
        from accelerate.utils import set_seed

        config = self.config
        set_seed(config.train.seed)
        self.codec = build_codec(config, self.registries)
        self.model = build_model(config, self.registries, self.codec)
        if config.train.init_weights and self._resume_state is None:
            self._load_init_weights(config.train.init_weights)
        if self._resume_state is not None:
            self._load_resumed_weights(self._resume_state["model"])  # before the optimiser takes the parameters
        self.train_set = build_train_set(config, self.registries, self.codec, self.data_root) if config.train.epochs else None
        self.eval_sets = build_eval_sets(config, self.registries, self.codec, "val", self.data_root)
        self.ema = ModelEMA(self.model, config.train.ema_decay) if config.train.ema_decay else None
        self.model.to(self.accelerator.device)
        if self.ema is not None:
            self.ema.module.to(self.accelerator.device)
        if config.train.compile:
            compile_parts(self.model)
            if self.ema is not None:
                compile_parts(self.ema.module)  # what evaluation runs
        if self.sharded:
            import copy

            from posecore.engine._sharding import shard_model

            self._whole = copy.deepcopy(self.model)  # the whole weights, gathered for evaluation and best.pth
            self.train_module = _LossForward(self.model)
            shard_model(self.train_module)  # the optimiser must see the sharded parameters
            self.optimizer = self.accelerator.prepare(build_optimizer(self.model, config.train.optimizer))
        else:
            deepspeed = self.accelerator.state.deepspeed_plugin
            if deepspeed is not None:  # GPU only; DeepSpeed takes the batch size from here (the loaders are ours)
                deepspeed.deepspeed_config["train_micro_batch_size_per_gpu"] = config.data.batch_size
            self.train_module, self.optimizer = self.accelerator.prepare(
                _LossForward(self.model), build_optimizer(self.model, config.train.optimizer))
        data = config.data
        if self.train_set is not None:
            self.sampler = EpochSampler(self.train_set.sizes, shuffle=True, seed=config.train.seed,
                                        num_replicas=self.accelerator.num_processes,
                                        rank=self.accelerator.process_index, ratios=data.sampling_ratios)
            self.loader = DataLoader(
                self.train_set.dataset, batch_size=data.batch_size, sampler=self.sampler, num_workers=data.num_workers,
                collate_fn=collate_samples, drop_last=True, generator=torch.Generator(),
                pin_memory=self.accelerator.device.type == "cuda", persistent_workers=False,
            )
            self.batches_per_epoch = math.ceil(self.sampler.total / self.accelerator.num_processes) // data.batch_size
            if self.batches_per_epoch == 0:
                raise ConfigError(
                    f"data.batch_size {data.batch_size} is larger than the {self.sampler.total} training samples "
                    f"(per process); lower data.batch_size"
                )
            accumulation = config.train.grad_accum_steps
            self.steps_per_epoch = math.ceil(self.batches_per_epoch / accumulation)
            self.total_steps = self.steps_per_epoch * config.train.epochs
        if self.main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.output_dir / "config.yaml")
            self.log = MetricsLog(self.output_dir / "log.jsonl", self.output_dir / "tensorboard")
            self._log_loading()
        if self._resume_state is not None:
            self._restore(self._resume_state)

    def _load_init_weights(self, path: str) -> None:
        """``train.init_weights`` into the model: what fits loads, the rest keeps its initialisation.
        A missing file stops the run with the preset's description, which says where to get it."""
        from posecore._checkpoint import load_weights

        if not Path(path).exists():
            presets = self.registries.presets
            about = f" ({presets.get(self.config.name).description})" if self.config.name in presets else ""
            raise CheckpointError(f"train.init_weights: checkpoint not found: {path}; {self.config.name} starts from "
                                  f"it{about}. Set train.init_weights=null to train from the model's own "
                                  "initialisation instead")
        report = load_weights(self.model, path, registries=self.registries, strict=self.config.train.init_weights_strict,
                              warn=False)  # reported below, and in log.jsonl
        layout = f" (converter {report.converter!r})" if report.converter else ""
        self.progress.print(f"initial weights from {path}{layout}: {report.format()}")
        if not report.clean:
            import warnings

            warnings.warn(f"train.init_weights {path}{layout} does not fit the model; what fits was loaded, the rest "
                          f"keeps its initialisation (train.init_weights_strict=true makes this an error):\n"
                          f"{report.format()}", stacklevel=2)
        self._init_report = (path, report)

    def _load_resumed_weights(self, weights: dict[str, Any]) -> None:
        """The run's own weights, every tensor: a run resumed with another architecture's weights
        gets the key table, not a half-loaded model."""
        from posecore._checkpoint import load_weights

        load_weights(self.model, weights, strict=True, registries=self.registries,
                     name=f"the training state of {self.output_dir}")

    def _restore(self, state: dict[str, Any]) -> None:
        if self.sharded:
            from posecore.engine._sharding import load_optimizer_state

            load_optimizer_state(self.model, self.optimizer.optimizer, state["optimizer"])
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler") is not None and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.state = _Progress(state["epoch"], state["batches_done"], state["optimizer_steps"], state.get("best"),
                               list(state.get("history", [])))
        restore_rng(state["rng"])
        self.progress.print(f"resumed at epoch {self.state.epoch + 1}, batch {self.state.batches_done}, "
                            f"optimiser step {self.state.optimizer_steps}")

    # ------------------------------------------------------------------ the loop

    def fit(self) -> RunResult:
        """Train for ``train.epochs`` (evaluating every ``val_interval`` epochs and at the end)."""
        self._setup()
        self._call("on_train_start")
        config = self.config
        tables: dict[str, dict[str, float]] = {}
        stage_index = None
        try:
            while self.state.epoch < config.train.epochs:
                stage_index = self._enter_stage(stage_index)
                self._train_epoch()
                epoch = self.state.epoch
                self.state.epoch, self.state.batches_done = epoch + 1, 0
                self._call("on_epoch_end")
                last = self.state.epoch == config.train.epochs
                if self.eval_sets and (last or self.state.epoch % config.train.val_interval == 0):
                    tables = self._evaluate_and_record()
                self._save_latest()
            if not tables and self.eval_sets:
                tables = self._evaluate_and_record()  # epochs == 0, or resumed after the last epoch
            self._finish(tables)
        finally:
            self.progress.stop()
            if self.log is not None:
                self.log.close()
        self._call("on_train_end")
        return RunResult(tables, config.eval.main_metric, self.output_dir)

    def _enter_stage(self, current: int | None) -> int | None:
        found = stage_at(self.config.train.stages, self.state.epoch)
        if found is None or found[0] == current:
            return current
        index, stage = found
        counts = apply_stage(self.model, stage)
        self.model.on_stage(index, dict(stage.options))
        self.progress.print(f"stage {index} from epoch {stage.start_epoch + 1}: {counts['trainable']} parameter "
                            f"tensors train, {counts['frozen']} frozen")
        return index

    def _base_lr(self) -> float:
        found = stage_at(self.config.train.stages, self.state.epoch)
        if found is not None and found[1].lr is not None:
            return found[1].lr
        return self.config.train.optimizer.lr

    def _train_epoch(self) -> None:
        config, accelerator = self.config, self.accelerator
        accumulation = config.train.grad_accum_steps
        self.sampler.set_epoch(self.state.epoch, skip=self.state.batches_done * config.data.batch_size)
        self.train_set.set_epoch(self.state.epoch)
        self.model.train()
        self.progress.start(f"epoch {self.state.epoch + 1}/{config.train.epochs}", self.batches_per_epoch,
                            self.state.batches_done)
        base_lr = self._base_lr()
        window_loss, window_batches, window_images, window_start = 0.0, 0, 0, time.perf_counter()
        window_terms: dict[str, float] = {}
        for batch in self.loader:
            if self.state.batches_done >= self.batches_per_epoch:
                break
            batch = move_to_device(batch, accelerator.device)
            position = self.state.batches_done + 1
            ends_step = position % accumulation == 0 or position == self.batches_per_epoch
            lr = base_lr * lr_factor(config.train.schedule, self.state.optimizer_steps, self.steps_per_epoch,
                                     self.total_steps, base_lr)
            set_learning_rate(self.optimizer, lr)
            sync = contextlib.nullcontext() if ends_step else accelerator.no_sync(self.train_module)
            if self.sharded:
                self._broadcast_buffers()
            with sync:
                with accelerator.autocast():
                    losses = self.train_module(batch)
                loss = sum(value.float() for value in losses.values())
                self._check_finite(losses, loss)
                accelerator.backward(loss)
            self.state.batches_done = position
            images = int(batch["image"].shape[0])
            window_loss += float(loss.detach())
            for name, value in losses.items():
                window_terms[name] = window_terms.get(name, 0.0) + float(value.detach())
            window_batches += 1
            window_images += images
            self.progress.advance(1, images=images * accelerator.num_processes, loss=float(loss.detach()), lr=lr)
            if ends_step:
                self._optimizer_step()
                if self.main and self.state.optimizer_steps % config.train.log_interval == 0:
                    elapsed = time.perf_counter() - window_start
                    self._log({"kind": "train", "epoch": self.state.epoch, "step": self.state.optimizer_steps,
                               "loss": window_loss / window_batches, "lr": lr,
                               **{name: total / window_batches for name, total in window_terms.items()},
                               "images_per_s": window_images * accelerator.num_processes / max(elapsed, 1e-9)})
                    window_loss, window_batches, window_images, window_start = 0.0, 0, 0, time.perf_counter()
                    window_terms = {}
                interval = config.train.checkpoint_interval
                if interval and self.state.optimizer_steps % interval == 0 and position < self.batches_per_epoch:
                    self._save_latest()
                self._call("on_step_end")
        self.progress.stop()

    def _optimizer_step(self) -> None:
        clip = self.config.train.grad_clip
        if clip is not None:
            self.accelerator.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.optimizer_steps += 1
        if self.ema is not None and not self.accelerator.optimizer_step_was_skipped:
            self.ema.update(self.model)

    def _check_finite(self, losses: dict[str, torch.Tensor], total: torch.Tensor) -> None:
        finite = torch.isfinite(total.detach())
        if self.accelerator.num_processes > 1:  # every process must stop together
            finite = self.accelerator.reduce(finite.float(), reduction="mean") == 1
        if bool(finite):
            return
        bad = ", ".join(f"{name}={float(value.detach())}" for name, value in losses.items()
                        if not torch.isfinite(value.detach()).all()) or f"total={float(total.detach())}"
        latest = self.output_dir / "checkpoints" / "latest.pth"
        kept = f"the last good checkpoint is {latest}" if latest.exists() else "no checkpoint had been written yet"
        raise TrainingDiverged(
            f"training diverged at epoch {self.state.epoch + 1}, batch {self.state.batches_done + 1} "
            f"(optimiser step {self.state.optimizer_steps + 1}): {bad}; {kept}. " + _DIVERGED_ADVICE
        )

    # ------------------------------------------------------------------ evaluation and outputs

    def eval_model(self) -> nn.Module:
        """The weights evaluation uses: the EMA copy when EMA is on, the whole weights when sharded."""
        if self.sharded:
            return self._whole
        return self.ema.module if self.ema is not None else self.model

    def evaluate(self) -> dict[str, dict[str, float]]:
        """Evaluate the current weights on every ``data.val`` set; every process returns the tables."""
        from accelerate.utils import broadcast_object_list, gather_object

        accelerator, config = self.accelerator, self.config
        if self.sharded:
            self._gather_whole()
        tables: dict[str, dict[str, float]] = {}
        self.final_results: dict[str, list[Any]] = {}
        for eval_set in self.eval_sets:
            self.progress.start(f"eval {eval_set.label}", len(eval_set.dataset))
            local = predict_dataset(
                self.eval_model(), eval_set.dataset, batch_size=config.data.eval_batch_size,
                num_workers=config.data.num_workers, device=accelerator.device, flip_test=config.eval.flip_test,
                autocast=accelerator.autocast, num_replicas=accelerator.num_processes, rank=accelerator.process_index,
                on_batch=self.progress.advance,
            )
            self.progress.stop()
            merged = merge_gathered(gather_object(local) if accelerator.num_processes > 1 else local)
            table = evaluate(merged, eval_set.metrics) if self.main else {}
            if accelerator.num_processes > 1:
                table = broadcast_object_list([table])[0]
            tables[eval_set.label] = table
            self.final_results[eval_set.label] = merged
        return tables

    def _evaluate_and_record(self) -> dict[str, dict[str, float]]:
        tables = self.evaluate()
        main = self.config.eval.main_metric
        first = next(iter(tables.values()))
        if main not in first:
            raise ConfigError(f"eval.main_metric {main!r} is not among the metrics' results ({', '.join(first)})")
        value = float(first[main])
        record = {"kind": "eval", "epoch": self.state.epoch, "step": self.state.optimizer_steps, **first}
        self.state.history.append(record)
        self._log(record)
        best = self.state.best
        improved = best is None or (value > best["value"] if self.config.eval.higher_is_better else value < best["value"])
        if improved:
            self.state.best = {"metric": main, "value": value, "epoch": self.state.epoch}
            self._save_best(tables)
        self.progress.print(f"epoch {self.state.epoch}: {main} {value:.4f}" + (" (best so far)" if improved else
                            f" (best {self.state.best['value']:.4f} at epoch {self.state.best['epoch']})"))
        self._call("on_evaluate", tables)
        return tables

    def _log(self, record: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.write(record)

    def _log_loading(self) -> None:
        """What the run started from: the init weights' key report, or the resumed run's config changes."""
        if self._init_report is not None:
            path, report = self._init_report
            self._log({"kind": "init_weights", "source": str(path), "converter": report.converter,
                       "missing": list(report.missing), "unexpected": list(report.unexpected),
                       "wrong_shape": [key for key, _, _ in report.mismatched],
                       "dropped": [key for key, _ in report.dropped]})
        if self._resume_changes:
            self._log({"kind": "resume", "changed": {key: {"from": old, "to": new}
                                                     for key, (old, new) in self._resume_changes.items()}})
            self.progress.print("resumed with " + ", ".join(f"{key} {old!r} -> {new!r}"
                                                           for key, (old, new) in self._resume_changes.items()))

    def _require_finite(self, what: str, tensors: dict[str, torch.Tensor], across_processes: bool = False) -> None:
        """Stop before writing ``what`` from tensors that are not finite: an update can write NaN
        into the weights while its loss was still finite, and such a file must never replace the
        last good checkpoint. ``across_processes``: each process holds other tensors (shards), and
        all stop if any holds a bad one."""
        bad = [name for name, tensor in tensors.items()
               if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
        anywhere = len(bad)
        if across_processes:
            count = torch.tensor(float(anywhere), device=self.accelerator.device)
            anywhere = int(self.accelerator.reduce(count, reduction="sum"))
        if not anywhere:
            return
        bad = bad or ["pieces held by another process"]
        latest = self.output_dir / "checkpoints" / "latest.pth"
        kept = f"the last good checkpoint is {latest}" if latest.exists() else "no checkpoint had been written yet"
        raise TrainingDiverged(
            f"training diverged by optimiser step {self.state.optimizer_steps} (epoch {self.state.epoch + 1}): "
            f"{len(bad)} of {len(tensors)} tensors of the {what} hold NaN or infinite values ({', '.join(bad[:3])}"
            f"{', ...' if len(bad) > 3 else ''}), so it was not written; {kept}. " + _DIVERGED_ADVICE
        )

    def _broadcast_buffers(self) -> None:
        """Rank 0's buffers to every process before a forward pass, as DistributedDataParallel does
        (``broadcast_buffers``): FSDP leaves them alone, and a run must not depend on the wrapper."""
        import torch.distributed as dist

        for buffer in self.model.buffers():
            dist.broadcast(buffer.data, src=0)

    def _gather_whole(self) -> None:
        """Every process's copy of the whole weights becomes the sharded model's (collective). The
        buffers (BatchNorm's statistics) are not sharded: each process has its own, as under
        DistributedDataParallel, so evaluation and ``best.pth`` are those of a DDP run."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        self._whole.load_state_dict(get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True)))

    def _save_latest(self) -> None:
        if self.sharded:
            self._save_sharded_latest()
            return
        state = {
            **{f"model.{k}": v for k, v in self.model.state_dict().items()},
            **{f"optimizer.{k}": v for k, v in _optimizer_tensors(self.optimizer)},
            **({f"ema.{k}": v for k, v in self.ema.state_dict().items()} if self.ema is not None else {}),
        }
        self._require_finite("training state", state)
        if self.main:
            scaler = self.accelerator.scaler
            save_train_state(self.output_dir / "checkpoints" / "latest.pth", {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "rng": capture_rng(),
                "epoch": self.state.epoch,
                "batches_done": self.state.batches_done,
                "optimizer_steps": self.state.optimizer_steps,
                "best": self.state.best,
                "history": self.state.history,
                "config": dump_config(self.config),
            })
        self.accelerator.wait_for_everyone()

    def _save_sharded_latest(self) -> None:
        from torch.distributed.tensor import DTensor

        from posecore.engine._sharding import save_sharded_train_state

        state = {**{f"model.{k}": v for k, v in self.model.state_dict().items()},
                 **{f"optimizer.{k}": v for k, v in _optimizer_tensors(self.optimizer)}}
        self._require_finite("training state", {k: v.to_local() if isinstance(v, DTensor) else v
                                                for k, v in state.items()}, across_processes=True)
        save_sharded_train_state(self.output_dir / "checkpoints", self.model, self.optimizer.optimizer, {
            "epoch": self.state.epoch, "batches_done": self.state.batches_done,
            "optimizer_steps": self.state.optimizer_steps, "best": self.state.best, "history": self.state.history,
            "config": dump_config(self.config),
        }, capture_rng())

    def _save_best(self, tables: dict[str, dict[str, float]]) -> None:
        from posecore._checkpoint import save_checkpoint

        self._require_finite("best weights", self.eval_model().state_dict())
        if self.main:
            save_checkpoint({
                "state_dict": self.eval_model().state_dict(),
                "meta": {"preset": self.config.name, "epoch": self.state.epoch, "metrics": tables,
                         "config": dump_config(self.config), "keypoint_set": self._keypoint_set()},
            }, self.output_dir / "checkpoints" / "best.pth")
        self.accelerator.wait_for_everyone()

    def _keypoint_set(self) -> dict[str, Any] | None:
        """The first evaluation set's keypoint set, recorded so predict can flip and draw."""
        from posecore.config import unstructure

        meta = getattr(self.eval_sets[0].dataset, "meta", None) if self.eval_sets else None
        return unstructure(meta) if meta is not None else None

    def _finish(self, tables: dict[str, dict[str, float]]) -> None:
        if not self.main:
            return
        main = self.config.eval.main_metric
        if tables:
            first_label, first = next(iter(tables.items()))
            flat = dict(first)
            for label, table in list(tables.items())[1:]:
                flat.update({f"{label}/{key}": value for key, value in table.items()})
            write_metrics_json(self.output_dir / "metrics.json", main, flat,
                               {"best": self.state.best} if self.state.best else None)
            self.progress.table(f"{self.config.name}: epoch {self.state.epoch}", tables)
        plot_curves(self.output_dir / "curves.png", self.state.history + self._train_records(), main)
        self._draw_predictions()
        self.progress.print(f"outputs in {self.output_dir}")

    def _train_records(self) -> list[dict[str, Any]]:
        import json

        path = self.output_dir / "log.jsonl"
        if not path.exists():
            return []
        with path.open(encoding="utf-8") as handle:
            return [record for record in map(json.loads, handle) if record.get("kind") == "train"]

    def _draw_predictions(self) -> None:
        if not self.num_prediction_images or not getattr(self, "final_results", None):
            return
        from posecore.engine._drawing import draw_results

        label, results = next(iter(self.final_results.items()))
        dataset = next(s for s in self.eval_sets if s.label == label).dataset
        draw_results(results, dataset, self.output_dir / "predictions", self.num_prediction_images)

    def _call(self, name: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, name)(self, *args)


_DIVERGED_ADVICE = (
    "Resume it with a lower learning rate (posecore run --resume RUN_DIR train.optimizer.lr=...) or gradient "
    "clipping (train.grad_clip=...), or use train.mixed_precision=bf16 instead of fp16"
)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[tuple[str, torch.Tensor]]:
    """The optimiser's state tensors (momenta, variances), named ``<param>.<slot>``."""
    return [(f"{index}.{slot}", value) for index, slots in optimizer.state_dict()["state"].items()
            for slot, value in slots.items() if isinstance(value, torch.Tensor)]


def config_changes(saved: str, config: ExperimentConfig) -> dict[str, tuple[Any, Any]]:
    """The dotted keys whose values differ between a run's saved config (YAML text) and ``config``,
    each as ``(saved value, new value)``."""
    import yaml

    before, after = _flatten(yaml.safe_load(saved) or {}), _flatten(yaml.safe_load(dump_config(config)))
    return {key: (before.get(key), after.get(key)) for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)}


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (``train.optimizer.lr``); lists and scalars are the leaves."""
    if not isinstance(tree, dict) or (not tree and prefix):
        return {prefix.removesuffix("."): tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}{key}."))
    return flat


def compile_parts(model: nn.Module) -> None:
    """Put each part of ``model`` (its direct submodules: backbone, heads, necks...; the members
    of a ModuleList or ModuleDict one by one) through ``torch.compile``, in place, so checkpoints
    keep their keys. The parts, not the model: a model's ``loss`` and ``predict`` reach its parts
    but need not call the model itself (PoseBH's, PGVL's and Pose Anything's do not)."""
    for part in model.children():
        if isinstance(part, (nn.ModuleList, nn.ModuleDict)):
            compile_parts(part)
        else:
            part.compile()


def _check_shardable(config: ExperimentConfig, num_processes: int) -> None:
    if num_processes < 2:
        raise ConfigError("sharded training (--fsdp) shards the model over several processes: give --num-processes 2 "
                          "or more")
    if config.train.ema_decay:
        raise ConfigError("train.ema_decay is not supported with sharded training (--fsdp): set train.ema_decay=null "
                          "or train without --fsdp")
    if config.train.compile:
        raise ConfigError("train.compile is not supported with sharded training (--fsdp): set train.compile=false "
                          "or train without --fsdp")


def _load_resume_state(resume: str | Path, sharded: bool) -> dict[str, Any]:
    """The training state to resume: ``latest.pth``, or the sharded checkpoint of a run trained with --fsdp."""
    from posecore.engine._sharding import is_sharded_run, load_sharded_train_state

    from_shards = is_sharded_run(resume) or is_sharded_run(Path(resume).parent)
    if from_shards != sharded:
        raise ConfigError(f"cannot resume {resume}: it was trained {'with' if from_shards else 'without'} --fsdp; "
                          f"resume it the same way")
    return load_sharded_train_state(resume) if sharded else load_train_state(resume)


def _remove_stale_temporaries(output_dir: Path) -> None:
    """Half-written files a killed save left behind (``.latest.pth.*.tmp``: writes go to a temporary
    file that is renamed when complete, see :func:`posecore._fileio.atomic_write`)."""
    for folder in (output_dir, output_dir / "checkpoints"):
        if folder.is_dir():
            for stale in folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)


def _resolved_precision(setting: str) -> str:
    """``train.mixed_precision: auto``: bf16 autocast where it pays (a CUDA GPU that supports it;
    a CPU with AMX, :func:`~posecore._inference.cpu_has_amx`), else fp32 ("no")."""
    from posecore._inference import cpu_has_amx

    if setting != "auto":
        return setting
    native = torch.cuda.is_bf16_supported() if torch.cuda.is_available() else cpu_has_amx()
    return "bf16" if native else "no"

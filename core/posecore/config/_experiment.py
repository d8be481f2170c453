"""The experiment config: one frozen attrs tree that describes a whole run.

Everything method-specific lives in component specs (``model``, ``codec``, datasets, metrics),
whose arguments are checked against the registered factories' signatures (see
:mod:`posecore._registry`). What stays here is what the engine itself needs: data loading,
optimisation, staged schedules and evaluation.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from posecore.config._spec import ComponentSpec
from posecore.config._validators import at_least, in_range, one_of, optional

__all__ = [
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "OptimizerConfig",
    "ParamGroupRule",
    "ScheduleConfig",
    "StageConfig",
    "TrainConfig",
]

MixedPrecision = Literal["no", "fp16", "bf16", "auto"]
OptimizerType = Literal["adamw", "adam", "sgd"]
DecayExemptions = Literal["1d_and_listed", "none"]
ScheduleType = Literal["step", "cosine", "constant"]
JpegDecode = Literal["loader", "device"]

_MIXED_PRECISION = ("no", "fp16", "bf16", "auto")
_OPTIMIZERS = ("adamw", "adam", "sgd")
_SCHEDULES = ("step", "cosine", "constant")
#: Where JPEG files are decoded: in the data loader (its workers), or on the model's device.
JPEG_DECODE_PLACES = ("loader", "device")


def _specs(value: Any) -> tuple[ComponentSpec, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, ComponentSpec)) or hasattr(value, "keys"):
        value = [value]
    return tuple(ComponentSpec.parse(v) for v in value)


def _optional_spec(value: Any) -> ComponentSpec | None:
    return None if value is None else ComponentSpec.parse(value)


@attrs.frozen
class DataConfig:
    """Datasets and loading.

    Attributes:
        train: training datasets; several are concatenated and every sample carries its
            ``dataset_index`` (multi-dataset training, PoseBH). A dataset spec may also carry
            ``codec`` (its own targets) and ``pipeline`` (its own transforms), read by the engine
            and never passed to the dataset (:func:`posecore.engine._assembly_rules.split_dataset_spec`);
            evaluation datasets may carry ``pipeline`` only.
        val, test: evaluation datasets (each evaluated separately).
        sampling_ratios: per-train-dataset sampling weights; ``None`` samples in proportion
            to dataset sizes (what ViTPose++ and PoseBH do).
        batch_size: per-process training batch size.
        eval_batch_size: per-process evaluation batch size.
        num_workers: data-loader worker processes.
        input_size: network input as (width, height), e.g. (192, 256).
        train_pipeline, test_pipeline: ``transforms`` specs; empty means the standard top-down
            pipeline (:func:`posecore.data.standard_topdown_pipeline`). The codec, input size and
            UDP switch are given to the transforms that take them, not repeated in every spec.
        jpeg_decode: ``loader`` decodes images in the data loader; ``device`` has the loader
            read JPEG files only and decodes and crops them on the model's device, batched
            (nvJPEG on a GPU, where decoding in the workers bounds training; see
            :mod:`posecore.data._device_decode`). Other formats are decoded in the loader either way.
    """

    train: tuple[ComponentSpec, ...] = attrs.field(default=(), converter=_specs)
    val: tuple[ComponentSpec, ...] = attrs.field(default=(), converter=_specs)
    test: tuple[ComponentSpec, ...] = attrs.field(default=(), converter=_specs)
    sampling_ratios: tuple[float, ...] | None = attrs.field(default=None)
    batch_size: int = attrs.field(default=32, validator=at_least(1))
    eval_batch_size: int = attrs.field(default=32, validator=at_least(1))
    num_workers: int = attrs.field(default=2, validator=at_least(0))
    input_size: tuple[int, int] = attrs.field(default=(192, 256))
    train_pipeline: tuple[ComponentSpec, ...] = attrs.field(default=(), converter=_specs)
    test_pipeline: tuple[ComponentSpec, ...] = attrs.field(default=(), converter=_specs)
    jpeg_decode: JpegDecode = attrs.field(default="loader", validator=one_of(JPEG_DECODE_PLACES))

    @sampling_ratios.validator
    def _check_ratios(self, attribute: attrs.Attribute, value: tuple[float, ...] | None) -> None:
        if value is None:
            return
        if len(value) != len(self.train):
            raise ValueError(
                f"DataConfig.sampling_ratios has {len(value)} entries but there are "
                f"{len(self.train)} training datasets; give one ratio per dataset"
            )
        if any(r < 0 for r in value) or sum(value) <= 0:
            raise ValueError(f"DataConfig.sampling_ratios must be >= 0 and not all 0; got {value}")

    @input_size.validator
    def _check_input_size(self, attribute: attrs.Attribute, value: tuple[int, int]) -> None:
        if len(value) != 2 or min(value) < 1:
            raise ValueError(f"DataConfig.input_size must be (width, height) > 0; got {value!r}")


@attrs.frozen
class ParamGroupRule:
    """Scale lr / weight decay for parameters whose name matches ``pattern`` (fnmatch glob).

    PGVL, for example, trains the text tower at ``lr_mult: 0`` and the backbone at ``0.1``.
    The first matching rule wins.
    """

    pattern: str
    lr_mult: float = attrs.field(default=1.0, validator=at_least(0.0))
    decay_mult: float = attrs.field(default=1.0, validator=at_least(0.0))


@attrs.frozen
class OptimizerConfig:
    """Optimiser and parameter groups; ``layer_decay`` enables layer-wise lr decay (ViTs).

    ``decay_exemptions`` says which parameters never see weight decay before ``param_groups``
    rules apply: ``"1d_and_listed"`` (timm's and mmpose 1.x's convention: biases, norms and
    what a module lists in ``no_weight_decay()``), or ``"none"`` (mmcv 1.x's default optimiser
    constructor: every parameter decays unless a rule's ``decay_mult`` says otherwise), which
    methods trained that way need to run the code path their published figures came from.
    """

    type: OptimizerType = attrs.field(default="adamw", validator=one_of(_OPTIMIZERS))
    lr: float = attrs.field(default=5e-4, validator=in_range(0.0, 10.0, low_open=True))
    weight_decay: float = attrs.field(default=0.1, validator=at_least(0.0))
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = attrs.field(default=0.9, validator=in_range(0.0, 1.0))
    layer_decay: float | None = attrs.field(
        default=None, validator=optional(in_range(0.0, 1.0, low_open=True))
    )
    param_groups: tuple[ParamGroupRule, ...] = ()
    decay_exemptions: DecayExemptions = attrs.field(default="1d_and_listed",
                                                    validator=one_of(("1d_and_listed", "none")))


@attrs.frozen
class ScheduleConfig:
    """Learning-rate schedule: linear warmup, then step decay at ``milestones`` (epochs) or cosine."""

    type: ScheduleType = attrs.field(default="step", validator=one_of(_SCHEDULES))
    warmup_iters: int = attrs.field(default=500, validator=at_least(0))
    warmup_ratio: float = attrs.field(default=0.001, validator=in_range(0.0, 1.0))
    milestones: tuple[int, ...] = attrs.field(default=(170, 200))
    gamma: float = attrs.field(default=0.1, validator=in_range(0.0, 1.0, low_open=True))
    min_lr: float = attrs.field(default=0.0, validator=at_least(0.0))

    @milestones.validator
    def _check_milestones(self, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
        if list(value) != sorted(set(value)):
            raise ValueError(f"ScheduleConfig.milestones must be strictly increasing; got {value}")


@attrs.frozen
class StageConfig:
    """One phase of a staged schedule, applied by the trainer from ``start_epoch`` on.

    Attributes:
        start_epoch: first epoch (0-based) of this stage.
        trainable: glob patterns of parameter names that train in this stage; all others are
            frozen. ``("*",)`` trains everything.
        lr: a new base learning rate from this stage on, or ``None`` to keep the schedule's.
        options: free-form switches handed to the model's ``on_stage`` method (e.g. PoseBH's
            ``{freeze_prototypes: true, css: true}``), so staged behaviour is declared here
            rather than hand-coded in a model.
    """

    start_epoch: int = attrs.field(validator=at_least(0))
    trainable: tuple[str, ...] = ("*",)
    lr: float | None = attrs.field(default=None, validator=optional(in_range(0.0, 10.0)))
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class TrainConfig:
    """Optimisation settings for the trainer.

    Attributes:
        init_weights: a checkpoint the model starts from, in any layout ``posecore.load_weights``
            recognises (a released model, another run's ``best.pth``), loaded non-strictly before
            training; its key report is printed, warned about when keys do not fit, and written
            to the run's ``log.jsonl``; parameters it does not fit keep their initialisation. A
            relative path is read from the working directory. Not read when resuming: the
            training state holds the weights.
        init_weights_strict: make any mismatch between ``init_weights`` and the model an error.
        val_interval: evaluate every this many epochs (and always after the last one).
        checkpoint_interval: also write ``latest.pth`` every this many optimiser steps (0: only at
            the end of each epoch); a run killed mid-epoch resumes from there bit-exactly.
        log_interval: optimiser steps between lines of the JSONL log.
        compile: run each part of the model (backbone, heads...; and of its EMA copy) through
            ``torch.compile``, in place, so checkpoints keep their keys; the glue between parts,
            the losses' reductions, keypoint decoding and the optimiser stay eager. It fuses
            element-wise work and cuts kernel launches, where a GPU loses much of its time on a
            ViT; compiling costs tens of seconds at the first training step and again at the
            first evaluation. Not with sharded training (``--fsdp``).
    """

    epochs: int = attrs.field(default=210, validator=at_least(0))
    init_weights: str | None = None
    init_weights_strict: bool = False
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    stages: tuple[StageConfig, ...] = attrs.field(default=())
    mixed_precision: MixedPrecision = attrs.field(default="no", validator=one_of(_MIXED_PRECISION))
    grad_accum_steps: int = attrs.field(default=1, validator=at_least(1))
    grad_clip: float | None = attrs.field(default=None, validator=optional(in_range(0.0, 1e9, low_open=True)))
    ema_decay: float | None = attrs.field(default=None, validator=optional(in_range(0.0, 1.0, low_open=True)))
    seed: int = 0
    val_interval: int = attrs.field(default=10, validator=at_least(1))
    checkpoint_interval: int = attrs.field(default=0, validator=at_least(0))
    log_interval: int = attrs.field(default=20, validator=at_least(1))
    compile: bool = False

    @stages.validator
    def _check_stages(self, attribute: attrs.Attribute, value: tuple[StageConfig, ...]) -> None:
        starts = [stage.start_epoch for stage in value]
        if starts != sorted(set(starts)):
            raise ValueError(f"TrainConfig.stages must start at strictly increasing epochs; got {starts}")
        if starts and self.epochs and starts[-1] >= self.epochs:
            raise ValueError(
                f"TrainConfig.stages: a stage starts at epoch {starts[-1]} but training has only "
                f"{self.epochs} epochs (0..{self.epochs - 1})"
            )


@attrs.frozen
class EvalConfig:
    """Evaluation: metrics, the main metric that picks the best checkpoint, and flip test."""

    metrics: tuple[ComponentSpec, ...] = attrs.field(default=(), converter=_specs)
    main_metric: str = "AP"
    higher_is_better: bool = True
    flip_test: bool = True


@attrs.frozen
class ExperimentConfig:
    """A complete experiment: model, data, codec, training and evaluation.

    ``plugins`` lists the plugins whose components the config uses, so loading the file on a
    machine without them says which distribution to install.
    """

    name: str
    model: ComponentSpec = attrs.field(converter=ComponentSpec.parse)
    data: DataConfig = DataConfig()
    codec: ComponentSpec | None = attrs.field(default=None, converter=_optional_spec)
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    plugins: tuple[str, ...] = ()

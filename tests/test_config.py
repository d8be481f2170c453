"""Experiment configs: YAML round trip, atomic saving, load errors, validators and overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from posecore._errors import ConfigError
from posecore.config import (
    ComponentSpec,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    OptimizerConfig,
    ParamGroupRule,
    ScheduleConfig,
    StageConfig,
    TrainConfig,
    apply_overrides,
    atomic_write_text,
    dump_config,
    load_config,
    parse_override,
    save_config,
)

# ---------------------------------------------------------------------------------------------
# helpers


def _full_config() -> ExperimentConfig:
    """A config that sets something in every section, with nested specs and tuples."""
    return ExperimentConfig(
        name="rt-demo",
        model={
            "type": "topdown_heatmap",
            "backbone": {"type": "vit", "depth": 12, "drop_path_rate": 0.3, "out_indices": [3, 7, 11]},
            "heads": [{"type": "heatmap_deconv", "num_keypoints": 17}, "aux_head"],
            "input_size": [192, 256],
        },
        data=DataConfig(
            train=[
                {"type": "coco_style", "ann_file": "coco/train.json", "metainfo": "coco.json"},
                "crowdpose_train",
            ],
            val=[{"type": "coco_style", "ann_file": "coco/val.json", "metainfo": "coco.json", "dataset_index": 0}],
            sampling_ratios=(0.75, 0.25),
            batch_size=16,
            eval_batch_size=8,
            num_workers=0,
            input_size=(288, 384),
        ),
        codec={"type": "msra_heatmap", "sigma": 2.0, "heatmap_size": [48, 64]},
        train=TrainConfig(
            epochs=30,
            optimizer=OptimizerConfig(
                type="sgd",
                lr=0.01,
                betas=(0.8, 0.99),
                layer_decay=0.75,
                param_groups=(ParamGroupRule("backbone.*", lr_mult=0.1), ParamGroupRule("*.bias", decay_mult=0.0)),
            ),
            schedule=ScheduleConfig(type="cosine", milestones=(10, 20), warmup_iters=0, min_lr=1e-6),
            stages=(
                StageConfig(0, trainable=("head.*",)),
                StageConfig(10, trainable=("*",), lr=1e-3, options={"css": True, "freeze_prototypes": False}),
            ),
            mixed_precision="bf16",
            grad_accum_steps=2,
            grad_clip=1.0,
            ema_decay=0.999,
            seed=7,
            val_interval=5,
        ),
        eval=EvalConfig(metrics=["coco_ap", {"type": "pck", "thr": 0.2}], main_metric="PCK", higher_is_better=True, flip_test=False),
        plugins=("posebh", "pgvl"),
    )


def _write_yaml(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _base_mapping(**sections: object) -> dict:
    data: dict = {"name": "exp", "model": {"type": "m"}}
    data.update(sections)
    return data


def _load_error(tmp_path: Path, data: object) -> str:
    path = _write_yaml(tmp_path / "exp.yaml", data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message, f"error does not name the file: {message}"
    return message.replace(str(path), "<file>")  # checks below must not match the test's own tmp_path


# ---------------------------------------------------------------------------------------------
# YAML round trip


def test_yaml_round_trip_gives_an_equal_config(tmp_path: Path) -> None:
    config = _full_config()
    path = save_config(config, tmp_path / "exp.yaml")
    loaded = load_config(path)
    assert loaded == config
    # Nested specs come back as ComponentSpecs and typed sequences as tuples, not lists.
    assert loaded.data.train == (
        ComponentSpec("coco_style", {"ann_file": "coco/train.json", "metainfo": "coco.json"}),
        ComponentSpec("crowdpose_train"),
    )
    assert loaded.codec == ComponentSpec("msra_heatmap", {"sigma": 2.0, "heatmap_size": [48, 64]})
    assert loaded.eval.metrics[1] == ComponentSpec("pck", {"thr": 0.2})
    assert loaded.data.input_size == (288, 384) and isinstance(loaded.data.input_size, tuple)
    assert isinstance(loaded.data.sampling_ratios, tuple)
    assert isinstance(loaded.train.schedule.milestones, tuple)
    assert isinstance(loaded.train.optimizer.betas, tuple)
    assert loaded.train.stages[0].trainable == ("head.*",)
    assert loaded.train.stages[1].options == {"css": True, "freeze_prototypes": False}
    assert loaded.train.optimizer.param_groups[1] == ParamGroupRule("*.bias", decay_mult=0.0)
    assert loaded.plugins == ("posebh", "pgvl")
    # A second trip writes byte-identical text.
    assert dump_config(loaded) == dump_config(config)


def test_dump_writes_plain_yaml_with_every_field() -> None:
    config = ExperimentConfig(name="minimal", model="simple")
    text = dump_config(config)
    assert "!!python" not in text
    data = yaml.safe_load(text)
    assert data["model"] == {"type": "simple"}  # a bare name is written in the mapping form
    assert data["codec"] is None
    assert data["data"]["input_size"] == [192, 256]  # tuples become YAML lists
    assert data["train"]["mixed_precision"] == "no"  # quoted, so it stays a string
    assert set(data) == {"name", "model", "data", "codec", "train", "eval", "plugins"}
    assert set(data["train"]) == {
        "epochs", "init_weights", "init_weights_strict", "optimizer", "schedule", "stages", "mixed_precision", "grad_accum_steps",
        "grad_clip", "ema_decay", "seed", "val_interval", "checkpoint_interval", "log_interval", "compile",
    }
    assert data["data"]["jpeg_decode"] == "loader" and data["train"]["compile"] is False


def test_round_trip_keeps_component_spec_objects_and_tuples_inside_args(tmp_path: Path) -> None:
    """Specs built in Python (presets) may nest ComponentSpec objects and tuples in ``args``;
    the config read back from its own YAML should equal the one that was saved."""
    config = ExperimentConfig(
        name="nested",
        model=ComponentSpec("topdown", {"backbone": ComponentSpec("vit", {"depth": 2}), "input_size": (192, 256)}),
    )
    loaded = load_config(save_config(config, tmp_path / "nested.yaml"))
    assert loaded == config


# ---------------------------------------------------------------------------------------------
# atomic saving


def test_save_config_creates_parents_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "a" / "config.yaml"
    returned = save_config(_full_config(), target)
    assert returned == target
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.yaml"]
    assert target.read_text(encoding="utf-8") == dump_config(_full_config())


def test_save_config_replaces_an_existing_file_by_rename(tmp_path: Path) -> None:
    target = tmp_path / "config.yaml"
    target.write_text("old contents\n", encoding="utf-8")
    old_inode = target.stat().st_ino
    with open(target, encoding="utf-8") as old_handle:
        save_config(ExperimentConfig(name="new", model="m"), target)
        # Written beside and renamed into place: the old file's data was never overwritten.
        assert old_handle.read() == "old contents\n"
    assert target.stat().st_ino != old_inode
    assert load_config(target) == ExperimentConfig(name="new", model="m")
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_failed_atomic_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "config.yaml"
    target.write_text("name: old\nmodel: m\n", encoding="utf-8")
    # A lone surrogate cannot be encoded as UTF-8: the write fails half way.
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(target, "name: new\n" + "x" * 100_000 + "\ud800")
    assert target.read_text(encoding="utf-8") == "name: old\nmodel: m\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_saved_config_gets_the_same_permissions_as_a_normally_written_file(tmp_path: Path) -> None:
    reference = tmp_path / "reference.yaml"
    reference.write_text("x: 1\n", encoding="utf-8")
    target = save_config(ExperimentConfig(name="perm", model="m"), tmp_path / "config.yaml")
    assert oct(target.stat().st_mode & 0o777) == oct(reference.stat().st_mode & 0o777)


# ---------------------------------------------------------------------------------------------
# load errors name the file


@pytest.mark.reliability
def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(path)
    assert str(path) in str(info.value)


@pytest.mark.reliability
def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\nmodel: m\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just a string\n", "str"), ("", "NoneType")])
def test_non_mapping_top_level(tmp_path: Path, text: str, kind: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    message = str(info.value).replace(str(path), "<file>")
    assert message == f"<file> must hold a mapping at the top level; got {kind}"


@pytest.mark.reliability
def test_file_that_is_not_utf8_gives_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\nmodel: m\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)


@pytest.mark.reliability
def test_unknown_key_suggests_the_near_name(tmp_path: Path) -> None:
    message = _load_error(tmp_path, _base_mapping(train={"epochz": 3}))
    assert "unknown key 'epochz'" in message
    assert "did you mean 'epochs'?" in message
    assert "train" in message
    assert "val_interval" in message  # the allowed keys are listed


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = _load_error(tmp_path, {"name": "x", "model": "m", "pluginz": ["a"]})
    assert "unknown key 'pluginz'" in message and "did you mean 'plugins'?" in message


@pytest.mark.reliability
@pytest.mark.parametrize("key", ["name", "model"])
def test_missing_required_key(tmp_path: Path, key: str) -> None:
    data = _base_mapping()
    del data[key]
    message = _load_error(tmp_path, data)
    assert "required key is missing" in message
    assert f"@ {key}" in message


def test_missing_required_key_in_a_stage(tmp_path: Path) -> None:
    message = _load_error(tmp_path, _base_mapping(train={"stages": [{"trainable": ["*"]}]}))
    assert "required key is missing" in message and "train.stages[0].start_epoch" in message


def test_component_without_type(tmp_path: Path) -> None:
    message = _load_error(tmp_path, _base_mapping(data={"train": [{"ann_file": "a.json"}]}))
    assert "'type'" in message and "data.train[0]" in message


def test_wrong_scalar_type(tmp_path: Path) -> None:
    message = _load_error(tmp_path, _base_mapping(train={"epochs": "many"}))
    assert "train.epochs" in message and "int" in message


# ---------------------------------------------------------------------------------------------
# validators: each message names the field and the allowed values


def test_mixed_precision_lists_allowed_values(tmp_path: Path) -> None:
    message = _load_error(tmp_path, _base_mapping(train={"mixed_precision": "fp8"}))
    assert "train.mixed_precision" in message
    assert "'no'" in message and "'fp16'" in message and "'bf16'" in message


@pytest.mark.parametrize("how", ["yaml-file", "override"])
def test_mixed_precision_no_written_plainly_is_accepted(tmp_path: Path, how: str) -> None:
    """``no`` is the documented default; users write it unquoted (YAML 1.1 reads it as false)."""
    if how == "yaml-file":
        path = tmp_path / "exp.yaml"
        path.write_text("name: x\nmodel: m\ntrain:\n  mixed_precision: no\n", encoding="utf-8")
        config = load_config(path)
    else:
        start = ExperimentConfig(name="x", model="m", train=TrainConfig(mixed_precision="bf16"))
        config = apply_overrides(start, ["train.mixed_precision=no"])
    assert config.train.mixed_precision == "no"


def test_negative_epochs(tmp_path: Path) -> None:
    message = _load_error(tmp_path, _base_mapping(train={"epochs": -1}))
    assert "TrainConfig.epochs must be >= 0; got -1" in message


def test_validators_run_on_direct_construction() -> None:
    with pytest.raises(ValueError, match=r"TrainConfig.grad_accum_steps must be >= 1; got 0"):
        TrainConfig(grad_accum_steps=0)
    with pytest.raises(ValueError, match=r"OptimizerConfig.lr must be in \(0.0, 10.0\]; got 0"):
        OptimizerConfig(lr=0)
    with pytest.raises(ValueError, match=r"ScheduleConfig.warmup_ratio must be in \[0.0, 1.0\]; got 1.5"):
        ScheduleConfig(warmup_ratio=1.5)
    with pytest.raises(ValueError, match=r"OptimizerConfig.type must be one of 'adamw', 'adam', 'sgd'; got 'lamb'"):
        OptimizerConfig(type="lamb")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"OptimizerConfig.layer_decay must be in \(0.0, 1.0\]"):
        OptimizerConfig(layer_decay=0.0)
    # optional(): None is allowed, boundaries are inclusive where documented.
    assert OptimizerConfig(layer_decay=None, lr=10.0).lr == 10.0
    assert TrainConfig(ema_decay=1.0, grad_clip=None).ema_decay == 1.0


def test_optimizer_type_lists_allowed_values(tmp_path: Path) -> None:
    message = _load_error(tmp_path, _base_mapping(train={"optimizer": {"type": "adamx"}}))
    assert "train.optimizer.type" in message and "'adamw', 'adam', 'sgd'" in message


@pytest.mark.parametrize("starts", [[5, 3], [4, 4]])
def test_stages_out_of_order(tmp_path: Path, starts: list[int]) -> None:
    stages = [{"start_epoch": s} for s in starts]
    message = _load_error(tmp_path, _base_mapping(train={"epochs": 10, "stages": stages}))
    assert "TrainConfig.stages must start at strictly increasing epochs" in message
    assert str(starts) in message


def test_stage_starting_past_the_last_epoch(tmp_path: Path) -> None:
    stages = [{"start_epoch": 0}, {"start_epoch": 5}]
    message = _load_error(tmp_path, _base_mapping(train={"epochs": 5, "stages": stages}))
    assert "stage starts at epoch 5" in message and "only 5 epochs (0..4)" in message
    # The last allowed start loads fine.
    path = _write_yaml(tmp_path / "ok.yaml", _base_mapping(train={"epochs": 6, "stages": stages}))
    assert [s.start_epoch for s in load_config(path).train.stages] == [0, 5]


def test_negative_stage_start(tmp_path: Path) -> None:
    message = _load_error(tmp_path, _base_mapping(train={"stages": [{"start_epoch": -1}]}))
    assert "StageConfig.start_epoch must be >= 0; got -1" in message and "train.stages[0]" in message


def test_sampling_ratios_length_mismatch(tmp_path: Path) -> None:
    data = _base_mapping(data={"train": ["a", "b", "c"], "sampling_ratios": [1, 2]})
    message = _load_error(tmp_path, data)
    assert "DataConfig.sampling_ratios has 2 entries but there are 3 training datasets" in message


def test_sampling_ratios_all_zero(tmp_path: Path) -> None:
    data = _base_mapping(data={"train": ["a", "b"], "sampling_ratios": [0, 0]})
    message = _load_error(tmp_path, data)
    assert "sampling_ratios must be >= 0 and not all 0" in message


@pytest.mark.parametrize("milestones", [[20, 10], [10, 10]])
def test_milestones_not_increasing(tmp_path: Path, milestones: list[int]) -> None:
    message = _load_error(tmp_path, _base_mapping(train={"schedule": {"milestones": milestones}}))
    assert "ScheduleConfig.milestones must be strictly increasing" in message
    assert "train.schedule" in message


def test_input_size_must_be_positive_pair(tmp_path: Path) -> None:
    message = _load_error(tmp_path, _base_mapping(data={"input_size": [0, 256]}))
    assert "DataConfig.input_size must be (width, height) > 0" in message


@pytest.mark.reliability
def test_several_errors_are_all_reported(tmp_path: Path) -> None:
    message = _load_error(
        tmp_path,
        _base_mapping(train={"optimizer": {"type": "adamx"}, "schedule": {"type": "linear"}}),
    )
    assert "train.optimizer.type" in message and "train.schedule.type" in message
    assert "'step', 'cosine', 'constant'" in message


# ---------------------------------------------------------------------------------------------
# overrides


def _override_base() -> ExperimentConfig:
    return ExperimentConfig(
        name="ov",
        model={"type": "topdown", "backbone": {"type": "vit", "depth": 12}, "head": "deconv"},
        data=DataConfig(train=[{"type": "coco_style", "ann_file": "a.json"}, {"type": "coco_style", "ann_file": "b.json"}]),
        train=TrainConfig(epochs=20, stages=(StageConfig(0), StageConfig(10))),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train.epochs=5", (["train", "epochs"], 5)),
        ("train.optimizer.lr=0.5", (["train", "optimizer", "lr"], 0.5)),
        ("eval.flip_test=false", (["eval", "flip_test"], False)),
        ("train.grad_clip=null", (["train", "grad_clip"], None)),
        ("train.schedule.milestones=[5, 8]", (["train", "schedule", "milestones"], [5, 8])),
        ("model.opts={a: 1, b: [x]}", (["model", "opts"], {"a": 1, "b": ["x"]})),
        ("name='5'", (["name"], "5")),
        ("name=", (["name"], "")),
        ("name=a=b", (["name"], "a=b")),
        (" train.seed = 3", (["train", "seed"], 3)),
    ],
)
def test_parse_override_reads_values_as_yaml(text: str, expected: tuple) -> None:
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["train.epochs", "=5", " =5", ""])
def test_malformed_override_text(text: str) -> None:
    with pytest.raises(ConfigError, match=r"must look like key\.sub=value") as info:
        parse_override(text)
    assert repr(text) in str(info.value)


def test_override_value_that_is_not_yaml() -> None:
    with pytest.raises(ConfigError, match="cannot parse value") as info:
        apply_overrides(_override_base(), ["train.schedule.milestones=[1,"])
    assert "'train.schedule.milestones=[1,'" in str(info.value)


def test_apply_scalar_list_and_null_overrides() -> None:
    base = _override_base()
    new = apply_overrides(
        base,
        [
            "train.epochs=40",
            "train.optimizer.lr=1e-3",  # YAML 1.1 reads this as a string; the converter makes it a float
            "train.schedule.milestones=[15, 30]",
            "train.grad_clip=2.5",
            "train.grad_clip=null",  # later overrides win
            "eval.flip_test=false",
            "plugins=[posebh]",
            "data.input_size=[288, 384]",
        ],
    )
    assert new.train.epochs == 40
    assert new.train.optimizer.lr == pytest.approx(1e-3) and isinstance(new.train.optimizer.lr, float)
    assert new.train.schedule.milestones == (15, 30)
    assert new.train.grad_clip is None
    assert new.eval.flip_test is False
    assert new.plugins == ("posebh",)
    assert new.data.input_size == (288, 384)
    # The original is untouched and unrelated fields are kept.
    assert base.train.epochs == 20 and base.plugins == ()
    assert new.model == base.model and new.data.train == base.data.train


def test_no_overrides_returns_the_same_object() -> None:
    base = _override_base()
    assert apply_overrides(base, []) is base


def test_override_into_component_spec_args() -> None:
    base = _override_base()
    new = apply_overrides(base, ["model.backbone.depth=2", "model.backbone.drop_path_rate=0.1", "model.head=simple"])
    assert new.model == ComponentSpec("topdown", {"backbone": {"type": "vit", "depth": 2, "drop_path_rate": 0.1}, "head": "simple"})
    assert base.model.args["backbone"]["depth"] == 12


def test_override_list_index() -> None:
    new = apply_overrides(_override_base(), ["data.train.1.ann_file=c.json", "train.stages.1.lr=0.01"])
    assert new.data.train[0] == ComponentSpec("coco_style", {"ann_file": "a.json"})
    assert new.data.train[1] == ComponentSpec("coco_style", {"ann_file": "c.json"})
    assert new.train.stages[1] == StageConfig(10, lr=0.01)
    assert new.train.stages[0] == StageConfig(0)


@pytest.mark.reliability
@pytest.mark.parametrize("index", ["2", "x"])
def test_override_bad_list_index(index: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(_override_base(), [f"data.train.{index}.ann_file=c.json"])
    message = str(info.value)
    assert f"'data.train.{index}'" in message and "list of 2 items (0..1)" in message


@pytest.mark.parametrize(
    ("text", "where", "suggestion"),
    [
        ("train.epoch=5", "'train.epoch'", "'epochs'"),
        ("trian.epochs=5", "'trian'", "'train'"),
        ("train.optimizer.weight_decy=0.0", "'train.optimizer.weight_decy'", "'weight_decay'"),
        ("data.bach_size=8", "'data.bach_size'", "'batch_size'"),
    ],
)
@pytest.mark.reliability
def test_override_unknown_key_suggests_near_name(text: str, where: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(_override_base(), [text])
    message = str(info.value)
    assert repr(text) in message
    assert f"unknown key {where}" in message and f"did you mean {suggestion}?" in message


def test_override_unknown_key_inside_list_element_is_caught_on_structure() -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(_override_base(), ["train.stages.0.start_epohc=1"])
    message = str(info.value)
    assert "unknown key 'start_epohc' (did you mean 'start_epoch'?)" in message
    assert "train.stages[0]" in message


def test_override_path_through_a_value_or_an_empty_section() -> None:
    with pytest.raises(ConfigError, match="train.epochs is a value, not a section"):
        apply_overrides(_override_base(), ["train.epochs.x=5"])
    with pytest.raises(ConfigError, match="'codec' is empty; set it as a whole first"):
        apply_overrides(_override_base(), ["codec.sigma=2"])
    with pytest.raises(ConfigError, match=r"'model.backbone.sub' does not exist; keys here: type, depth"):
        apply_overrides(_override_base(), ["model.backbone.sub.x=1"])
    # Setting the section as a whole works, then a nested key can follow.
    new = apply_overrides(_override_base(), ["codec={type: msra_heatmap}", "codec.sigma=2"])
    assert new.codec == ComponentSpec("msra_heatmap", {"sigma": 2})


def test_overridden_values_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"TrainConfig.epochs must be >= 0; got -3") as info:
        apply_overrides(_override_base(), ["train.epochs=-3"])
    assert "after overrides" in str(info.value)
    with pytest.raises(ConfigError, match="stage starts at epoch 10 but training has only 10 epochs"):
        apply_overrides(_override_base(), ["train.epochs=10"])
    with pytest.raises(ConfigError, match="train.epochs"):
        apply_overrides(_override_base(), ["train.epochs=lots"])

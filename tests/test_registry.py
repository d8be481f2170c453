"""Registries built by hand with small, typed factories: argument checking, nesting, providers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import pytest

from posecore._components import Component, Converter, Nested, Preset
from posecore._errors import ConfigError, PluginError, UnknownComponentError
from posecore._registry import OFFICIAL_PLUGINS, Registries
from posecore.config import ComponentSpec, DataConfig, EvalConfig, ExperimentConfig
from posecore.engine._assembly_rules import validate_config

# ---------------------------------------------------------------------------------------------
# real factories with typed signatures

CALLS: list[str] = []


class Block:
    def __init__(self, depth: int, width: float, sizes: tuple[int, ...], flag: bool, name: str) -> None:
        self.depth, self.width, self.sizes, self.flag, self.name = depth, width, sizes, flag, name


def make_block(depth: int, width: float = 1.0, sizes: tuple[int, ...] = (1,), flag: bool = False, name: str = "b") -> Block:
    CALLS.append(f"block:{depth}")
    return Block(depth, width, sizes, flag, name)


class Head:
    """A class factory: its ``__init__`` annotations are the schema."""

    def __init__(self, backbone: Annotated[Block, Nested("backbones")], num_keypoints: int = 17) -> None:
        CALLS.append("head")
        self.backbone, self.num_keypoints = backbone, num_keypoints


def make_fusion(parts: Annotated[tuple[Block, ...], Nested("backbones")], weights: list[float] | None = None) -> dict[str, Any]:
    CALLS.append("fusion")
    return {"parts": parts, "weights": weights}


def make_model(head: Annotated[Head, Nested("heads")], name: str = "model") -> dict[str, Any]:
    CALLS.append("model")
    return {"head": head, "name": name}


def make_optional(backbone: Annotated[Block, Nested("backbones")] | None = None, scale: float = 1.0) -> dict[str, Any]:
    CALLS.append("optional")
    return {"backbone": backbone, "scale": scale}


def make_open(scale: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {"scale": scale, **extra}


def make_toy_dataset(ann_file: str, size: int = 1) -> list[dict[str, Any]]:
    CALLS.append("dataset")
    records = json.loads(Path(ann_file).read_text(encoding="utf-8"))
    return records[:size]


def toy_dataset_example(workdir: Path) -> dict[str, Any]:
    """Write a tiny annotation file into ``workdir`` and return the kwargs building it."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "toy.json"
    path.write_text(json.dumps([{"id": 1}, {"id": 2}, {"id": 3}]), encoding="utf-8")
    return {"ann_file": str(path), "size": 2, "input_size": [64, 48]}


def make_metric(thr: float = 0.5) -> float:
    return thr


@pytest.fixture
def registries() -> Registries:
    CALLS.clear()
    reg = Registries()
    reg.backbones.add(Component("block", make_block, description="a block"), "plug-a")
    reg.heads.add(Component("head", Head), "plug-a")
    reg.models.add(Component("fusion", make_fusion), "plug-b")
    reg.models.add(Component("model", make_model), "plug-b")
    reg.models.add(Component("open", make_open), "plug-b")
    reg.models.add(Component("optional", make_optional), "plug-b")
    reg.datasets.add(Component("toy", make_toy_dataset, example=toy_dataset_example), "plug-b")
    reg.metrics.add(Component("pck", make_metric), "plug-a")
    return reg


# ---------------------------------------------------------------------------------------------
# structuring values


def test_build_structures_strings_and_lists_to_annotated_types(registries: Registries) -> None:
    block = registries.backbones.build({"type": "block", "depth": "12", "width": "0.5", "sizes": [3, "4"], "name": 7})
    assert isinstance(block, Block)
    assert block.depth == 12 and type(block.depth) is int
    assert block.width == 0.5 and type(block.width) is float
    assert block.sizes == (3, 4) and type(block.sizes) is tuple
    assert block.flag is False  # default kept
    assert block.name == "7"


def test_build_accepts_spec_forms_and_overrides(registries: Registries) -> None:
    assert registries.backbones.build(ComponentSpec("block", {"depth": 2})).depth == 2
    assert registries.backbones.build({"type": "block", "depth": 2}, depth=5).depth == 5
    assert registries.models.build("open") == {"scale": 1.0}
    assert registries.models.build({"type": "open", "scale": "2", "anything": [1]}) == {"scale": 2.0, "anything": [1]}
    assert registries.models.build({"type": "fusion", "parts": [], "weights": ["0.25", 1]})["weights"] == [0.25, 1.0]


def test_unknown_argument_suggests_and_lists_accepted(registries: Registries) -> None:
    with pytest.raises(ConfigError) as info:
        registries.backbones.build({"type": "block", "depht": 2})
    message = str(info.value)
    assert "backbone 'block' has no argument 'depht' (did you mean 'depth'?)" in message
    assert "it accepts: depth, width, sizes, flag, name" in message
    assert CALLS == []


def test_unknown_argument_without_close_match(registries: Registries) -> None:
    with pytest.raises(ConfigError) as info:
        registries.metrics.validate({"type": "pck", "zzz": 1})
    assert "metric 'pck' has no argument 'zzz'; it accepts: thr" in str(info.value)


def test_missing_required_argument(registries: Registries) -> None:
    with pytest.raises(ConfigError, match=r"backbone 'block' needs argument\(s\) depth"):
        registries.backbones.build("block")
    with pytest.raises(ConfigError, match=r"dataset 'toy' needs argument\(s\) ann_file"):
        registries.datasets.validate({"type": "toy", "size": 3})


@pytest.mark.parametrize(
    ("arg", "value", "type_name"),
    [("depth", "deep", "int"), ("width", "wide", "float"), ("sizes", 5, "tuple"), ("sizes", ["a"], "tuple")],
)
def test_wrong_type_names_component_and_argument(registries: Registries, arg: str, value: Any, type_name: str) -> None:
    spec = {"type": "block", "depth": 1, arg: value}
    for call in (registries.backbones.build, registries.backbones.validate):
        with pytest.raises(ConfigError) as info:
            call(spec)
        message = str(info.value)
        assert f"backbone 'block', argument {arg!r}: {value!r} is not a valid {type_name}" in message
    assert CALLS == []


def test_class_factory_uses_init_annotations(registries: Registries) -> None:
    head = registries.heads.build({"type": "head", "backbone": {"type": "block", "depth": 1}, "num_keypoints": "5"})
    assert isinstance(head, Head) and head.num_keypoints == 5
    with pytest.raises(ConfigError, match=r"head 'head', argument 'num_keypoints': 'five' is not a valid int"):
        registries.heads.build({"type": "head", "backbone": {"type": "block", "depth": 1}, "num_keypoints": "five"})


def test_bool_argument_given_as_string_false_is_false(registries: Registries) -> None:
    """Values from the command line arrive as strings; "false" must not become True."""
    assert registries.backbones.build({"type": "block", "depth": 1, "flag": "true"}).flag is True
    assert registries.backbones.build({"type": "block", "depth": 1, "flag": "false"}).flag is False


def test_int_argument_does_not_silently_truncate_a_float(registries: Registries) -> None:
    with pytest.raises(ConfigError, match=r"backbone 'block', argument 'depth'"):
        registries.backbones.build({"type": "block", "depth": 12.7})


# ---------------------------------------------------------------------------------------------
# context: values the caller supplies by name


def test_context_fills_an_argument_the_factory_takes_and_the_spec_leaves_unset(registries: Registries) -> None:
    assert registries.backbones.build({"type": "block"}, context={"depth": 7}).depth == 7
    # a name the factory has no parameter for is not passed (make_block has no 'codec')
    assert registries.backbones.build({"type": "block", "depth": 1}, context={"codec": object()}).depth == 1


def test_a_spec_value_wins_over_the_context(registries: Registries) -> None:
    block = registries.backbones.build({"type": "block", "depth": "3", "width": "0.5"}, context={"depth": 7, "width": 9.0})
    assert (block.depth, block.width) == (3, 0.5)


def test_context_values_are_passed_as_they_are(registries: Registries) -> None:
    """Context values are the caller's objects, not config text: no conversion to the annotation."""
    sizes = [5, 6]
    block = registries.backbones.build({"type": "block", "depth": 1}, context={"sizes": sizes})
    assert block.sizes is sizes


def test_a_factory_with_only_open_kwargs_takes_no_context(registries: Registries) -> None:
    assert registries.models.build("open", context={"codec": "c"}) == {"scale": 1.0}


def test_validate_and_build_agree_on_what_the_context_provides(registries: Registries) -> None:
    with pytest.raises(ConfigError, match=r"dataset 'toy' needs argument\(s\) ann_file"):
        registries.datasets.validate({"type": "toy"})
    registries.datasets.validate({"type": "toy"}, provided=["ann_file"])  # the context will provide it
    with pytest.raises(ConfigError, match=r"backbone 'block' needs argument\(s\) depth"):
        registries.backbones.validate("block", provided=["ann_file"])  # a name 'block' does not take provides nothing
    # what validates with the names builds with the values
    assert registries.backbones.build("block", context={"depth": 2}).depth == 2
    registries.backbones.validate("block", provided=["depth"])


# ---------------------------------------------------------------------------------------------
# nested components


def test_nested_single_spec_is_built(registries: Registries) -> None:
    head = registries.heads.build({"type": "head", "backbone": {"type": "block", "depth": "3", "sizes": [2, 2]}})
    assert isinstance(head.backbone, Block)
    assert head.backbone.depth == 3 and head.backbone.sizes == (2, 2)
    assert CALLS == ["block:3", "head"]


def test_nested_two_levels(registries: Registries) -> None:
    model = registries.models.build({"type": "model", "head": {"type": "head", "backbone": {"type": "block", "depth": 4}}})
    assert isinstance(model["head"], Head) and model["head"].backbone.depth == 4
    assert CALLS == ["block:4", "head", "model"]


def test_nested_tuple_of_specs_is_built_in_order(registries: Registries) -> None:
    built = registries.models.build(
        {"type": "fusion", "parts": [{"type": "block", "depth": 1}, ComponentSpec("block", {"depth": 2}), {"type": "block", "depth": "3"}]}
    )
    parts = list(built["parts"])
    assert [type(p) for p in parts] == [Block, Block, Block]
    assert [p.depth for p in parts] == [1, 2, 3]


def test_nested_errors_are_prefixed_with_outer_component_and_argument(registries: Registries) -> None:
    with pytest.raises(ConfigError) as info:
        registries.heads.build({"type": "head", "backbone": {"type": "block", "depth": "x"}})
    assert str(info.value).startswith(
        "head 'head', argument 'backbone': backbone 'block', argument 'depth': 'x' is not a valid int"
    )
    with pytest.raises(ConfigError) as info:
        registries.models.build({"type": "fusion", "parts": [{"type": "block", "depth": 1}, {"type": "block", "dept": 2}]})
    assert str(info.value).startswith("model 'fusion', argument 'parts': backbone 'block' has no argument 'dept'")
    assert "did you mean 'depth'?" in str(info.value)
    with pytest.raises(ConfigError) as info:
        registries.models.validate({"type": "model", "head": {"type": "head", "backbone": "block"}})
    assert str(info.value).startswith(
        "model 'model', argument 'head': head 'head', argument 'backbone': backbone 'block' needs argument(s) depth"
    )
    # Nothing was built: nested specs are all validated before any factory runs.
    assert CALLS == []


def test_unknown_nested_component_names_the_outer_component_and_argument(registries: Registries) -> None:
    with pytest.raises((ConfigError, UnknownComponentError)) as info:
        registries.heads.build({"type": "head", "backbone": {"type": "blok", "depth": 1}})
    message = str(info.value)
    assert "unknown backbone 'blok' (did you mean 'block'?)" in message
    assert "head 'head', argument 'backbone'" in message


def test_optional_nested_component(registries: Registries) -> None:
    assert registries.models.build("optional") == {"backbone": None, "scale": 1.0}
    assert registries.models.build({"type": "optional", "backbone": None})["backbone"] is None
    built = registries.models.build({"type": "optional", "backbone": {"type": "block", "depth": "6"}})
    assert isinstance(built["backbone"], Block) and built["backbone"].depth == 6
    with pytest.raises(ConfigError, match=r"^model 'optional', argument 'backbone': backbone 'block' needs argument\(s\) depth"):
        registries.models.validate({"type": "optional", "backbone": "block"})


def test_validate_does_not_build(registries: Registries) -> None:
    registries.models.validate({"type": "model", "head": {"type": "head", "backbone": {"type": "block", "depth": 1}}})
    registries.models.validate({"type": "fusion", "parts": [{"type": "block", "depth": 1}]})
    assert CALLS == []


# ---------------------------------------------------------------------------------------------
# providers, names and declaration types


def test_duplicate_name_names_both_providers(registries: Registries) -> None:
    with pytest.raises(PluginError) as info:
        registries.backbones.add(Component("block", make_block), "plug-z")
    message = str(info.value)
    assert "backbone 'block'" in message
    assert "plugin 'plug-a'" in message and "plugin 'plug-z'" in message
    # The first registration stands.
    assert registries.backbones.provider("block") == "plug-a"
    assert registries.backbones.get("block").factory is make_block


def test_remove_provider_withdraws_its_entries_everywhere(registries: Registries) -> None:
    registries.presets.add(Preset("p-one", config=lambda: ExperimentConfig(name="p", model="m")), "plug-a")
    registries.converters.add(Converter("c-one", function=dict), "plug-b")
    assert registries.provided_by("plug-a") == {
        "backbones": ["block"], "heads": ["head"], "metrics": ["pck"], "presets": ["p-one"],
    }
    registries.remove_provider("plug-a")
    assert registries.provided_by("plug-a") == {}
    assert "block" not in registries.backbones and len(registries.backbones) == 0
    assert "p-one" not in registries.presets
    assert registries.models.names() == ["fusion", "model", "open", "optional"]
    assert registries.converters.names("plug-b") == ["c-one"]
    with pytest.raises(UnknownComponentError, match="unknown backbone 'block'"):
        registries.backbones.build({"type": "block", "depth": 1})
    # The name is free again for another provider.
    registries.backbones.add(Component("block", make_block), "plug-c")
    assert registries.backbones.provider("block") == "plug-c"


def test_names_iteration_and_lookup(registries: Registries) -> None:
    registries.backbones.add(Component("another", make_block), "plug-b")
    assert registries.backbones.names() == ["another", "block"]
    assert registries.backbones.names("plug-b") == ["another"]
    assert [c.name for c in registries.backbones] == ["another", "block"]
    assert len(registries.backbones) == 2
    assert registries["backbones"] is registries.backbones
    assert registries["presets"] is registries.presets
    with pytest.raises(KeyError, match="did you mean 'heads'"):
        registries["head"]
    with pytest.raises(AttributeError):
        registries.nonexistent_kind  # noqa: B018


def test_unknown_name_suggests_and_lists_available(registries: Registries) -> None:
    with pytest.raises(UnknownComponentError) as info:
        registries.backbones.get("blokc")
    message = str(info.value)
    assert message.startswith("unknown backbone 'blokc' (did you mean 'block'?).")
    assert "Available backbones: block." in message
    assert "pip install" not in message
    with pytest.raises(UnknownComponentError, match="Available codecs: none"):
        registries.codecs.build("anything")


@pytest.mark.parametrize("plugin", OFFICIAL_PLUGINS)
def test_unknown_name_of_an_official_plugin_gives_install_hint(registries: Registries, plugin: str) -> None:
    with pytest.raises(UnknownComponentError) as info:
        registries.models.build({"type": f"{plugin}-vit-b"})
    message = str(info.value)
    assert f"unknown model '{plugin}-vit-b'" in message
    assert f"pip install 'posecore[{plugin}]'" in message


def test_wrong_declaration_type_is_rejected(registries: Registries) -> None:
    with pytest.raises(PluginError) as info:
        registries.backbones.add(Preset("p", config=None), "plug-z")  # type: ignore[arg-type]
    assert "plugin 'plug-z' declared a Preset among its backbones; expected posecore.Component" in str(info.value)
    with pytest.raises(PluginError, match="declared a Component among its presets; expected posecore.Preset"):
        registries.presets.add(Component("c", make_block), "plug-z")  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="declared a dict among its heads"):
        registries.heads.add({"name": "x"}, "plug-z")  # type: ignore[arg-type]
    assert "p" not in registries.backbones and "c" not in registries.presets


def test_string_factory_is_imported_when_built(registries: Registries) -> None:
    registries.metrics.add(Component("join", "os.path:join"), "plug-s")
    assert registries.metrics.build({"type": "join", "a": "x"}) == "x"  # os.path.join(a="x")
    registries.metrics.add(Component("missing", "posecore_no_such_module:thing"), "plug-s")
    with pytest.raises(PluginError, match="cannot import 'posecore_no_such_module:thing'"):
        registries.metrics.build("missing")


# ---------------------------------------------------------------------------------------------
# build_example


def test_build_example_with_callable_writing_files(registries: Registries, tmp_path: Path) -> None:
    workdir = tmp_path / "example"
    built = registries.datasets.build_example("toy", workdir)
    assert built == [{"id": 1}, {"id": 2}]  # size=2 from the example; input_size was not passed on
    assert sorted(p.name for p in workdir.iterdir()) == ["toy.json"]
    assert CALLS == ["dataset"]


def test_build_example_with_mapping_and_with_module_reference(registries: Registries, tmp_path: Path) -> None:
    registries.backbones.add(Component("small", make_block, example={"depth": "2", "input_size": [32, 32]}), "plug-e")
    assert registries.backbones.build_example("small", tmp_path).depth == 2
    # The core's own coco_style example, referenced by strings as a plugin would.
    registries.datasets.add(
        Component("coco_like", "posecore.data._coco:coco_style", example="posecore.data._coco:write_example"),
        "plug-e",
    )
    dataset = registries.datasets.build_example("coco_like", tmp_path / "coco")
    assert len(dataset) == 3
    assert (tmp_path / "coco" / "annotations.json").is_file()
    assert dataset[0]["image"].shape == (48, 64, 3)


# ---------------------------------------------------------------------------------------------
# validate_config


def _config(**data: Any) -> ExperimentConfig:
    return ExperimentConfig(
        name="exp",
        model={"type": "model", "head": {"type": "head", "backbone": {"type": "block", "depth": 2}}},
        data=DataConfig(**data),
        eval=EvalConfig(metrics=[{"type": "pck", "thr": "0.2"}]),
    )


def test_validate_config_accepts_a_good_config_without_building(registries: Registries) -> None:
    config = _config(train=[{"type": "toy", "ann_file": "a.json"}], val=[{"type": "toy", "ann_file": "b.json"}])
    assert validate_config(config, registries) is None
    assert CALLS == []


def test_validate_config_names_the_section(registries: Registries) -> None:
    config = _config(train=[{"type": "toy", "ann_file": "a.json"}, {"type": "toy", "ann_fil": "b.json"}])
    with pytest.raises(ConfigError) as info:
        validate_config(config, registries)
    message = str(info.value)
    assert message.startswith("config 'exp', data.train[1]: dataset 'toy' has no argument 'ann_fil'")
    assert "did you mean 'ann_file'?" in message


def test_validate_config_names_the_section_of_nested_model_errors_and_metrics(registries: Registries) -> None:
    bad_model = ExperimentConfig(name="m1", model={"type": "model", "head": {"type": "head", "backbone": "block"}})
    with pytest.raises(ConfigError, match=r"^config 'm1', model: model 'model', argument 'head': head 'head'"):
        validate_config(bad_model, registries)
    bad_metric = ExperimentConfig(name="m2", model="open", eval=EvalConfig(metrics=["pck", {"type": "pck", "thr": "high"}]))
    with pytest.raises(ConfigError, match=r"^config 'm2', eval.metrics\[1\]: metric 'pck', argument 'thr'"):
        validate_config(bad_metric, registries)


def test_validate_config_unknown_component_mentions_the_plugins(registries: Registries) -> None:
    config = ExperimentConfig(
        name="bh", model="open", codec="posebh-codec", data=DataConfig(test=[{"type": "toy", "ann_file": "x"}]),
        plugins=("posebh",),
    )
    with pytest.raises(ConfigError) as info:
        validate_config(config, registries)
    message = str(info.value)
    assert message.startswith("config 'bh', codec: unknown codec 'posebh-codec'.")
    assert "pip install 'posecore[posebh]'" in message
    assert message.endswith("(this config uses plugins: posebh)")
    config = ExperimentConfig(name="v", model="open", data=DataConfig(val=["toy", "nope"]))
    with pytest.raises(ConfigError, match=r"^config 'v', data.val\[0\]: dataset 'toy' needs argument\(s\) ann_file"):
        validate_config(config, registries)

"""Per-dataset codecs and pipelines (``codec:`` / ``pipeline:`` in a dataset spec) and
``train.init_weights``: the engine's two general answers to multi-dataset training from a
released model (PoseBH: UDP targets for COCO, MSRA for AIC, no half-body crops for MPII, starting
from ViTPose++ weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

import posecore
from posecore._errors import ConfigError
from posecore._plugins import get_host
from posecore.codecs import MSRAHeatmap, UDPHeatmap
from posecore.config import ExperimentConfig, apply_overrides, structure, unstructure
from posecore.engine._assembly_rules import split_dataset_spec, validate_config
from posecore.engine._builder import build_codec, build_eval_sets, build_train_set
from posecore.engine._state import load_train_state
from posecore.engine._trainer import Callback, Trainer

INPUT, HEATMAP = (48, 64), (12, 16)
MSRA = {"type": "msra_heatmap", "input_size": list(INPUT), "heatmap_size": list(HEATMAP), "sigma": 1.0}
NO_AUGMENTATION = [{"type": "get_bbox_center_scale"}, {"type": "topdown_affine"}, {"type": "generate_target"},
                   {"type": "pack_sample"}]


def _config(tiny_config, synthetic_cache, second: dict) -> ExperimentConfig:
    config = tiny_config()
    people = {"type": "synthetic_people", "split": "train", "num_images": 24, "cache_dir": synthetic_cache}
    data = unstructure(config)
    data["codec"] = {**MSRA, "type": "udp_heatmap"}
    data["data"]["train"] = [people, {**people, **second}]
    return structure(data, ExperimentConfig)


def test_a_training_dataset_brings_its_own_codec(tiny_config, synthetic_cache):
    config = _config(tiny_config, synthetic_cache, {"codec": MSRA})
    validate_config(config, get_host().registries)
    registries = get_host().registries
    codec = build_codec(config, registries)
    train = build_train_set(config, registries, codec=codec)
    assert isinstance(codec, UDPHeatmap)
    first, second = train.parts[0], train.parts[1]
    assert [type(t).__name__ for t in first.pipeline.transforms] == [type(t).__name__ for t in second.pipeline.transforms]
    (affine_a,) = [t for t in first.pipeline.transforms if type(t).__name__ == "TopdownAffine"]
    (affine_b,) = [t for t in second.pipeline.transforms if type(t).__name__ == "TopdownAffine"]
    assert affine_a.use_udp and not affine_b.use_udp  # the warp follows each dataset's codec
    (target_a,) = [t for t in first.pipeline.transforms if type(t).__name__ == "GenerateTarget"]
    (target_b,) = [t for t in second.pipeline.transforms if type(t).__name__ == "GenerateTarget"]
    assert isinstance(target_a.codec, UDPHeatmap) and isinstance(target_b.codec, MSRAHeatmap)
    # The same instance, encoded each dataset's way: the targets are exactly that codec's encoding.
    for part, expected in ((first, codec), (second, target_b.codec)):
        sample = part[3]
        targets = expected.encode(sample["keypoints"], sample["visibility"])
        np.testing.assert_array_equal(sample["heatmaps"], targets["heatmaps"])
    assert train.parts[1][0]["dataset_index"] == 1


def test_a_dataset_brings_its_own_pipeline_and_the_spec_round_trips(tiny_config, synthetic_cache):
    config = _config(tiny_config, synthetic_cache, {"pipeline": NO_AUGMENTATION})
    validate_config(config, get_host().registries)
    again = structure(yaml.safe_load(yaml.safe_dump(unstructure(config))), ExperimentConfig)
    assert again == config
    registries = get_host().registries
    train = build_train_set(config, registries, codec=build_codec(config, registries))
    names = [type(t).__name__ for t in train.parts[1].pipeline.transforms]
    assert names == ["GetBBoxCenterScale", "TopdownAffine", "GenerateTarget", "PackSample"]
    assert "RandomFlip" in [type(t).__name__ for t in train.parts[0].pipeline.transforms]
    # Without augmentation the second dataset's sample is the same in every epoch.
    train.set_epoch(0)
    first = train.parts[1][2]["image"].clone()
    train.set_epoch(5)
    assert torch.equal(train.parts[1][2]["image"], first)


def test_engine_keys_never_reach_the_dataset_factory():
    spec = posecore.ComponentSpec("coco", {"ann_file": "a.json", "codec": MSRA, "pipeline": NO_AUGMENTATION})
    dataset, codec, pipeline = split_dataset_spec(spec)
    assert dataset.args == {"ann_file": "a.json"}
    assert codec.type == "msra_heatmap" and [p.type for p in pipeline] == [p["type"] for p in NO_AUGMENTATION]
    assert split_dataset_spec(posecore.ComponentSpec("coco", {"ann_file": "a.json"}))[1:] == (None, None)


def test_mistakes_are_named_where_they_are(tiny_config, synthetic_cache):
    registries = get_host().registries
    bad_codec = _config(tiny_config, synthetic_cache, {"codec": {**MSRA, "sigmaa": 2.0}})
    with pytest.raises(ConfigError, match=r"data\.train\[1\]\.codec: .*sigmaa"):
        validate_config(bad_codec, registries)
    bad_transform = _config(tiny_config, synthetic_cache, {"pipeline": [*NO_AUGMENTATION[:1], {"type": "random_flp"}]})
    with pytest.raises(ConfigError, match=r"data\.train\[1\]\.pipeline\[1\]: unknown transform 'random_flp'"):
        validate_config(bad_transform, registries)
    data = unstructure(tiny_config())
    data["data"]["val"][0]["codec"] = MSRA
    with_eval_codec = structure(data, ExperimentConfig)
    with pytest.raises(ConfigError, match=r"data\.val\[0\]: an evaluation dataset cannot set its own codec"):
        validate_config(with_eval_codec, registries)
    with pytest.raises(ConfigError, match="an evaluation dataset cannot set its own codec"):
        build_eval_sets(with_eval_codec, registries, codec=build_codec(with_eval_codec, registries))


def test_an_evaluation_dataset_may_bring_its_own_pipeline(tiny_config):
    data = unstructure(tiny_config())
    data["data"]["val"][0]["pipeline"] = [{"type": "get_bbox_center_scale", "padding": 1.5}, {"type": "topdown_affine"},
                                          {"type": "pack_sample"}]
    config = structure(data, ExperimentConfig)
    validate_config(config, get_host().registries)
    registries = get_host().registries
    (eval_set,) = build_eval_sets(config, registries, codec=build_codec(config, registries))
    assert eval_set.dataset.pipeline.transforms[0].padding == 1.5


# ------------------------------------------------------------------------------------ init_weights


def test_init_weights_start_the_model_and_resuming_ignores_them(tiny_config, tmp_path):
    source = posecore.build_model(tiny_config())
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(1.0)
    weights = tmp_path / "start.pth"
    torch.save({"state_dict": source.state_dict(), "meta": {"note": "from elsewhere"}}, weights)
    config = apply_overrides(tiny_config(epochs=1), [f"train.init_weights={weights}"])
    seen = {}

    class Watch(Callback):
        def on_train_start(self, trainer):
            seen["start"] = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    Trainer(config, tmp_path / "run", registries=get_host().registries, quiet=True, num_prediction_images=0,
            callbacks=[Watch()]).fit()
    for key, value in source.state_dict().items():
        assert torch.equal(seen["start"][key], value), key
    # Resuming restores the run's own weights; the init file is not read again (here: gone, so
    # reading it would raise).
    weights.unlink()
    own = load_train_state(tmp_path / "run")["model"]
    assert any(not torch.equal(own[key], value) for key, value in source.state_dict().items()), "the run trained"
    longer = apply_overrides(tiny_config(epochs=1), [f"train.init_weights={weights}"])
    Trainer(longer, tmp_path / "run", registries=get_host().registries, resume=tmp_path / "run", quiet=True,
            num_prediction_images=0,
            callbacks=[Watch()]).fit()
    for key, value in own.items():
        assert torch.equal(seen["start"][key], value), key


def test_init_weights_that_do_not_exist_are_a_clear_error(tiny_config, tmp_path):
    config = apply_overrides(tiny_config(epochs=1), [f"train.init_weights={tmp_path / 'missing.pth'}"])
    with pytest.raises(posecore.CheckpointError, match="checkpoint not found"):
        Trainer(config, tmp_path / "run", registries=get_host().registries, quiet=True).fit()

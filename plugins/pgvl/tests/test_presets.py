"""The presets: their published figures, their models' sizes, and the tiny default."""

from __future__ import annotations

import pytest
import torch
from pgvl_released_layout import released_shapes

import posecore
from posecore.analysis import measure_complexity

#: preset -> parameters (M) of its model (``posecore flops -p pgvl``), CLIP text tower included.
PARAMETERS = {"pgvl-b-crowdpose-256x192": 178.25, "pgvl-b-mpii-256x256": 179.09, "pgvl-b-ochuman-256x192": 178.25,
              "pgvl-l-ap10k-256x256": 529.67, "pgvl-b-animalpose-256x256": 192.17}


def _presets() -> dict[str, posecore.Preset]:
    host = posecore.load_plugins()
    return {preset.name: preset for preset in host.registries.presets if preset.name.startswith("pgvl-")}


def test_published_figures_and_default() -> None:
    presets = _presets()
    assert {name: [(r.dataset, r.split, r.metric, r.value) for r in p.published] for name, p in presets.items()} == {
        "pgvl-tiny-synthetic": [],
        "pgvl-b-crowdpose-256x192": [("CrowdPose", "test", "AP", 68.2)],
        "pgvl-b-mpii-256x256": [("MPII", "val", "Mean", 91.7)],
        "pgvl-b-ochuman-256x192": [("OCHuman", "val", "AP", 62.8)],
        "pgvl-l-ap10k-256x256": [("AP-10K", "val", "AP", 82.1)],
        "pgvl-b-animalpose-256x256": [("AnimalPose", "val", "AP", 79.3)],
    }
    assert [name for name, p in presets.items() if p.default] == ["pgvl-tiny-synthetic"]


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_model_sizes(name: str) -> None:
    config = posecore.get_preset(name)
    with torch.device("meta"):
        model = posecore.build_model(config)
    count = sum(p.numel() for p in model.parameters())
    assert count / 1e6 == pytest.approx(PARAMETERS[name], abs=0.01)
    dataset = name.split("-")[2]
    if dataset in ("crowdpose", "mpii", "ochuman"):  # the released files hold exactly these parameters
        released = sum(torch.Size(shape).numel() for key, shape in released_shapes(dataset).items()
                       if not key.endswith(("running_mean", "running_var", "num_batches_tracked")))
        assert count == released


def test_training_recipe_is_the_configs() -> None:
    config = posecore.get_preset("pgvl-b-crowdpose-256x192")
    optimizer = config.train.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ("adamw", 5e-4, 1e-4)
    assert [(r.pattern, r.lr_mult, r.decay_mult) for r in optimizer.param_groups] == [
        ("text_encoder.*", 0.0, 1.0), ("backbone.*", 0.1, 1.0), ("*norm*", 1.0, 0.0)]
    assert config.train.epochs == 210 and config.train.schedule.milestones == (170, 200)
    assert config.model.to_dict()["cl_ratio"] == 0.0005
    assert posecore.get_preset("pgvl-l-ap10k-256x256").model.to_dict()["cl_ratio"] == 0.001
    assert posecore.get_preset("pgvl-b-ochuman-256x192").model.to_dict()["context_length"] == 12


def test_tiny_default_is_small_and_cheap() -> None:
    model = posecore.build_model(posecore.get_preset("pgvl-tiny-synthetic"))
    complexity = measure_complexity(model, model.example_batch(1))
    assert sum(p.numel() for p in model.parameters()) < 5e6
    assert complexity.macs < 0.5e9

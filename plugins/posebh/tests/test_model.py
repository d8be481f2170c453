"""The PoseBH model: per-head masked losses, dataset selection, the phase switches, CPS, CSS and
the released code's quirks behind ``legacy_quirks``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from posecore_posebh.losses import joints_mse
from posecore_posebh.model import PoseBHModel
from posecore_posebh.proto_head import PrototypeHead
from posecore_posebh.vit_moe import ViTMoE

from posecore import ConfigError
from posecore.codecs import udp_gaussian_heatmaps
from posecore.data import load_metainfo
from posecore.engine._optim import apply_stage
from posecore.models import HeatmapDeconvHead


def _model(proto: bool = True, **kwargs: object) -> PoseBHModel:
    torch.manual_seed(0)
    backbone = ViTMoE("small", embed_dim=32, depth=1, num_heads=2, num_experts=2, part_features=8, input_size=(48, 64))
    heads = [HeatmapDeconvHead(32, 5, deconv_channels=(16,)), HeatmapDeconvHead(32, 3, deconv_channels=(16,))]
    head = PrototypeHead(32, [5, 3], embed_dim=16, deconv_channels=(16,), neck_channels=8, num_clusters=4) if proto else None
    return PoseBHModel(backbone, heads, head, dataset_names=("a", "b"), input_size=(48, 64), cluster_options=(2, 4),
                       cluster_iterations=20, **kwargs)


def _batch(index: list[int]) -> dict:
    torch.manual_seed(1)
    size = len(index)
    heatmaps = torch.rand(size, 5, 8, 6)
    weights = torch.ones(size, 5)
    for row, dataset in enumerate(index):
        if dataset == 1:
            heatmaps[row, 3:], weights[row, 3:] = 0, 0
    return {"image": torch.randn(size, 3, 64, 48), "heatmaps": heatmaps, "keypoint_weights": weights,
            "dataset_index": torch.tensor(index)}


def test_each_head_is_supervised_by_its_own_samples_over_the_whole_batch() -> None:
    model = _model(proto=False).train()
    batch = _batch([0, 1, 1, 0])
    losses = model.loss(batch)
    assert set(losses) == {"loss_heatmap_a", "loss_heatmap_b"}
    model.eval()  # the same maps as in the loss, without drop-path noise or BN batch statistics
    with torch.no_grad():
        features = model.features(batch["image"], batch["dataset_index"])
        out_b = model.heads[1](features)
        losses = model.loss(batch)
    mask = torch.tensor([0.0, 1.0, 1.0, 0.0])
    # mmpose's JointsMSE on the masked targets: mean over all four samples, not just dataset b's two.
    expected = ((out_b - batch["heatmaps"][:, :3] * mask[:, None, None, None]) * mask[:, None, None, None]).pow(2)
    assert float(losses["loss_heatmap_b"]) == pytest.approx(float(expected.mean()), rel=1e-5)


def test_ragged_targets_from_the_collate_are_padded_as_the_tensors() -> None:
    model = _model().eval()
    batch = _batch([0, 1])
    ragged = dict(batch, heatmaps=[batch["heatmaps"][0].numpy(), batch["heatmaps"][1, :3].numpy()],
                  keypoint_weights=[batch["keypoint_weights"][0].numpy(), batch["keypoint_weights"][1, :3].numpy()])
    with torch.no_grad():
        torch.manual_seed(5)
        padded = model.loss(batch)
        torch.manual_seed(5)
        listed = model.loss(ragged)
    for name in padded:
        assert float(listed[name]) == pytest.approx(float(padded[name]), rel=1e-6), name


def test_choosing_a_dataset_picks_its_expert_and_head_together() -> None:
    model = _model(dataset="b").eval()
    batch = {"image": torch.randn(2, 3, 64, 48), "dataset_index": torch.tensor([0, 0])}  # overridden
    result = model.predict(batch)
    assert tuple(result.keypoints.shape) == (2, 3, 2)
    with torch.no_grad():
        expected = model.heads[1](model.backbone(model.normalizer(batch["image"]), dataset_index=torch.tensor([1, 1])))
    torch.testing.assert_close(result.heatmaps, expected)
    assert tuple(_model().eval().predict({"image": batch["image"]}).keypoints.shape) == (2, 5, 2)  # default: 0
    with pytest.raises(ConfigError, match="dataset must be one of a, b"):
        _model(dataset="coco")


def test_prediction_refuses_what_would_be_wrong() -> None:
    model = _model().eval()
    with pytest.raises(ValueError, match="must come from one dataset"):
        model.predict({"image": torch.randn(2, 3, 64, 48), "dataset_index": torch.tensor([0, 1])})
    coco = load_metainfo("coco")
    with pytest.raises(ValueError, match="head of dataset 'b' predicts 3 keypoints but the batch's keypoint set 'coco' has 17"):
        model.predict({"image": torch.randn(1, 3, 64, 48), "dataset_index": torch.tensor([1]), "meta": [coco]})
    with pytest.raises(ValueError, match="dataset_index 2 has no head"):
        model.loss(_batch([0, 2]))
    with pytest.raises(ConfigError, match="2 experts but there are 1 heads"):
        PoseBHModel(ViTMoE("small", embed_dim=32, depth=1, num_heads=2, num_experts=2, part_features=8),
                    [HeatmapDeconvHead(32, 5)], dataset_names=("a",))
    with pytest.raises(ConfigError, match=r"proto_head.num_keypoints \[5, 4\] must be the heads' keypoint counts \[5, 3\]"):
        PoseBHModel(ViTMoE("small", embed_dim=32, depth=1, num_heads=2, num_experts=2, part_features=8),
                    [HeatmapDeconvHead(32, 5), HeatmapDeconvHead(32, 3)], PrototypeHead(32, [5, 4]), dataset_names=("a", "b"))


def test_the_phases_freeze_what_the_original_freezes() -> None:
    from posecore_posebh.presets import posebh_stages

    model = _model().train()
    first, second, third = posebh_stages()
    apply_stage(model, first)
    model.on_stage(0, first.options)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sum(model.loss(_batch([0, 1, 0])).values()).backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("proto_head."))
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith("proto_head."))
    assert not torch.equal(model.proto_head.kpt_prototype.prototypes, before["proto_head.kpt_prototype.prototypes"])
    assert not model.cps_enabled and not model.css_enabled

    apply_stage(model, second)
    model.on_stage(1, second.options)
    assert model.proto_head.cluster_prototype.ready and model.cps_enabled and model.css_enabled
    frozen = model.proto_head.kpt_prototype.prototypes.clone()
    losses = model.loss(_batch([0, 1, 0]))
    assert {"loss_cps", "loss_css"} <= set(losses)
    assert torch.equal(model.proto_head.kpt_prototype.prototypes, frozen)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"heads", "proto_head"}
    apply_stage(model, third)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ConfigError, match="does not know \\['freeze'\\]"):
        model.on_stage(2, {"freeze": True})


def test_clusters_are_kept_when_loaded_and_built_when_placeholders() -> None:
    trained = _model()
    trained.on_stage(1, {"cps": True})
    fresh = _model()
    fresh.load_state_dict(trained.state_dict())  # resuming after the clustering: no second clustering
    assert torch.equal(fresh.proto_head.cluster_prototype.keypoints, trained.proto_head.cluster_prototype.keypoints)
    fresh.proto_head.kpt_prototype.prototypes.mul_(-1)
    fresh.on_stage(1, {"cps": True})
    assert torch.equal(fresh.proto_head.cluster_prototype.prototypes, trained.proto_head.cluster_prototype.prototypes)


def _peak(x: float, y: float, value: float) -> torch.Tensor:
    maps, _ = udp_gaussian_heatmaps(np.array([[[x, y]]]), np.ones((1, 1), np.float32), (24, 32), (24, 32), 2.0)
    return torch.from_numpy(maps[0, 0]) * value


def test_css_pseudo_labels_fuse_the_two_peaks() -> None:
    model = _model()
    regression = torch.stack([_peak(10, 6, 0.8), _peak(20, 20, 0.9)])[None]  # (1, 2, 32, 24)
    near = torch.stack([_peak(11, 6, 0.6), _peak(20, 20, 0.1)])[None]  # second joint: prototype below 0.25
    keep, pseudo, weight = model._pseudo_labels(regression, near)
    assert keep.tolist() == [[True, False]]
    assert float(weight[0]) == pytest.approx(0.6, abs=1e-3)  # the lower of the two peaks
    torch.testing.assert_close(pseudo[0], _peak((0.8 * 10 + 0.6 * 11) / 1.4, 6, 1.0), atol=2e-3, rtol=0)
    far = torch.stack([_peak(10, 10, 0.6), _peak(20, 20, 0.1)])[None]
    assert model._pseudo_labels(regression, far)[0] is None  # 4 heatmap pixels apart


def test_css_legacy_reproduces_the_released_distance_and_location() -> None:
    model = _model(legacy_quirks=True)
    regression = torch.stack([_peak(10, 6, 0.8), _peak(20, 20, 0.9)])[None]
    near = torch.stack([_peak(11, 6, 0.6), _peak(20, 20, 0.1)])[None]
    assert model._pseudo_labels(regression, near)[0] is None  # sqrt((10 - 11)^2 + (11 - 6)^2) > 2.1
    far = torch.stack([_peak(10, 10, 0.6), _peak(20, 20, 0.1)])[None]  # sqrt(0 + (10 - 10)^2) = 0: kept
    keep, pseudo, _ = model._pseudo_labels(regression, far)
    assert keep.tolist() == [[True, False]]
    share_r, share_p = 0.8 / 1.4, 0.6 / 1.4
    expected = _peak(share_r * 10 + share_p * 0.6, share_r * 6 + share_p * 0.6, 1.0)  # a score added to a place
    torch.testing.assert_close(pseudo[0], expected, atol=2e-3, rtol=0)


def test_cps_targets_follow_the_batch_order_unless_legacy() -> None:
    model = _model().eval()
    model.on_stage(1, {"cps": True, "freeze_prototypes": True})
    results = {}
    for name, batch in (("grouped", _batch([0, 0, 1, 1])), ("mixed", _batch([1, 0, 1, 0]))):
        with torch.no_grad():
            embeddings = model.proto_head(model.features(batch["image"], batch["dataset_index"]))
            for legacy in (False, True):
                model.legacy_quirks = legacy
                results[name, legacy] = float(model._cps_loss(embeddings, batch["heatmaps"], batch["keypoint_weights"],
                                                              batch["dataset_index"]))
    assert results["grouped", False] == pytest.approx(results["grouped", True], rel=1e-6)  # sorted: the same
    assert results["mixed", False] != pytest.approx(results["mixed", True], rel=1e-3)


def test_the_heatmap_loss_squares_pseudo_label_weights_as_the_original() -> None:
    output, target = torch.ones(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)
    assert float(joints_mse(output, target, torch.tensor([[0.5, 1.0]]))) == pytest.approx((0.25 + 1.0) / 2)


def test_css_skips_a_dataset_whose_pseudo_labels_sample_no_pixel() -> None:
    """The original drops a dataset's whole CSS term (heatmap, prototype-heatmap and contrast losses)
    when its pseudo-labels sample no embedding pixel; here a threshold above the pseudo-label's
    weighted peak (0.6) samples none."""
    index = torch.tensor([0, 1])
    regression = torch.zeros(2, 5, 32, 24)
    regression[1, 0] = _peak(10, 6, 0.8)  # head a on dataset b's sample agrees with a's prototypes
    prototype = torch.full((2, 8, 32, 24), 1e-4)
    prototype[1, 0] = _peak(11, 6, 0.6)
    outputs = [regression, torch.zeros(2, 3, 32, 24)]
    embeddings = torch.randn(2, 16, 32, 24)
    sampled = _model(sample_threshold=0.0)._css_loss(embeddings, prototype, outputs, index)
    assert float(sampled) > 0
    unsampled = _model(sample_threshold=0.99)._css_loss(embeddings, prototype, outputs, index)
    assert float(unsampled) == 0.0


def test_prototype_computations_ignore_the_trainers_autocast() -> None:
    """Prototype heatmaps, contrast logits, Sinkhorn, CPS and CSS run in fp32 under mixed precision
    (the original turns autocast off for them); only the embedding net follows the autocast."""
    model = _model().train()
    model.on_stage(1, {"cps": True, "css": True, "freeze_prototypes": True})
    batch = _batch([0, 1, 1, 0])
    with torch.no_grad():
        features = model.features(batch["image"], batch["dataset_index"])
        embeddings = model.proto_head(features).float()
        # Heads that agree with the prototypes, so that CSS makes pseudo-labels and refines them.
        maps = model.proto_head.heatmaps(embeddings)
        outputs = [maps[:, model.proto_head.kpt_prototype.block(d)].clone() for d in range(2)]
    losses = {}
    for mixed in (False, True):
        torch.manual_seed(3)  # the same Gumbel draws
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
            losses[mixed] = model._prototype_losses(embeddings, outputs, batch["heatmaps"], batch["keypoint_weights"],
                                                    batch["dataset_index"])
            assert model.proto_head.heatmaps(embeddings).dtype == torch.float32
    assert {"loss_proto", "loss_phm", "loss_cps", "loss_css"} <= set(losses[True]) and float(losses[False]["loss_css"]) > 0
    for name, value in losses[False].items():
        assert value.dtype == torch.float32 and torch.equal(losses[True][name], value), name

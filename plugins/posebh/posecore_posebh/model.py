"""``posebh`` and ``posebh_transfer``: PoseBH's multi-dataset model and its transfer model.

Jeong et al., CVPR 2025, "PoseBH: Prototypical Multi-Dataset Training Beyond Human Pose Estimation";
original code: https://github.com/uyoung-jeong/PoseBH (``TopDownMoEProto``, ``TopDownProto``,
``KptProtoHead``, the CPS/CSS hooks). Built on ViTPose++ (Xu et al., TPAMI 2023).

``posebh`` is ViTPose++ (a ViT whose feed-forward has one expert per dataset, and one heatmap
head per dataset) plus PoseBH's prototype head; without the prototype head it *is* ViTPose++.
Training, per batch mixing samples of several datasets (each with its ``dataset_index``):

* the backbone routes each sample through its dataset's expert; **every** head runs on the
  whole batch, and head ``d``'s JointsMSE counts only the samples of dataset ``d`` (the others'
  targets and weights are zeroed), averaged over the full batch;
* the prototype head embeds every heatmap pixel; per dataset, the pixels under its targets'
  Gaussians train the embeddings against the keypoint prototypes (pixel-prototype contrast,
  ``loss_proto``) and align the prototype heatmaps with the targets (``loss_phm``); the
  prototypes follow by EMA (:mod:`posecore_posebh.prototypes`);
* from the second phase, clustered prototype supervision (``loss_cps``): the prototypes are
  clustered once and each dataset's targets supervise the clusters standing for its keypoints;
* and cross-type self-supervision (``loss_css``): for each head ``d``, on the samples of the
  *other* datasets, the joints where head ``d`` and the prototypes of ``d`` agree (both peaks
  above 0.25, at most 2.1 heatmap pixels apart) become pseudo-labels, weighted by the lower of
  the two peaks, for head ``d``, the prototype heatmaps and the embeddings.

The three phases (heads frozen / prototypes frozen, CPS and CSS on / everything trains) are
``train.stages`` of the presets; their ``options`` reach :meth:`PoseBHModel.on_stage`.

Prediction comes from the heatmap heads only. ``dataset`` fixes the dataset of every sample,
which picks the expert and the head together (a ViTPose++ checkpoint with the COCO expert and the
AIC head is not a model); without it each sample's ``dataset_index`` decides, 0 (COCO) when the
batch has none.

``legacy_quirks=True`` reproduces the released code where it differs from the method it
describes: (1) the dataset offsets of prototype learning, (2) the CSS peak distance
``sqrt((xA - xP)^2 + (xP - yP)^2)``, (3) the CSS pseudo-label ``wA locA + wP maxP`` (a score
added to a location), (4) CPS picking each cluster's prototypes by ranking clusters instead of
prototypes, and (5) the CPS heatmap loss comparing the batch's cluster heatmaps with targets
stacked in dataset order (found while porting; with shuffled batches the rows disagree).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import numpy as np
import torch
from torch import nn

import posecore
from posecore import CheckpointError, ConfigError, ConvertedStateDict, Nested
from posecore.codecs import Codec, dark_udp_refine, heatmap_maxima, udp_gaussian_heatmaps
from posecore.models import Batch, ImageNormalizer, PoseModel, PoseResult, predict_heatmaps
from posecore_posebh.losses import PrototypeLossWeights, joints_mse, prototype_contrast
from posecore_posebh.prototypes import ClusterPrototypes, cluster_prototypes, full_precision
from posecore_posebh.vit_moe import ViTMoE, expert_width, merge_expert

__all__ = ["DATASET_NAMES", "STAGE_OPTIONS", "HuggingFaceToDataset", "PoseBHLayout", "PoseBHModel", "PoseBHTransferModel",
           "SplitToDataset", "hf_aic", "hf_ap10k", "hf_apt36k", "hf_coco", "hf_mpii", "hf_wholebody", "merged_expert",
           "mmpose0x", "remove_proto", "split_aic", "split_ap10k", "split_apt36k", "split_coco", "split_mpii",
           "split_wholebody"]

#: The released models' datasets, in expert/head order.
DATASET_NAMES = ("coco", "aic", "mpii", "ap10k", "apt36k", "coco_wholebody")
#: What a training stage's ``options`` may switch (see :meth:`PoseBHModel.on_stage`).
STAGE_OPTIONS = ("freeze_prototypes", "cps", "css")


class _PoseBH(PoseModel):
    """What the multi-dataset and the transfer model share; subclasses say where their heads live."""

    def __init__(
        self,
        backbone: nn.Module,
        heads: Sequence[nn.Module],
        proto_head: nn.Module | None,
        dataset_names: Sequence[str],
        dataset: str | None,
        input_size: tuple[int, int],
        codec: Codec | None,
        phm_weight: float,
        proto_weight: float,
        ppc_weight: float,
        ppd_weight: float,
        cps_weight: float,
        css_weight: float,
        css_threshold: float,
        css_match_distance: float,
        sample_threshold: float,
        cluster_options: Sequence[int],
        cluster_iterations: int,
        cluster_beta: float,
        legacy_quirks: bool,
    ) -> None:
        super().__init__()
        kind = type(self).__name__
        names = tuple(dataset_names)
        if len(names) != len(heads):
            raise ConfigError(f"{kind}: {len(heads)} heads but {len(names)} dataset_names {list(names)}; give one "
                              "name per head, in dataset-index order")
        if len(set(names)) != len(names):
            raise ConfigError(f"{kind}.dataset_names must be distinct; got {list(names)}")
        if dataset is not None and dataset not in names:
            raise ConfigError(f"{kind}.dataset must be one of {', '.join(names)} (or null: each sample's "
                              f"dataset_index); got {dataset!r}")
        experts = getattr(backbone, "num_experts", None)
        if experts is not None and experts != len(heads):
            raise ConfigError(f"{kind}: the backbone has {experts} experts but there are {len(heads)} heads; "
                              "ViTPose++ pairs expert d with head d")
        counts = tuple(int(head.num_keypoints) for head in heads)
        if proto_head is not None and tuple(proto_head.dataset_keypoints) != counts:
            raise ConfigError(f"{kind}: proto_head.num_keypoints {list(proto_head.dataset_keypoints)} must be the "
                              f"heads' keypoint counts {list(counts)}")
        for name, value in (("phm_weight", phm_weight), ("proto_weight", proto_weight), ("cps_weight", cps_weight),
                            ("css_weight", css_weight), ("ppc_weight", ppc_weight), ("ppd_weight", ppd_weight)):
            if value < 0:
                raise ConfigError(f"{kind}.{name} must be >= 0; got {value}")
        self.normalizer = ImageNormalizer()
        self.backbone = backbone
        self.proto_head = proto_head
        self.dataset_names = names
        self.dataset = dataset
        self.input_size = tuple(input_size)
        self.codec = codec
        self.keypoint_counts = counts
        self.phm_weight = phm_weight
        self.proto_weights = PrototypeLossWeights(proto_weight, ppc_weight, ppd_weight)
        self.cps_weight = cps_weight
        self.css_weight = css_weight
        self.css_threshold = css_threshold
        self.css_match_distance = css_match_distance
        self.sample_threshold = sample_threshold
        self.cluster_options = tuple(int(c) for c in cluster_options)
        self.cluster_iterations = cluster_iterations
        self.cluster_beta = cluster_beta
        self.legacy_quirks = legacy_quirks
        self.routed = experts is not None
        self.cps_enabled = False
        self.css_enabled = False
        if proto_head is not None:
            proto_head.kpt_prototype.legacy_indexing = legacy_quirks
            if cps_weight > 0 and not any(0 < c < sum(counts) for c in self.cluster_options):
                raise ConfigError(f"{kind}.cluster_options {list(self.cluster_options)}: CPS needs a cluster count "
                                  f"between 1 and the {sum(counts)} keypoints - 1")

    # ------------------------------------------------------------------ structure

    def head_modules(self) -> list[nn.Module]:
        """The heatmap heads, in dataset-index order."""
        raise NotImplementedError

    def dataset_id(self, name: str) -> int:
        """The index of dataset ``name`` (its expert and head)."""
        if name not in self.dataset_names:
            raise ConfigError(f"{type(self).__name__}: unknown dataset {name!r}; this model has "
                              f"{', '.join(self.dataset_names)}")
        return self.dataset_names.index(name)

    def dataset_indices(self, batch: Batch, size: int, device: torch.device) -> torch.Tensor:
        """(B,) int64: ``dataset`` for every sample when set, else the batch's ``dataset_index``, else 0."""
        if self.dataset is not None:
            return torch.full((size,), self.dataset_id(self.dataset), dtype=torch.long, device=device)
        given = batch.get("dataset_index")
        if given is None:
            return torch.zeros(size, dtype=torch.long, device=device)
        index = torch.as_tensor(given, device=device).long().reshape(-1)
        bad = index[(index < 0) | (index >= len(self.dataset_names))]
        if len(bad):
            raise ValueError(f"{type(self).__name__}: dataset_index {int(bad[0])} has no head (the model has "
                             f"{len(self.dataset_names)}: {', '.join(self.dataset_names)}); check the order of data.train")
        return index

    def features(self, images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Normalised images -> backbone map, each sample through its dataset's expert (the batch
        runs grouped by dataset, so every expert sees one contiguous slice, and comes back in order)."""
        images = self.normalizer(images)
        if not self.routed:
            return self.backbone(images)
        order = torch.argsort(index, stable=True)
        if bool((order == torch.arange(len(order), device=order.device)).all()):
            return self.backbone(images, dataset_index=index)
        features = self.backbone(images[order], dataset_index=index[order])
        return features[torch.argsort(order)]

    # ------------------------------------------------------------------ inference

    def forward(self, batch: Batch) -> torch.Tensor:
        """Heatmaps (B, K, h, w) of one dataset's head (``dataset``, or the batch's single dataset)."""
        images = batch["image"]
        index = self.dataset_indices(batch, images.shape[0], images.device)
        dataset = self._single_dataset(index)
        return self.head_modules()[dataset](self.features(images, index))

    def _single_dataset(self, index: torch.Tensor) -> int:
        present = torch.unique(index).tolist()
        if len(present) != 1:
            names = [self.dataset_names[int(d)] for d in present]
            raise ValueError(f"{type(self).__name__}: a prediction batch must come from one dataset (one head); got "
                             f"samples of {', '.join(names)}; evaluate each dataset on its own")
        return int(present[0])

    @torch.no_grad()
    def predict(self, batch: Batch, *, flip_test: bool = False) -> PoseResult:
        images = batch["image"]
        index = self.dataset_indices(batch, images.shape[0], images.device)
        dataset = self._single_dataset(index)
        head = self.head_modules()[dataset]
        metas = batch.get("meta")
        if metas and metas[0].num_keypoints != head.num_keypoints:
            raise ValueError(
                f"{type(self).__name__}: the head of dataset {self.dataset_names[dataset]!r} predicts "
                f"{head.num_keypoints} keypoints but the batch's keypoint set {metas[0].name!r} has "
                f"{metas[0].num_keypoints}; choose the matching dataset (model.dataset)")
        return predict_heatmaps(lambda images: head(self.features(images, index)), batch, self.codec,
                                flip_test=flip_test, decode=head.decode, owner=type(self).__name__)

    def example_batch(self, batch_size: int = 1) -> dict[str, Any]:
        width, height = self.input_size
        device = next(self.parameters()).device
        image = torch.randn(batch_size, 3, height, width, device=device)
        # One dataset, so that ``predict`` (one head per batch) takes the same batch; the loss still
        # runs every head, and self-supervises the other heads on these samples.
        dataset = 0 if self.dataset is None else self.dataset_id(self.dataset)
        index = torch.full((batch_size,), dataset, dtype=torch.long, device=device)
        with torch.no_grad():
            was_training = self.training
            self.eval()
            size = self.head_modules()[0](self.features(image[:1], index[:1])).shape[-2:]
            self.train(was_training)
        most = max(self.keypoint_counts)
        generator = torch.Generator(device="cpu").manual_seed(0)
        heatmaps = torch.rand(batch_size, most, *size, generator=generator).to(device)
        weights = torch.zeros(batch_size, most, device=device)
        for row, dataset in enumerate(index.tolist()):
            weights[row, : self.keypoint_counts[dataset]] = 1.0
        heatmaps = heatmaps * weights[..., None, None]
        return {"image": image, "heatmaps": heatmaps, "keypoint_weights": weights, "dataset_index": index}

    # ------------------------------------------------------------------ training

    def on_stage(self, index: int, options: Mapping[str, Any]) -> None:
        """Switch the phase's behaviour: ``freeze_prototypes`` (no EMA update), ``cps`` (cluster the
        prototypes now, unless a clustering was loaded, and supervise the clusters), ``css``
        (cross-type self-supervision). An option left out keeps its current state."""
        unknown = sorted(set(options) - set(STAGE_OPTIONS))
        if unknown:
            raise ConfigError(f"train.stages[{index}].options: {type(self).__name__} does not know {unknown}; it takes "
                              f"{', '.join(STAGE_OPTIONS)}")
        if self.proto_head is None:
            if any(options.get(key) for key in STAGE_OPTIONS):
                raise ConfigError(f"train.stages[{index}].options {dict(options)} need a proto_head; this model has none")
            return
        if "freeze_prototypes" in options:
            self.proto_head.kpt_prototype.frozen = bool(options["freeze_prototypes"])
        if "css" in options:
            self.css_enabled = bool(options["css"])
        if "cps" in options:
            self.cps_enabled = bool(options["cps"])
            if self.cps_enabled:
                self.initialise_clusters()

    def initialise_clusters(self, force: bool = False) -> None:
        """Cluster the keypoint prototypes into the CPS bank (kept when it already holds a clustering)."""
        head = self.proto_head
        if head is None:
            raise ConfigError(f"{type(self).__name__}: CPS needs a proto_head")
        if head.cluster_prototype is None:
            bank = head.kpt_prototype
            head.cluster_prototype = ClusterPrototypes(1, bank.num_sub_prototypes, bank.dim).to(bank.prototypes.device)
        if head.cluster_prototype.ready and not force:
            return
        result = cluster_prototypes(head.kpt_prototype.prototypes, self.cluster_options, self.cluster_iterations,
                                    self.cluster_beta, legacy_sort=self.legacy_quirks)
        head.cluster_prototype.assign(result)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        images = batch["image"]
        index = self.dataset_indices(batch, images.shape[0], images.device)
        features = self.features(images, index)
        outputs = [head(features).float() for head in self.head_modules()]
        targets, weights = _padded_targets(batch, max(self.keypoint_counts), outputs[0].shape[-2:], images.device)
        losses: dict[str, torch.Tensor] = {}
        for dataset, (name, output) in enumerate(zip(self.dataset_names, outputs, strict=True)):
            mask = (index == dataset).float()
            count = output.shape[1]
            losses[f"loss_heatmap_{name}"] = joints_mse(output, targets[:, :count] * mask[:, None, None, None],
                                                        weights[:, :count] * mask[:, None])
        if self.proto_head is not None:
            embeddings = self.proto_head(features).float()  # the embedding net runs under the trainer's autocast
            losses.update(self._prototype_losses(embeddings, outputs, targets, weights, index))
        return losses

    def _prototype_losses(self, embeddings: torch.Tensor, outputs: list[torch.Tensor], targets: torch.Tensor,
                          weights: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The prototype, CPS and CSS losses of embeddings (B, D, H, W), the heads' outputs and the
        padded targets, with autocast off as in the original (pseudo-labels, refinement and losses too)."""
        with full_precision(embeddings):
            return self._prototype_losses_fp32(embeddings, outputs, targets, weights, index)

    def _prototype_losses_fp32(self, embeddings: torch.Tensor, outputs: list[torch.Tensor], targets: torch.Tensor,
                               weights: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        bank = self.proto_head.kpt_prototype
        maps = bank.heatmaps(embeddings)  # (B, J, H, W), before this step's update
        proto = embeddings.sum() * 0.0
        phm = embeddings.sum() * 0.0
        for dataset in torch.unique(index).tolist():
            rows = index == dataset
            count = self.keypoint_counts[dataset]
            truth, truth_weights = targets[rows, :count], weights[rows, :count]
            pixels, labels, confidences = _sample_pixels(embeddings[rows], truth, self.sample_threshold)
            if len(labels):
                logits, classes = bank.learn(pixels, labels, confidences, dataset)
                proto = proto + prototype_contrast(logits, classes, self.proto_weights)
            phm = phm + joints_mse(maps[rows][:, bank.block(dataset)], truth, truth_weights)
        losses = {"loss_proto": proto, "loss_phm": phm * self.phm_weight}
        if self.cps_enabled and self.cps_weight > 0:
            losses["loss_cps"] = self._cps_loss(embeddings, targets, weights, index) * self.cps_weight
        if self.css_enabled and self.css_weight > 0:
            losses["loss_css"] = self._css_loss(embeddings, maps, outputs, index) * self.css_weight
        if self.training:
            bank.synchronise()
        return losses

    def _cps_loss(self, embeddings: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                  index: torch.Tensor) -> torch.Tensor:
        """Each dataset's targets copied onto the clusters that stand for its keypoints."""
        bank, clusters = self.proto_head.kpt_prototype, self.proto_head.cluster_prototype
        if clusters is None or not clusters.ready:
            raise RuntimeError("PoseBH: CPS is on but the cluster prototypes were never built (call initialise_clusters)")
        maps = clusters.heatmaps(embeddings)  # (B, C, H, W)
        cluster_targets = torch.zeros_like(maps)
        cluster_weights = maps.new_zeros(maps.shape[:2])
        pixels, labels = [], []
        for dataset in torch.unique(index).tolist():
            rows = torch.nonzero(index == dataset).flatten()
            offset = bank.offsets[dataset]
            owned = torch.nonzero((clusters.keypoints >= offset) & (clusters.keypoints < offset + self.keypoint_counts[dataset])).flatten()
            local = clusters.keypoints[owned] - offset
            mapped = torch.zeros(len(rows), maps.shape[1], *maps.shape[2:], device=maps.device)
            mapped[:, owned] = targets[rows][:, local]
            cluster_targets[rows] = mapped
            cluster_weights[rows[:, None], owned[None, :]] = weights[rows][:, local]
            found = _sample_pixels(embeddings[rows], mapped, self.sample_threshold)
            pixels.append(found[0])
            labels.append(found[1])
        if self.legacy_quirks:  # the released code stacks the targets dataset by dataset, not in batch order
            order = torch.argsort(index, stable=True)
            cluster_targets, cluster_weights = cluster_targets[order], cluster_weights[order]
        all_pixels, all_labels = torch.cat(pixels), torch.cat(labels)
        contrast = embeddings.sum() * 0.0
        if len(all_labels):
            logits, classes = clusters.learn(all_pixels, all_labels, torch.ones_like(all_labels, dtype=torch.float32), 0)
            contrast = prototype_contrast(logits, classes, self.proto_weights)
        return contrast + joints_mse(maps, cluster_targets, cluster_weights) * self.phm_weight

    def _css_loss(self, embeddings: torch.Tensor, maps: torch.Tensor, outputs: list[torch.Tensor],
                  index: torch.Tensor) -> torch.Tensor:
        """Pseudo-labels for head d (and the prototypes of d) on the samples of the other datasets."""
        bank = self.proto_head.kpt_prototype
        total = embeddings.sum() * 0.0
        for dataset, output in enumerate(outputs):
            others = index != dataset
            if not bool(others.any()):
                continue
            regression = output[others]  # (n, K_d, H, W), with gradient
            prototype = maps[others][:, bank.block(dataset)]
            keep, pseudo, confidence = self._pseudo_labels(regression.detach(), prototype.detach())
            if keep is None:
                continue
            instances = keep.any(dim=1)
            regression, prototype, keep = regression[instances], prototype[instances], keep[instances]
            pseudo_maps = torch.zeros_like(regression)
            pseudo_weights = regression.new_zeros(regression.shape[:2])
            pseudo_maps[keep] = pseudo
            pseudo_weights[keep] = confidence
            pixels, labels, confidences = _sample_pixels(embeddings[others][instances],
                                                         pseudo_maps * pseudo_weights[..., None, None],
                                                         self.sample_threshold)
            if not len(labels):  # as the original: no sampled pixel, no CSS term for this dataset at all
                continue
            logits, classes = bank.learn(pixels, labels, confidences, dataset)
            total = (total + joints_mse(regression, pseudo_maps, pseudo_weights)
                     + joints_mse(prototype, pseudo_maps, pseudo_weights) * self.phm_weight
                     + prototype_contrast(logits, classes, self.proto_weights))
        return total

    def _pseudo_labels(self, regression: torch.Tensor, prototype: torch.Tensor
                       ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Which (sample, joint) pairs agree, their pseudo-label maps (N, H, W) and weights (N,)."""
        peak_r, peak_p = regression.amax(dim=(2, 3)), prototype.amax(dim=(2, 3))
        keep = (peak_r > self.css_threshold) & (peak_p > self.css_threshold)
        if not bool(keep.any()):
            return None, regression, regression
        at_r, _ = heatmap_maxima(regression)
        at_p, _ = heatmap_maxima(prototype)
        if self.legacy_quirks:  # the released distance uses the prototype's x where its y belongs
            distance = torch.sqrt((at_r[..., 0] - at_p[..., 0]) ** 2 + (at_p[..., 0] - at_p[..., 1]) ** 2)
        else:
            distance = torch.sqrt(((at_r - at_p) ** 2).sum(dim=-1))
        keep = keep & (distance <= self.css_match_distance)
        if not bool(keep.any()):
            return None, regression, regression
        maps_r, maps_p = regression[keep][None], prototype[keep][None]  # (1, N, H, W)
        coords_r, score_r = heatmap_maxima(maps_r)
        coords_p, score_p = heatmap_maxima(maps_p)
        coords_r, coords_p = dark_udp_refine(maps_r, coords_r, 11)[0], dark_udp_refine(maps_p, coords_p, 11)[0]
        score_r, score_p = score_r[0], score_p[0]
        total = (score_r + score_p).clamp(min=1e-4)
        share_r, share_p = (score_r / total)[:, None], (score_p / total)[:, None]
        if self.legacy_quirks:  # the released code adds the prototype's score where its location belongs
            location = share_r * coords_r + share_p * score_p[:, None]
        else:
            location = share_r * coords_r + share_p * coords_p
        height, width = regression.shape[-2:]
        heatmaps, _ = udp_gaussian_heatmaps(location.cpu().double().numpy()[None], np.ones((1, len(location)), np.float32),
                                            (width, height), (width, height), 2.0)
        pseudo = torch.from_numpy(heatmaps[0]).to(regression.device)
        return keep, pseudo, torch.minimum(score_r, score_p)


def _padded_targets(batch: Batch, keypoints: int, size: Sequence[int], device: torch.device
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's heatmaps (B, K, H, W) and keypoint_weights (B, K), zero-padded to ``keypoints``
    channels (datasets with fewer keypoints collate as lists of differently sized maps)."""
    heatmaps, weights = batch["heatmaps"], batch.get("keypoint_weights")
    if isinstance(heatmaps, torch.Tensor) and (weights is None or isinstance(weights, torch.Tensor)):
        if heatmaps.shape[1] > keypoints or tuple(heatmaps.shape[-2:]) != tuple(size):
            raise ValueError(f"PoseBH: the batch has targets {tuple(heatmaps.shape[1:])}; the heads give at most "
                             f"{keypoints} heatmaps of {tuple(size)} (does the codec's heatmap_size match the model?)")
        weights = torch.ones(heatmaps.shape[:2], device=device) if weights is None else weights
        extra = keypoints - heatmaps.shape[1]
        return (torch.nn.functional.pad(heatmaps.to(device, torch.float32), (0, 0, 0, 0, 0, extra)),
                torch.nn.functional.pad(weights.to(device, torch.float32), (0, extra)))
    rows = [torch.as_tensor(h) for h in heatmaps] if isinstance(heatmaps, (list, tuple)) else list(heatmaps)
    weight_rows = ([torch.ones(len(h)) for h in rows] if weights is None else
                   [torch.as_tensor(w) for w in weights] if isinstance(weights, (list, tuple)) else list(weights))
    targets = torch.zeros(len(rows), keypoints, *size, device=device)
    target_weights = torch.zeros(len(rows), keypoints, device=device)
    for row, (heatmap, weight) in enumerate(zip(rows, weight_rows, strict=True)):
        if heatmap.shape[0] > keypoints or tuple(heatmap.shape[-2:]) != tuple(size):
            raise ValueError(f"PoseBH: sample {row} has targets {tuple(heatmap.shape)}; the heads give at most "
                             f"{keypoints} heatmaps of {tuple(size)} (does the codec's heatmap_size match the model?)")
        targets[row, : heatmap.shape[0]] = heatmap.to(device, torch.float32)
        target_weights[row, : weight.shape[0]] = weight.to(device, torch.float32)
    return targets, target_weights


def _sample_pixels(embeddings: torch.Tensor, heatmaps: torch.Tensor, threshold: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixels whose highest target is above ``threshold``: their embeddings (N, D), the argmax
    keypoint (N,) and that target value (N,). embeddings (n, D, H, W), heatmaps (n, K, H, W)."""
    flat_embeddings = embeddings.permute(0, 2, 3, 1).reshape(-1, embeddings.shape[1])
    flat_maps = heatmaps.permute(0, 2, 3, 1).reshape(-1, heatmaps.shape[1])
    best, label = flat_maps.max(dim=1)
    chosen = best > threshold
    return flat_embeddings[chosen], label[chosen], best[chosen]


class PoseBHModel(_PoseBH):
    """ViTPose++ (+ PoseBH's prototype head): one backbone, one heatmap head per dataset.

    Batch keys: ``image`` (B, 3, H, W); ``dataset_index`` (B,); for training ``heatmaps`` and
    ``keypoint_weights``, (B, K_max, h, w) and (B, K_max) or per-sample lists of each sample's
    own K; ``meta`` for the flip test.

    Args:
        backbone: ``posebh_vit_moe`` (one expert per dataset) or any backbone.
        heads: one ``heads`` component per dataset (``heatmap_deconv``), in dataset-index order.
        proto_head: ``posebh_proto_head`` (its ``num_keypoints`` the heads'), or null for ViTPose++.
        dataset_names: one name per head (default: the released six).
        dataset: route every sample to this dataset's expert and head (single-dataset use).
        input_size: (width, height) of the network input.
        codec: the experiment's codec (the engine passes it), for decoding and the flip test.
        phm_weight: weight of the prototype-heatmap MSE terms (3.33e-6).
        proto_weight, ppc_weight, ppd_weight: the pixel-prototype contrast weights (1.25e-5, 0.01, 0.001).
        cps_weight: weight of clustered prototype supervision (1e-2).
        css_weight: weight of cross-type self-supervision (1e-3).
        css_threshold: both peaks must exceed this for a pseudo-label (0.25).
        css_match_distance: the peaks at most this far apart, in heatmap pixels (2.1).
        sample_threshold: target value above which a pixel trains the prototypes (0: the whole
            Gaussian support).
        cluster_options, cluster_iterations, cluster_beta: CPS's cluster counts to try, soft
            k-means iterations and softmax sharpness (64/96/128, 500, 20).
        legacy_quirks: reproduce the released code's bugs (see the module docstring).
    """

    def __init__(
        self,
        backbone: Annotated[nn.Module, Nested("backbones")],
        heads: Annotated[tuple[nn.Module, ...], Nested("heads")],
        proto_head: Annotated[nn.Module | None, Nested("heads")] = None,
        dataset_names: tuple[str, ...] = DATASET_NAMES,
        dataset: str | None = None,
        input_size: tuple[int, int] = (192, 256),
        codec: Codec | None = None,
        phm_weight: float = 3.33e-6,
        proto_weight: float = 1.25e-5,
        ppc_weight: float = 0.01,
        ppd_weight: float = 0.001,
        cps_weight: float = 1e-2,
        css_weight: float = 1e-3,
        css_threshold: float = 0.25,
        css_match_distance: float = 2.1,
        sample_threshold: float = 0.0,
        cluster_options: tuple[int, ...] = (64, 96, 128),
        cluster_iterations: int = 500,
        cluster_beta: float = 20.0,
        legacy_quirks: bool = False,
    ) -> None:
        heads = list(heads)
        super().__init__(backbone, heads, proto_head, dataset_names, dataset, input_size, codec, phm_weight,
                         proto_weight, ppc_weight, ppd_weight, cps_weight, css_weight, css_threshold,
                         css_match_distance, sample_threshold, cluster_options, cluster_iterations, cluster_beta,
                         legacy_quirks)
        self.heads = nn.ModuleList(heads)

    def head_modules(self) -> list[nn.Module]:
        return list(self.heads)

    def fit_to_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Take the expert width P from the file's tensors: the released ViTPose++-S has P = 96
        although its config says 192, and a file trained with any other P loads the same way."""
        width = expert_width(state_dict)
        if isinstance(self.backbone, ViTMoE) and width is not None and width != self.backbone.part_features:
            self.backbone.set_part_features(width)


class PoseBHTransferModel(_PoseBH):
    """PoseBH's transfer model (InterHand2.6M, 3DPW): a plain ViT, one heatmap head and a fresh
    prototype head for the new keypoints, trained with the heatmap, prototype-contrast and
    prototype-heatmap losses (no CPS, no CSS). Its names are the core top-down model's
    (``backbone.*``, ``head.*``) plus ``proto_head.*``, so a ViTPose++/PoseBH model split to one
    dataset (``posecore convert --converter posebh-split-coco``) initialises it.

    Args: as :class:`PoseBHModel`, with one ``head`` instead of ``heads``; the defaults are the
    transfer configs' (prototype-heatmap weight 1.25e-5, pixels above 0.2 train the prototypes).
    """

    def __init__(
        self,
        backbone: Annotated[nn.Module, Nested("backbones")],
        head: Annotated[nn.Module, Nested("heads")],
        proto_head: Annotated[nn.Module | None, Nested("heads")] = None,
        dataset_name: str = "target",
        input_size: tuple[int, int] = (192, 256),
        codec: Codec | None = None,
        phm_weight: float = 1.25e-5,
        proto_weight: float = 1.25e-5,
        ppc_weight: float = 0.01,
        ppd_weight: float = 0.001,
        sample_threshold: float = 0.2,
        legacy_quirks: bool = False,
    ) -> None:
        super().__init__(backbone, [head], proto_head, (dataset_name,), None, input_size, codec, phm_weight,
                         proto_weight, ppc_weight, ppd_weight, 0.0, 0.0, 0.25, 2.1, sample_threshold, (), 0, 20.0,
                         legacy_quirks)
        self.head = head

    def head_modules(self) -> list[nn.Module]:
        return [self.head]

    def dataset_indices(self, batch: Batch, size: int, device: torch.device) -> torch.Tensor:
        """Every sample is of the one target dataset, whatever its position among the datasets."""
        return torch.zeros(size, dtype=torch.long, device=device)


# ---------------------------------------------------------------------------------------------
# Checkpoint converters
#
# The original layout (ViTPose++'s ``vitpose+_*.pth`` and PoseBH's ``base.pth``, mmcv files with a
# ``state_dict``): ``backbone.*`` as posecore's, the COCO head under ``keypoint_head.*`` and the
# others under ``associate_keypoint_heads.{0..4}.*``, ``proto_head.*`` as posecore's.

_HEAD = re.compile(r"^keypoint_head\.")
_ASSOCIATE = re.compile(r"^associate_keypoint_heads\.(\d+)\.")
_POSECORE_HEAD = re.compile(r"^heads\.(\d+)\.")


class PoseBHLayout:
    """``posebh-mmpose0x``: the original layout -> :class:`PoseBHModel`'s (``heads.{d}.*``).

    ``backbone.cls_token`` (never used) is dropped and reported. The CPS clusters' keypoints,
    which the original keeps only in memory, are recovered from the tensors: the first
    sub-prototype of each cluster is a copy of the keypoint sub-prototype it was built from, in
    the released code as in the intended one; a file whose clusters are still the random
    placeholder gets -1 (the clustering then runs when CPS starts).
    """

    name = "posebh-mmpose0x"

    def matches(self, state_dict: Mapping[str, torch.Tensor]) -> bool:
        return any(key.startswith(("associate_keypoint_heads.", "proto_head.")) for key in state_dict)

    def __call__(self, state_dict: Mapping[str, torch.Tensor]) -> ConvertedStateDict:
        merged = merged_expert(state_dict)
        if merged is not None:
            raise CheckpointError(f"converter {self.name!r}: this file is one dataset's model (ViTPose++'s "
                                  f"tools/model_split.py output: fc2 holds expert {merged}), not the multi-dataset "
                                  f"model; load it into a single-dataset ViTPose with converter "
                                  f"posebh-split-{_SPLIT_NAMES[merged]}")
        converted = ConvertedStateDict()
        for key, tensor in state_dict.items():
            if key == "backbone.cls_token":
                converted.dropped[key] = "ViTPose's forward never uses a class token"
                continue
            found = _ASSOCIATE.match(key)
            if found:
                key = f"heads.{int(found[1]) + 1}." + key[found.end():]
            else:
                key = _HEAD.sub("heads.0.", key)
            converted[key] = tensor
        clusters = converted.get("proto_head.cluster_prototype.prototypes")
        bank = converted.get("proto_head.kpt_prototype.prototypes")
        if clusters is not None and bank is not None and "proto_head.cluster_prototype.keypoints" not in converted:
            converted["proto_head.cluster_prototype.keypoints"] = cluster_keypoints(bank, clusters)
        return converted

    def __repr__(self) -> str:
        return f"<converter {self.name!r}>"


def cluster_keypoints(bank: torch.Tensor, clusters: torch.Tensor) -> torch.Tensor:
    """(C,) the keypoint whose sub-prototype each cluster's first sub-prototype copies, or all -1
    when some cluster copies none (a placeholder bank)."""
    flat = torch.nn.functional.normalize(bank.float().reshape(-1, bank.shape[-1]), dim=-1)
    first = torch.nn.functional.normalize(clusters.float()[:, 0], dim=-1)
    similarity = first @ flat.t()
    best, where = similarity.max(dim=1)
    if bool((best < 1.0 - 1e-4).any()):
        return torch.full((clusters.shape[0],), -1, dtype=torch.long)
    return torch.div(where, bank.shape[1], rounding_mode="floor")


mmpose0x = PoseBHLayout()


class SplitToDataset:
    """``posebh-split-<dataset>``: a ViTPose++ / PoseBH multi-dataset file -> the plain single-dataset
    ViTPose of that dataset, in the core's ``topdown_heatmap`` layout (``backbone.*``, ``head.*``).

    What ViTPose++'s ``tools/model_split.py`` does, checked: every ``fc2`` takes the dataset's
    expert rows (:func:`posecore_posebh.vit_moe.merge_expert`), the dataset's head becomes
    ``head``; the other heads and the experts are dropped and listed. A PoseBH file's
    ``proto_head.*`` is kept, as the original tool keeps it: it initialises the transfer models
    (after ``posebh-remove-proto``), and a plain ViTPose loading the file reports it unexpected.
    Reads the original layout and posecore's (``heads.{d}``).

    An output of the official tool is recognised and loaded as it is, not merged a second time:
    its ``fc2`` already holds an expert (D rows) while the experts stay in the file (the tool's
    expert removal tests the key list instead of the key), and its ``keypoint_head`` is the split
    dataset's head. Which expert ``fc2`` holds is read from the tensors (its last P rows equal that
    expert's); a file split to another dataset is refused, as is a file without experts (posecore's
    own split output, a plain ViTPose: nothing says which dataset it is; ViTPose issue #156).
    """

    def __init__(self, dataset: int, name: str) -> None:
        self.dataset = dataset
        self.name = name

    def __call__(self, state_dict: Mapping[str, torch.Tensor]) -> ConvertedStateDict:
        if not any(".mlp.experts." in key for key in state_dict):
            raise CheckpointError(f"converter {self.name!r}: the file has no experts (mlp.experts.*), so it is not a "
                                  "ViTPose++ multi-dataset model; a split file is already a single-dataset ViTPose")
        merged = merged_expert(state_dict)
        if merged is None:
            return self._split(state_dict)
        if merged != self.dataset:
            raise CheckpointError(f"converter {self.name!r}: this file is already split (ViTPose++'s tools/model_split.py "
                                  f"output): its fc2 holds expert {merged}, not {self.dataset}; use "
                                  f"posebh-split-{_SPLIT_NAMES[merged]} or split the multi-dataset file")
        return self._already_split(state_dict)

    def _already_split(self, state_dict: Mapping[str, torch.Tensor]) -> ConvertedStateDict:
        """An official split output: ``fc2`` as it is, ``keypoint_head`` as the head, the leftovers dropped."""
        converted = ConvertedStateDict()
        for key, tensor in state_dict.items():
            if re.match(r"^backbone\.blocks\.\d+\.mlp\.experts\.", key):
                converted.dropped[key] = ("left in by tools/model_split.py (its fc2 already holds expert "
                                          f"{self.dataset})")
            elif key == "backbone.cls_token":
                converted.dropped[key] = "ViTPose's forward never uses a class token"
            elif key.startswith("keypoint_head."):
                converted["head." + key[len("keypoint_head."):]] = tensor
            elif _head_index(key) is not None:
                converted.dropped[key] = "another dataset's head, left in by tools/model_split.py"
            else:
                converted[key] = tensor
        if not any(key.startswith("head.") for key in converted):
            raise CheckpointError(f"converter {self.name!r}: the split file has no keypoint_head.*")
        return converted

    def _split(self, state_dict: Mapping[str, torch.Tensor]) -> ConvertedStateDict:
        converted = ConvertedStateDict()
        heads_seen = set()
        for key, tensor in merge_expert(state_dict, self.dataset).items():
            head = _head_index(key)
            if head is None:
                if key == "backbone.cls_token":
                    converted.dropped[key] = "ViTPose's forward never uses a class token"
                else:
                    converted[key] = tensor
                continue
            heads_seen.add(head[0])
            if head[0] == self.dataset:
                converted["head." + head[1]] = tensor
            else:
                converted.dropped[key] = f"the head of dataset {head[0]}, not {self.dataset}"
        if self.dataset not in heads_seen:
            raise CheckpointError(f"converter {self.name!r}: the file has no head for dataset {self.dataset} "
                                  f"(heads found: {sorted(heads_seen)})")
        for key in state_dict:
            found = re.match(r"^backbone\.blocks\.\d+\.mlp\.experts\.(\d+)\.", key)
            if found and int(found[1]) != self.dataset:
                converted.dropped[key] = f"the expert of dataset {found[1]}, not {self.dataset}"
            elif found:
                converted.dropped[key] = "merged into fc2"
        return converted

    def __repr__(self) -> str:
        return f"<converter {self.name!r}>"


def merged_expert(state_dict: Mapping[str, torch.Tensor]) -> int | None:
    """The expert whose rows every ``backbone.blocks.{i}.mlp.fc2`` already ends with (a file that
    ViTPose++'s ``tools/model_split.py`` wrote: ``fc2`` is D rows, the experts are still there), or
    ``None`` when ``fc2`` is the shared D - P rows of a multi-dataset file or there are no experts."""
    fc1, fc2 = state_dict.get("backbone.blocks.0.mlp.fc1.weight"), state_dict.get("backbone.blocks.0.mlp.fc2.weight")
    if fc1 is None or fc2 is None or fc2.shape[0] != fc1.shape[1]:
        return None
    found = [m for key in state_dict if (m := _EXPERT_TENSOR.match(key))]
    blocks = sorted({int(m[1]) for m in found})
    experts = sorted({int(m[2]) for m in found})
    if not experts:
        return None

    def ends_with(block: int, expert: int) -> bool:
        prefix = f"backbone.blocks.{block}.mlp."
        return all(torch.equal(state_dict[f"{prefix}fc2.{part}"][-len(state_dict[f"{prefix}experts.{expert}.{part}"]):],
                               state_dict[f"{prefix}experts.{expert}.{part}"]) for part in ("weight", "bias"))

    for expert in experts:
        if all(ends_with(block, expert) for block in blocks):
            return expert
    raise CheckpointError("the file's fc2 has as many rows as the tokens are wide (an expert already merged in) but "
                          f"ends with none of its experts {experts}; it is neither a ViTPose++ multi-dataset file nor "
                          "a tools/model_split.py output")


_EXPERT_TENSOR = re.compile(r"^backbone\.blocks\.(\d+)\.mlp\.experts\.(\d+)\.weight$")


def _head_index(key: str) -> tuple[int, str] | None:
    """(dataset, rest of the key) for a head key of either layout."""
    if key.startswith("keypoint_head."):
        return 0, key[len("keypoint_head."):]
    for pattern, shift in ((_ASSOCIATE, 1), (_POSECORE_HEAD, 0)):
        found = pattern.match(key)
        if found:
            return int(found[1]) + shift, key[found.end():]
    return None


#: The converters' dataset names, by expert.
_SPLIT_NAMES = ("coco", "aic", "mpii", "ap10k", "apt36k", "wholebody")
split_coco = SplitToDataset(0, "posebh-split-coco")
split_aic = SplitToDataset(1, "posebh-split-aic")
split_mpii = SplitToDataset(2, "posebh-split-mpii")
split_ap10k = SplitToDataset(3, "posebh-split-ap10k")
split_apt36k = SplitToDataset(4, "posebh-split-apt36k")
split_wholebody = SplitToDataset(5, "posebh-split-wholebody")


class HuggingFaceToDataset:
    """``posebh-hf-<dataset>``: a Hugging Face ViTPose++ checkpoint -> :class:`PoseBHModel`, its
    head as the head of the named dataset.

    transformers' ``VitPoseForPoseEstimation`` with experts holds the expert backbone
    (``backbone.encoder.layer.{i}.mlp.{fc2, experts.{j}}``) and a single ``head.*`` (the released
    conversions keep the COCO head). The core's ``vitpose-hf`` converter renames it to posecore's
    names; the head then becomes ``heads.{d}`` of the dataset named here, whose expert it was
    trained with, and the other heads stay as the model has them (reported missing). Choose the
    dataset that way too when predicting (``model.dataset``): an expert with another dataset's
    head is not a model (transformers issue #39789).
    """

    def __init__(self, dataset: int, name: str) -> None:
        self.dataset = dataset
        self.name = name

    def __call__(self, state_dict: Mapping[str, torch.Tensor]) -> ConvertedStateDict:
        plain = posecore.get_converter("vitpose-hf")(state_dict)
        if expert_width(plain) is None:
            raise CheckpointError(f"converter {self.name!r}: the file has no experts (mlp.experts.*), so it is a plain "
                                  "ViTPose, not ViTPose++; load it into a single-dataset ViTPose preset")
        converted = ConvertedStateDict()
        converted.dropped.update(getattr(plain, "dropped", {}))
        for key, tensor in plain.items():
            converted[f"heads.{self.dataset}." + key[len("head."):] if key.startswith("head.") else key] = tensor
        return converted

    def __repr__(self) -> str:
        return f"<converter {self.name!r}>"


hf_coco = HuggingFaceToDataset(0, "posebh-hf-coco")
hf_aic = HuggingFaceToDataset(1, "posebh-hf-aic")
hf_mpii = HuggingFaceToDataset(2, "posebh-hf-mpii")
hf_ap10k = HuggingFaceToDataset(3, "posebh-hf-ap10k")
hf_apt36k = HuggingFaceToDataset(4, "posebh-hf-apt36k")
hf_wholebody = HuggingFaceToDataset(5, "posebh-hf-wholebody")


def remove_proto(state_dict: Mapping[str, torch.Tensor]) -> ConvertedStateDict:
    """``posebh-remove-proto``: PoseBH's ``tools/remove_proto.py``: drop the keypoint prototypes
    (``proto_head.kpt_prototype.prototypes``), keep everything else as it is, so the embedding
    network initialises a transfer model whose new keypoints get fresh prototypes."""
    converted = ConvertedStateDict({k: v for k, v in state_dict.items() if not k.endswith("kpt_prototype.prototypes")})
    for key in state_dict:
        if key.endswith("kpt_prototype.prototypes"):
            converted.dropped[key] = "the training datasets' prototypes; the transfer model learns its own"
    return converted

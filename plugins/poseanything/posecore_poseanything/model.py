"""``poseanything``: few-shot, category-agnostic pose (Hirschorn & Avidan, ECCV 2024, arXiv 2311.17891;
github.com/orhir/PoseAnything), and the converter of its released checkpoints.

Given S support crops with their keypoints and the category's skeleton, the model predicts those
keypoints on a query crop. A shared backbone encodes every image; each support keypoint becomes a
token by pooling the support features under its Gaussian heatmap (sigma 1 on the 64x64 grid),
averaged over the shots and dropped when any shot lacks it; the head (see
:mod:`posecore_poseanything.transformer`) then encodes image and keypoint tokens jointly, proposes a
location per keypoint from a similarity map and refines it with the graph transformer decoder.

Batches come from an episodic dataset (``mp100`` or ``synthetic_categories`` with ``episodes=True``)
through a pipeline that ends with ``generate_target`` (the ``msra_heatmap`` codec, sigma 1 at a
quarter of the input) and ``pack_sample``. The query and every support sample carry ``image``,
``heatmaps`` (K, h, w) and ``keypoint_weights`` (K,); the query also its crop ``keypoints`` (K, 2);
the supports their category's ``meta`` (its skeleton). Categories in one batch may have different
K: the model pads them to the widest one, which gives exactly what padding to the released code's
100 slots gives, since padded slots are masked out of every attention and of the graph.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posecore import ConvertedStateDict, Nested
from posecore.codecs import Codec
from posecore.data import DatasetMeta
from posecore.models import Batch, ImageNormalizer, PoseModel, PoseResult
from posecore_poseanything.transformer import (
    KeypointBranch,
    PoseAnythingTransformer,
    grid_sine_encoding,
    inverse_sigmoid,
    skeleton_adjacency,
)

__all__ = ["Episodes", "HeadOutput", "PoseAnything", "PoseAnythingHead", "convert_original", "detect_variant"]


@dataclasses.dataclass(frozen=True)
class HeadOutput:
    """What the head computes for a batch of episodes. (A dataclass, not attrs: ``torch.compile``
    traces a dataclass's construction inside the compiled head, and breaks on attrs' frozen one.)

    Attributes:
        similarity: (B, K, H, W) query-support similarity (the heatmap loss reads its sigmoid).
        proposals: (B, K, 2) the decoder's starting points, x, y in [0, 1] of the crop.
        global_proposals: (B, K, 2) soft-argmax over the whole similarity map (the proposal loss).
        predictions: (L, B, K, 2) each decoder layer's keypoints, x, y in [0, 1].
        valid: (B, K) bool, the keypoints every support shot defines.
    """

    similarity: torch.Tensor
    proposals: torch.Tensor
    global_proposals: torch.Tensor
    predictions: torch.Tensor
    valid: torch.Tensor


class PoseAnythingHead(nn.Module):
    """``keypoint_head``: projections, support tokens, transformer and coordinate branches.

    Args:
        in_channels: Cb, the backbone's channels (768 for SwinV2-T/S).
        dim: D, the transformer width (256).
        num_heads: attention heads (8).
        dim_feedforward: FFN width (768; the released configs set it to ``in_channels``).
        dropout: dropout everywhere in the transformer (0.1).
        num_encoder_layers, num_decoder_layers: 3 and 3.
        graph_decoder: the decoder FFN's first layer is a GCN over the skeleton (Pose Anything);
            ``False`` gives the released ``base_*`` configs' plain MLP (improved CapeFormer).
        similarity_init_gain: scales the initial weights of the proposal generator's support and
            query projections (1: the released Xavier initialisation).
        original_transposed_window: reproduce the released code's (W, H) layout of the proposal
            window (a bug that only matters on non-square feature grids; see
            :func:`~posecore_poseanything.transformer.similarity_proposals`).
    """

    def __init__(self, in_channels: int, dim: int = 256, num_heads: int = 8, dim_feedforward: int = 768,
                 dropout: float = 0.1, num_encoder_layers: int = 3, num_decoder_layers: int = 3,
                 graph_decoder: bool = True, similarity_init_gain: float = 1.0,
                 original_transposed_window: bool = False) -> None:
        super().__init__()
        if dim % 2 or dim % num_heads:
            raise ValueError(f"PoseAnythingHead.dim must be even and divisible by num_heads={num_heads}; got {dim}")
        self.dim = dim
        self.input_proj = nn.Conv2d(in_channels, dim, kernel_size=1)
        self.query_proj = nn.Linear(in_channels, dim)
        self.transformer = PoseAnythingTransformer(dim, num_heads, dim_feedforward, dropout, num_encoder_layers,
                                                   num_decoder_layers, graph_decoder, original_transposed_window)
        self.kpt_branch = nn.ModuleList(KeypointBranch(dim) for _ in range(num_decoder_layers))
        self._reset_parameters(similarity_init_gain)

    def _reset_parameters(self, similarity_gain: float) -> None:
        """Xavier-uniform for every matrix (biases of those modules 0), as the released head does;
        the last Linear of each coordinate branch starts at zero."""
        for module in self.modules():
            weight = getattr(module, "weight", None)
            if isinstance(weight, nn.Parameter) and weight.dim() > 1:
                nn.init.xavier_uniform_(weight)
                if isinstance(getattr(module, "bias", None), nn.Parameter):
                    nn.init.zeros_(module.bias)
        for parameter in self.transformer.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)
        for branch in self.kpt_branch:
            nn.init.zeros_(branch.mlp[-1].weight)
            nn.init.zeros_(branch.mlp[-1].bias)
        generator = self.transformer.proposal_generator
        with torch.no_grad():
            generator.support_proj.weight.mul_(similarity_gain)
            generator.query_proj.weight.mul_(similarity_gain)

    def support_tokens(self, support_features: torch.Tensor, support_heatmaps: torch.Tensor,
                       support_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap-weighted pooling of every shot's features, averaged over shots.

        Args:
            support_features: (S, B, Cb, H, W).
            support_heatmaps: (S, B, K, h, w) unit-peak Gaussians (0 for missing keypoints).
            support_weights: (S, B, K).

        Returns:
            tokens (B, K, D) and valid (B, K) bool: defined in every shot.
        """
        shots, batch, channels = support_features.shape[:3]
        size = support_heatmaps.shape[-2:]
        features = F.interpolate(support_features.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
        heatmaps = support_heatmaps.flatten(0, 1).flatten(2)  # (S*B, K, hw)
        heatmaps = heatmaps / (heatmaps.sum(dim=-1, keepdim=True) + 1e-8)
        pooled = torch.bmm(heatmaps, features.flatten(2).transpose(1, 2))  # (S*B, K, Cb)
        pooled = pooled.view(shots, batch, -1, channels).mean(dim=0)
        mask = support_weights.prod(dim=0)
        return self.query_proj(pooled * mask[..., None]), mask > 0

    def forward(self, query_features: torch.Tensor, support_features: torch.Tensor, support_heatmaps: torch.Tensor,
                support_weights: torch.Tensor, skeletons: Sequence[Sequence[tuple[int, int]]]) -> HeadOutput:
        """query_features (B, Cb, H, W); the supports as in :meth:`support_tokens`; skeletons: per
        sample, the category's 0-based links."""
        tokens, valid = self.support_tokens(support_features, support_heatmaps, support_weights)
        batch, _, height, width = query_features.shape
        image = self.input_proj(query_features).flatten(2).transpose(1, 2)  # (B, HW, D)
        image_pos = grid_sine_encoding(height, width, self.dim // 2, image.device).expand(batch, -1, -1)
        memory, tokens = self.transformer.encoder(image, tokens, image_pos, ~valid)
        similarity, proposals, global_proposals = self.transformer.proposal_generator(memory, tokens, (height, width))
        padding = ~valid
        padding[~valid.any(dim=1), 0] = False  # a sample with no keypoint would give NaN attention
        adjacency = skeleton_adjacency(skeletons, ~padding)
        outputs, references = self.transformer.decoder(tokens, memory, image_pos, proposals, padding, adjacency,
                                                       self.kpt_branch)
        bases = [proposals.detach(), *references[1:-1]]
        predictions = torch.stack([torch.sigmoid(branch(output) + inverse_sigmoid(base))
                                   for branch, output, base in zip(self.kpt_branch, outputs, bases, strict=True)])
        return HeadOutput(similarity, proposals, global_proposals, predictions, valid)


@attrs.frozen
class Episodes:
    """A batch of episodes as tensors on the model's device, padded to K slots."""

    query: torch.Tensor  # (B, 3, H, W)
    supports: torch.Tensor  # (S, B, 3, H, W)
    support_heatmaps: torch.Tensor  # (S, B, K, h, w)
    support_weights: torch.Tensor  # (S, B, K)
    skeletons: list[tuple[tuple[int, int], ...]]


class PoseAnything(PoseModel):
    """Pose Anything: backbone shared by supports and query, plus :class:`PoseAnythingHead`.

    Args:
        backbone: a ``backbones`` component giving one feature map (``out_channels`` Cb);
            ``poseanything_swinv2`` for the released models.
        input_size: (width, height) of the crops (256 x 256).
        embed_dim, num_heads, dim_feedforward, dropout, num_encoder_layers, num_decoder_layers,
            graph_decoder: the head's (see :class:`PoseAnythingHead`).
        max_keypoints: keypoint slots (the released code's 100); a category with more is an error.
        heatmap_loss_weight: weight of the similarity-map loss (2.0).
        similarity_init_gain: the head's (1.0, the released initialisation). Trained from scratch,
            the model learns much faster from flatter initial similarity maps (the synthetic
            default uses 0.2): with the released gain the raw dot products start with a standard
            deviation of about sqrt(D), the soft-argmax is nearly one-hot and passes gradient to a
            few cells only, and the heatmap loss saturates.
        original_transposed_window: the head's (``False``: the intended 3x3 window around each
            similarity peak; ``True``: the released code's (W, H) layout, which differs only on
            non-square crops).
        num_shots: shots in :meth:`example_batch` (so ``posecore flops`` counts every support pass);
            the model itself takes any number of shots.
        codec: the experiment's codec (the engine passes it): the ``msra_heatmap`` whose Gaussians
            the data pipeline draws for the supports and the query. The model reads the targets
            from the batch; it keeps the codec so that evaluation and prediction build the same
            pipeline.

    Batch keys: see the module docstring. ``predict`` returns keypoints in crop pixels for the
    batch's widest category (scores: 1 where every support shot defines the keypoint, else 0);
    ``heatmaps`` are the sigmoid of the similarity maps.
    """

    def __init__(
        self,
        backbone: Annotated[nn.Module, Nested("backbones")],
        input_size: tuple[int, int] = (256, 256),
        embed_dim: int = 256,
        num_heads: int = 8,
        dim_feedforward: int = 768,
        dropout: float = 0.1,
        num_encoder_layers: int = 3,
        num_decoder_layers: int = 3,
        graph_decoder: bool = True,
        max_keypoints: int = 100,
        heatmap_loss_weight: float = 2.0,
        similarity_init_gain: float = 1.0,
        original_transposed_window: bool = False,
        num_shots: int = 1,
        codec: Codec | None = None,
    ) -> None:
        super().__init__()
        if max_keypoints < 1 or num_shots < 1:
            raise ValueError(f"PoseAnything: max_keypoints and num_shots must be at least 1; got {max_keypoints}, "
                             f"{num_shots}")
        self.normalizer = ImageNormalizer()
        self.backbone = backbone
        self.head = PoseAnythingHead(backbone.out_channels, embed_dim, num_heads, dim_feedforward, dropout,
                                     num_encoder_layers, num_decoder_layers, graph_decoder, similarity_init_gain,
                                     original_transposed_window)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.max_keypoints = max_keypoints
        self.heatmap_loss_weight = heatmap_loss_weight
        self.num_shots = num_shots
        self.codec = codec

    # -- batches -------------------------------------------------------------------------------

    @property
    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _slots(self, batch: Batch) -> int:
        supports = batch.get("support")
        if not supports or not all(supports):
            raise ValueError("poseanything: the batch has no 'support' samples; use an episodic dataset (mp100 or "
                             "synthetic_categories with episodes=True)")
        widest = max(int(np.shape(sample["keypoint_weights"])[-1]) for shots in supports for sample in shots)
        if widest > self.max_keypoints:
            raise ValueError(f"poseanything: a category has {widest} keypoints, more than max_keypoints="
                             f"{self.max_keypoints}; raise model.max_keypoints")
        return widest

    def _padded(self, values: Any, slots: int) -> torch.Tensor:
        """A stacked tensor or a list of per-sample arrays (K_i, ...) -> (B, slots, ...) on the device."""
        items = list(values) if not isinstance(values, torch.Tensor) else list(values.unbind(0))
        out = []
        for item in items:
            tensor = torch.as_tensor(item, dtype=torch.float32, device=self._device)
            pad = [0, 0] * (tensor.dim() - 1) + [0, slots - tensor.shape[0]]
            out.append(F.pad(tensor, pad))
        return torch.stack(out)

    def episodes(self, batch: Batch) -> Episodes:
        """The batch's images, support heatmaps, weights and skeletons as padded tensors."""
        slots = self._slots(batch)
        supports = batch["support"]
        counts = {len(shots) for shots in supports}
        if len(counts) != 1:
            raise ValueError(f"poseanything: every episode of a batch needs the same number of shots; got {sorted(counts)}")
        device = self._device
        by_shot = list(zip(*supports, strict=True))  # S tuples of B samples
        images = torch.stack([torch.stack([torch.as_tensor(s["image"]) for s in shot]) for shot in by_shot])
        query = self.normalizer(torch.as_tensor(batch["image"]).to(device))
        images = self.normalizer(images.to(device).flatten(0, 1)).view(len(by_shot), *query.shape)
        return Episodes(
            query=query,
            supports=images,
            support_heatmaps=torch.stack([self._padded([s["heatmaps"] for s in shot], slots) for shot in by_shot]),
            support_weights=torch.stack([self._padded([s["keypoint_weights"] for s in shot], slots)
                                         for shot in by_shot]),
            skeletons=[tuple(shots[0]["meta"].skeleton) for shots in supports],
        )

    def run_head(self, episodes: Episodes) -> HeadOutput:
        """One backbone pass over the query and all supports together, then the head."""
        shots, batch = episodes.supports.shape[:2]
        features = self.backbone(torch.cat((episodes.query, episodes.supports.flatten(0, 1))))
        if isinstance(features, (list, tuple)):
            features = features[-1]
        query_features = features[:batch]
        support_features = features[batch:].view(shots, batch, *features.shape[1:])
        return self.head(query_features.float(), support_features.float(), episodes.support_heatmaps,
                         episodes.support_weights, episodes.skeletons)

    # -- the PoseModel contract ----------------------------------------------------------------

    def forward(self, batch: Batch) -> torch.Tensor:
        """Each decoder layer's keypoints (L, B, K, 2), x, y in [0, 1] of the crop."""
        return self.run_head(self.episodes(batch)).predictions

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Pose Anything's five terms: the similarity-map heatmap loss (x ``heatmap_loss_weight``),
        L1 on the global soft-argmax proposals and on every decoder layer's keypoints.

        Each is weighted per keypoint by the query's target weight times the supports' mask,
        summed over keypoints, divided by the sample's weight total (1 if 0), averaged over samples.
        """
        episodes = self.episodes(batch)
        slots = episodes.support_weights.shape[-1]
        output = self.run_head(episodes)
        weights = self._padded(batch["keypoint_weights"], slots) * output.valid.float()
        normaliser = weights.sum(dim=1).clamp(min=1.0)
        width, height = self.input_size
        scale = torch.tensor([width, height], dtype=torch.float32, device=weights.device)
        targets = self._padded(batch["keypoints"], slots) / scale

        def l1(points: torch.Tensor) -> torch.Tensor:
            distance = (points.float() - targets).abs().sum(dim=-1)
            return ((distance * weights).sum(dim=1) / normaliser).mean()

        heatmaps = self._padded(batch["heatmaps"], slots)
        target_maps = F.interpolate(heatmaps, size=output.similarity.shape[-2:], mode="bilinear", align_corners=False)
        target_maps = target_maps / (target_maps.flatten(2).amax(dim=-1)[..., None, None] + 1e-10)
        error = (torch.sigmoid(output.similarity.float()) - target_maps).pow(2).flatten(2).mean(dim=-1)
        losses = {
            "heatmap_loss": self.heatmap_loss_weight * ((error * weights).sum(dim=1) / normaliser).mean(),
            "proposal_loss": l1(output.global_proposals),
        }
        for layer, points in enumerate(output.predictions):
            losses[f"l1_loss_layer{layer}"] = l1(points)
        return losses

    @torch.no_grad()
    def predict(self, batch: Batch, *, flip_test: bool = False) -> PoseResult:
        """The last decoder layer's keypoints in crop pixels; Pose Anything has no flip test
        (``flip_test`` is ignored)."""
        output = self.run_head(self.episodes(batch))
        width, height = self.input_size
        scale = torch.tensor([width, height], dtype=torch.float32, device=output.predictions.device)
        return PoseResult(keypoints=output.predictions[-1].float() * scale, scores=output.valid.float(),
                          heatmaps=torch.sigmoid(output.similarity.float()))

    def example_batch(self, batch_size: int = 1) -> dict[str, Any]:
        """Episodes of a made-up 7-keypoint category (a chain), ``num_shots`` supports each, with
        the codec's heatmaps (64x64 for every released model, also the 224-px legacy B)."""
        from posecore.codecs import msra_gaussian_heatmaps

        width, height = self.input_size
        k = min(7, self.max_keypoints)
        generator = np.random.default_rng(0)
        meta = DatasetMeta(name="example", keypoint_names=[str(i) for i in range(k)],
                           skeleton=[(i, i + 1) for i in range(k - 1)])
        heatmap_size = tuple(getattr(self.codec, "heatmap_size", (max(1, width // 4), max(1, height // 4))))

        def sample() -> dict[str, Any]:
            keypoints = generator.uniform(0.1, 0.9, (k, 2)) * (width, height)
            visibility = np.ones(k, np.float32)
            visibility[-1] = 0.0  # one keypoint missing, as real data has
            heatmaps, weights = msra_gaussian_heatmaps(keypoints, visibility, (width, height), heatmap_size, 1.0)
            image = torch.from_numpy(generator.integers(0, 256, (3, height, width), dtype=np.uint8))
            return {"image": image, "keypoints": keypoints.astype(np.float32), "heatmaps": heatmaps,
                    "keypoint_weights": weights, "meta": meta}

        queries = [sample() for _ in range(batch_size)]
        batch: dict[str, Any] = {key: torch.stack([torch.as_tensor(q[key]) for q in queries])
                                 for key in ("image", "keypoints", "heatmaps", "keypoint_weights")}
        batch["meta"] = [meta] * batch_size
        batch["support"] = [[sample() for _ in range(self.num_shots)] for _ in range(batch_size)]
        device = self._device
        return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


# ---------------------------------------------------------------------------------------------
# the released checkpoints


_BUFFERS = ("relative_position_index", "relative_coords_table", "attn_mask")


def detect_variant(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which released architecture a PoseAnything state_dict (original or posecore keys) holds:
    ``"tiny"`` (SwinV2-T), ``"small"`` (SwinV2-S) or ``"base-legacy"`` (the Dec-2023 SwinV2-B at
    224 px with the learned upsampler), told apart by tensor shapes."""
    def find(suffix: str) -> torch.Tensor | None:
        return next((v for k, v in state_dict.items() if k.endswith(suffix)), None)

    proj = find("input_proj.weight")
    patch = find("patch_embed.proj.weight")
    if proj is None or patch is None:
        raise ValueError("not a Pose Anything checkpoint: it has no keypoint_head.input_proj / "
                         "backbone.patch_embed.proj weights")
    upsample = any(k.endswith("upsample.weight") for k in state_dict)
    if proj.shape[1] == 1024 and patch.shape[0] == 128 and upsample:
        return "base-legacy"
    if proj.shape[1] == 768 and patch.shape[0] == 96 and not upsample:
        blocks = {int(m.group(1)) for k in state_dict if (m := re.search(r"layers\.2\.blocks\.(\d+)\.", k))}
        if len(blocks) == 6:
            return "tiny"
        if len(blocks) == 18:
            return "small"
    raise ValueError(f"unknown Pose Anything architecture: input_proj {list(proj.shape)}, patch_embed "
                     f"{list(patch.shape)}, upsample {'present' if upsample else 'absent'}")


def convert_original(state_dict: Mapping[str, torch.Tensor]) -> ConvertedStateDict:
    """The released Pose Anything (mmcv 1.x) state_dict -> posecore's.

    ``keypoint_head.*`` becomes ``head.*`` (the names below it are kept); ``backbone.*`` becomes
    ``backbone.swin.*`` in timm's SwinV2 layout, where each stage's ``downsample`` sits at the start
    of the next stage rather than the end of its own (what timm's own filter does for official
    SwinV2 files); ``backbone.upsample.*`` (the legacy learned upsampler) keeps its name. SwinV2's
    buffers, which timm recomputes, and the unused ImageNet classifier are dropped, and reported.
    """
    converted = ConvertedStateDict()
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith("keypoint_head."):
            converted["head." + key.removeprefix("keypoint_head.")] = value
        elif key.startswith("backbone.upsample."):
            converted[key] = value
        elif key.startswith("backbone.head."):
            converted.dropped[key] = "the SwinV2 ImageNet classifier, never used by Pose Anything"
        elif key.startswith("backbone.") and key.rsplit(".", 1)[-1] in _BUFFERS:
            converted.dropped[key] = "a SwinV2 buffer that timm recomputes"
        elif key.startswith("backbone."):
            rest = _DOWNSAMPLE.sub(lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", key.removeprefix("backbone."))
            converted["backbone.swin." + rest] = value
        else:
            converted[key] = value  # unknown: left for the key report to show
    return converted


_DOWNSAMPLE = re.compile(r"^layers\.(\d+)\.downsample\.")


def _matches(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(key.removeprefix("module.").startswith("keypoint_head.transformer.") for key in state_dict)


def _config_for(state_dict: Mapping[str, torch.Tensor]) -> Any:
    """The MP-100 preset (1-shot, split 1) of the architecture a released file's shapes show: the
    weights decide only the architecture; shots and split change evaluation, not the model."""
    from posecore import CheckpointError
    from posecore_poseanything.presets import mp100_preset

    try:
        variant = detect_variant(state_dict)
    except ValueError as exc:
        raise CheckpointError(f"{exc}; name its preset with --preset") from None
    return mp100_preset(variant, 1, 1)


convert_original.matches = _matches  # type: ignore[attr-defined]
convert_original.config_for = _config_for  # type: ignore[attr-defined]

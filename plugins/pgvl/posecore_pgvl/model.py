"""``pgvl``: the PGVL pose model (Liu, Xie and Shi, arXiv 2509.07385; github.com/lushbng/PGVL, v2 code).

Data flow (ViT-B at 256x192, K keypoints)::

    image (B,3,256,192) -> backbone ViT -> (B,768,16,12) -> tokens (B,192,768) -> visual_proj -> (B,192,512)
    prompts (K,) -> CLIP text tower with 8 learnable contexts -> prompt encoder -> (1,K,512) -> (B,K,512)
    fusion (parse graph, see posecore_pgvl.fusion) -> text (B,K,512), visual (B,192,512)
    visual -> (B,512,16,12) -> head (2 deconvs + 1x1) -> heatmaps (B,K,64,48)

Training loss: the heatmap MSE (mmpose's JointsMSELoss, weight 1) plus ``cl_ratio`` times the
keypoint-text contrastive loss (:func:`contrastive_loss`) between the fused visual features at each
keypoint's cell of the feature grid (:func:`down_target_cells`) and the fused text embeddings,
with the learnable temperature ``logit_scale``.

The text tower is frozen the way the original freezes it: its learning rate is 0 (the presets'
``param_groups``), gradients still flow through it to the contexts.

Parameter names follow the original except for three prefixes, which :func:`pgvl_official`
renames: ``my.`` -> ``fusion.``, ``my_up1.`` -> ``visual_proj.``, ``keypoint_head.`` -> ``head.``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import nn

from posecore import CheckpointError, ConfigError, ConvertedStateDict, Nested
from posecore.codecs import Codec
from posecore.models import HeatmapDeconvHead, ImageNormalizer, PoseModel, PoseResult, predict_heatmaps
from posecore_pgvl.fusion import ParseGraphFusion
from posecore_pgvl.text import ContextTextEncoder, PromptEncoder, tokenize

__all__ = ["PGVLModel", "contrastive_loss", "down_target_cells", "pgvl_official"]


def down_target_cells(keypoints: torch.Tensor, visibility: torch.Tensor, input_size: tuple[int, int],
                      grid: tuple[int, int], sigma: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The original's low-resolution contrastive target, reduced to what the loss reads.

    The original draws an MSRA Gaussian of ``sigma`` (the heatmap sigma / 4) on the ``grid``
    (feature-map) resolution and keeps the cells whose value is exactly 1.0: the Gaussian's peak,
    where it survives the clipping. Reproduced exactly, with its integer truncation toward zero:
    ``m = int(coord / stride + 0.5)``, window ``[int(m - 3 sigma), int(m + 3 sigma + 1))``, peak at
    window start + ``floor((6 sigma + 1) / 2)``. So a keypoint in cell 0 or 1 peaks one cell
    further in, one in cell ``W`` (just past the edge) has no peak, and its weight stays.

    Args:
        keypoints: (B, K, 2) x, y in input pixels.
        visibility: (B, K).
        input_size: (width, height) of the input.
        grid: (height, width) of the feature map.
        sigma: the Gaussian's sigma in grid cells.

    Returns:
        mask (B, K, h, w) with a 1 at each keypoint's peak cell (at most one), and the weights
        (B, K): the visibility, zeroed when the window lies wholly outside the grid.
    """
    height, width = grid
    size = torch.tensor([float(width), float(height)], device=keypoints.device)
    stride = torch.tensor([input_size[0] / width, input_size[1] / height], device=keypoints.device, dtype=torch.float64)
    reach = sigma * 3
    centre = math.floor((2 * reach + 1) / 2)
    cell = torch.trunc(keypoints.double() / stride + 0.5)
    start = torch.trunc(cell - reach)
    stop = torch.trunc(cell + reach + 1)
    outside = ((start >= size.double()) | (stop < 0)).any(dim=-1)
    weights = torch.where(outside, torch.zeros_like(visibility), visibility).float()
    peak = start + centre
    present = (peak >= start.clamp(min=0)) & (peak < torch.minimum(stop, size.double()))
    drawn = present.all(dim=-1) & (weights > 0.5)
    index = (peak[..., 1] * width + peak[..., 0]).long().clamp(0, height * width - 1)
    mask = torch.zeros(*keypoints.shape[:2], height * width, device=keypoints.device)
    mask.scatter_(2, index[..., None], drawn[..., None].float())
    return mask.reshape(*keypoints.shape[:2], height, width), weights


def contrastive_loss(visual: torch.Tensor, text: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor,
                     logit_scale: torch.Tensor) -> torch.Tensor:
    """The original ``feature_adapt``: symmetric keypoint-text InfoNCE (before ``cl_ratio``).

    ``v_k`` = the fused visual map summed over keypoint k's masked cells, L2-normalised (a zero
    vector when it has none), ``t_j`` the fused text embedding, normalised; logits =
    ``exp(logit_scale) <v_k, t_j>``. One cross-entropy per text over the visual entries and one
    per visual entry over the texts, each weighted by the keypoint's weight and averaged over all
    B x K entries (zero weights included); the loss is their mean.

    Args:
        visual: (B, C, h, w); text: (B, K, C); mask: (B, K, h, w); weights: (B, K); logit_scale: ().
    """
    embedded = F.normalize(torch.einsum("bkhw,bchw->bkc", mask.to(visual.dtype), visual), p=2, dim=-1)
    text = F.normalize(text, p=2, dim=-1)
    logits = logit_scale.exp() * torch.einsum("bkc,bjc->bkj", embedded.float(), text.float())
    diagonal = torch.arange(logits.shape[1], device=logits.device)
    # CrossEntropy over (B, K_visual, K_text) puts the classes on dim 1: per text j, a softmax over visual k.
    loss_visual = -logits.log_softmax(dim=1)[:, diagonal, diagonal]
    loss_text = -logits.log_softmax(dim=2)[:, diagonal, diagonal]
    weights = weights.float()
    return ((loss_visual * weights).mean() + (loss_text * weights).mean()) / 2


class PGVLModel(PoseModel):
    """PGVL: a ViT, CLIP text prompts with learnable context, the parse-graph fusion, a heatmap head.

    Batch keys: ``image``; for training ``heatmaps``, ``keypoint_weights``, ``keypoints`` (input
    pixels) and ``visibility`` (the contrastive target is made from them); for the flip test ``meta``.

    Args:
        backbone: a ``backbones`` component (the core's ``vit``; PGVL: MAE ViT-B/L, LN eps 1e-5).
        head: a ``heads`` component (``heatmap_deconv``) over ``fusion`` output channels.
        class_names: one prompt per keypoint.
        context_length: token slots per prompt (start, words, end, padding); the remaining
            ``text_context_length - context_length`` positions are learnable contexts.
        text_context_length: positions of the text tower (13).
        text_width, text_heads, text_layers, text_embed_dim, vocab_size: the CLIP text tower
            (ViT-B/16: 512, 8, 12, 512, 49408).
        prompt_heads: heads of the prompt encoder block.
        prompt_num: rows of the prompt encoder's unused position table (default K).
        parse_dims, depths, splits, root_split, mode, cross_heads: the fusion
            (:class:`posecore_pgvl.fusion.ParseGraphFusion`).
        target_dim: width of the fused tokens going in; the text embedding width and
            ``visual_proj``'s output.
        version: 2, the released (paper) model; 1, the earlier pre-Guided-Module model
            (``EmbeddingProcessor``: the text is projected to ``target_dim`` by ``text_proj``,
            the original ``my_up``, the visual tokens enter at the backbone's width, no
            ``visual_proj``; its configs used trees of widths 768, 512 and 1024, mode 3,
            ``target_dim`` 768 and 2 cross-attention heads).
        cl_ratio: weight of the contrastive loss (0.0005 humans, 0.001 animals).
        down_sigma: sigma of the contrastive target in feature cells (the heatmap's 2 / 4).
        input_size: (width, height) of the network input.
        codec: the experiment's codec (the engine passes it): decode and flip-back.
    """

    def __init__(
        self,
        backbone: Annotated[nn.Module, Nested("backbones")],
        head: Annotated[nn.Module, Nested("heads")],
        class_names: tuple[str, ...],
        context_length: int = 5,
        text_context_length: int = 13,
        text_width: int = 512,
        text_heads: int = 8,
        text_layers: int = 12,
        text_embed_dim: int = 512,
        vocab_size: int = 49408,
        prompt_heads: int = 8,
        prompt_num: int | None = None,
        parse_dims: tuple[int, ...] = (512,),
        depths: tuple[int, ...] = (2,),
        splits: tuple[tuple[int, ...], ...] = ((2, 2),),
        root_split: int = 2,
        target_dim: int = 512,
        mode: int = 5,
        cross_heads: int = 8,
        version: int = 2,
        cl_ratio: float = 0.0005,
        down_sigma: float = 0.5,
        input_size: tuple[int, int] = (192, 256),
        codec: Codec | None = None,
    ) -> None:
        super().__init__()
        if not class_names:
            raise ConfigError("pgvl.class_names must name every keypoint")
        if not 1 <= context_length <= text_context_length:
            raise ConfigError(f"pgvl.context_length must be in [1, {text_context_length}]; got {context_length}")
        if version == 2 and text_embed_dim != target_dim:
            raise ConfigError(f"pgvl: the text embedding width ({text_embed_dim}) must equal target_dim ({target_dim}); "
                              "the fused text and visual tokens share one width")
        if version == 1 and backbone.out_channels != target_dim:
            raise ConfigError(f"pgvl version 1: the backbone's width ({backbone.out_channels}) must equal target_dim "
                              f"({target_dim}); the v1 model has no visual projection")
        self.version = version
        self.class_names = tuple(class_names)
        self.context_length = context_length
        self.cl_ratio = cl_ratio
        self.down_sigma = down_sigma
        self.input_size = tuple(input_size)
        self.codec = codec
        self.normalizer = ImageNormalizer()
        self.backbone = backbone
        self.text_encoder = ContextTextEncoder(text_context_length, vocab_size, text_width, text_heads, text_layers,
                                               text_embed_dim)
        self.prompt_encoder = PromptEncoder(prompt_num or len(self.class_names), text_embed_dim, prompt_heads, 1,
                                            text_embed_dim)
        self.contexts = nn.Parameter(torch.randn(1, text_context_length - context_length, text_width))
        nn.init.trunc_normal_(self.contexts)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        # In the original too, and never used: kept for its state_dict.
        self.gamma = nn.Parameter(torch.full((text_embed_dim,), 1e-3), requires_grad=False)
        self._fusion_args: dict[str, Any] = dict(parse_dims=tuple(parse_dims), depths=tuple(depths),
                                                 splits=tuple(map(tuple, splits)), root_split=root_split,
                                                 target_dim=target_dim, mode=mode, cross_heads=cross_heads,
                                                 version=version)
        self.fusion = ParseGraphFusion(**self._fusion_args)
        self.text_proj: nn.Module | None = nn.Linear(text_embed_dim, target_dim) if version == 1 else None
        self.visual_proj = nn.Linear(backbone.out_channels, target_dim) if version == 2 else nn.Identity()
        self.head = head
        if getattr(head, "in_channels", self.fusion.out_dim) != self.fusion.out_dim:
            raise ConfigError(f"pgvl: head.in_channels is {head.in_channels} but the fusion gives {self.fusion.out_dim} "
                              "channels")
        if getattr(head, "num_keypoints", len(self.class_names)) != len(self.class_names):
            raise ConfigError(f"pgvl: head.num_keypoints is {head.num_keypoints} but there are "
                              f"{len(self.class_names)} class_names")
        self.register_buffer("prompt_tokens", tokenize(self.class_names, context_length), persistent=False)

    # ------------------------------------------------------------------------------------------
    # forward

    def text_embeddings(self) -> torch.Tensor:
        """(1, K, C): the prompts through the text tower (with contexts) and the prompt encoder.
        Image-independent: computed once per forward and broadcast over the batch."""
        return self.prompt_encoder(self.text_encoder(self.prompt_tokens, self.contexts)[None])

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised or uint8 images (B, 3, H, W) -> fused text (B, K, C) and visual map (B, C, h, w)."""
        feature_map = self.backbone(self.normalizer(images))
        batch, channels, height, width = feature_map.shape
        visual = self.visual_proj(feature_map.reshape(batch, channels, height * width).transpose(1, 2))
        text = self.text_embeddings()
        if self.text_proj is not None:
            text = self.text_proj(text)
        text, visual = self.fusion(text.expand(batch, -1, -1), visual)
        return text, visual.transpose(1, 2).reshape(batch, visual.shape[2], height, width)

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Heatmaps (B, K, h, w) for ``batch["image"]``."""
        return self.head(self.features(batch["image"])[1])

    def loss(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        text, visual = self.features(batch["image"])
        heatmaps = self.head(visual)
        error = (heatmaps.float() - batch["heatmaps"].float()).pow(2).mean(dim=(2, 3))
        weights = batch.get("keypoint_weights")
        if weights is not None:
            error = error * weights.float()
        losses = {"loss_heatmap": error.mean()}
        if self.cl_ratio > 0:
            if "keypoints" not in batch or "visibility" not in batch:
                raise ValueError("pgvl: the contrastive loss needs the batch's 'keypoints' (input pixels) and "
                                 "'visibility'; set cl_ratio to 0 to train without it")
            mask, down_weights = down_target_cells(batch["keypoints"].float(), batch["visibility"].float(),
                                                   self.input_size_of(batch), visual.shape[2:], self.down_sigma)
            losses["loss_contrastive"] = self.cl_ratio * contrastive_loss(visual, text, mask, down_weights,
                                                                          self.logit_scale)
        return losses

    def input_size_of(self, batch: Mapping[str, Any]) -> tuple[int, int]:
        height, width = batch["image"].shape[-2:]
        return int(width), int(height)

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any], *, flip_test: bool = False) -> PoseResult:
        return predict_heatmaps(lambda images: self({"image": images}), batch, self.codec, flip_test=flip_test,
                                decode=self.head.decode, owner="pgvl")

    def example_batch(self, batch_size: int = 1) -> dict[str, torch.Tensor]:
        width, height = self.input_size
        device = self.contexts.device
        generator = torch.Generator().manual_seed(0)
        image = torch.randn(batch_size, 3, height, width, generator=generator).to(device)
        with torch.no_grad():
            was_training = self.training
            self.eval()
            shape = self({"image": image[:1]}).shape
            self.train(was_training)
        keypoints = torch.rand(batch_size, shape[1], 2, generator=generator) * torch.tensor([width, height])
        return {
            "image": image,
            "heatmaps": torch.rand(batch_size, *shape[1:], generator=generator).to(device),
            "keypoint_weights": torch.ones(batch_size, shape[1], device=device),
            "keypoints": keypoints.to(device),
            "visibility": torch.ones(batch_size, shape[1], device=device),
        }

    # ------------------------------------------------------------------------------------------
    # sizes the checkpoint decides

    def fit_to_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Rebuild what a released file decides and its config may not: the fusion's trees, widths
        and mode, ``visual_proj``, the head's widths and K, the number of contexts and the prompt
        encoder's unused table (the AP-10K and AnimalPose configs do not match the code, see the
        README). Only parts whose shapes differ are rebuilt; they start from fresh initialisation
        and take the file's tensors."""
        fusion = _fusion_args_from(state_dict)
        if fusion is not None and fusion["version"] != self.version:
            raise CheckpointError(f"pgvl: the file holds a version-{fusion['version']} model (v1: no Guided Module) but "
                                  f"this model is version {self.version}; set model.version: {fusion['version']}")
        if fusion is not None:
            # The leaves' own split (their self-attention heads) leaves no trace in the tensors:
            # keep the configured one wherever the tree's depth is the configured depth.
            current = self._fusion_args
            if len(fusion["depths"]) == len(current["depths"]):
                fusion["splits"] = tuple(
                    (ours[0], *theirs[1:]) if depth == our_depth and depth > 0 else theirs
                    for theirs, ours, depth, our_depth in zip(fusion["splits"], current["splits"], fusion["depths"],
                                                              current["depths"], strict=True))
            args = {**self._fusion_args, **fusion}
            if args != self._fusion_args:
                self._fusion_args = args
                self.fusion = ParseGraphFusion(**args).to(self.contexts.device)
        proj = state_dict.get("visual_proj.weight")
        if proj is not None and isinstance(self.visual_proj, nn.Linear) and tuple(proj.shape) != tuple(self.visual_proj.weight.shape):
            self.visual_proj = nn.Linear(proj.shape[1], proj.shape[0]).to(self.contexts.device)
        contexts = state_dict.get("contexts")
        if contexts is not None and tuple(contexts.shape) != tuple(self.contexts.shape):
            self.contexts = nn.Parameter(torch.zeros_like(contexts, device=self.contexts.device))
            self.context_length = self.text_encoder.context_length - contexts.shape[1]
            self.prompt_tokens = tokenize(self.class_names, self.context_length).to(self.contexts.device)
        table = state_dict.get("prompt_encoder.positional_embedding")
        if table is not None and table.shape != self.prompt_encoder.positional_embedding.shape:
            self.prompt_encoder.positional_embedding = nn.Parameter(torch.zeros_like(table), requires_grad=False)
        self._fit_head(state_dict)

    def _fit_head(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        if not isinstance(self.head, HeatmapDeconvHead):
            return
        deconvs = sorted((int(m[1]), tensor) for key, tensor in state_dict.items()
                         if (m := re.fullmatch(r"head\.deconv_layers\.(\d+)\.weight", key)) and tensor.ndim == 4)
        final = state_dict.get("head.final_layer.weight")
        if not deconvs or final is None:
            return
        current = {f"head.{k}": tuple(v.shape) for k, v in self.head.state_dict().items()}
        if all(current.get(k) == tuple(v.shape) for k, v in state_dict.items() if k.startswith("head.")):
            return
        if final.shape[0] != len(self.class_names):
            raise CheckpointError(f"pgvl: the file's head predicts {final.shape[0]} keypoints but the model has "
                                  f"{len(self.class_names)} prompts; use the preset of that dataset")
        self.head = HeatmapDeconvHead(deconvs[0][1].shape[0], final.shape[0],
                                      tuple(tensor.shape[1] for _, tensor in deconvs),
                                      input_stride=_stride(self.head)).to(self.contexts.device)


def _stride(head: HeatmapDeconvHead) -> int:
    count = sum(isinstance(layer, nn.ConvTranspose2d) for layer in head.deconv_layers)
    return int(round(head.heatmap_stride * 2 ** count))


def _fusion_args_from(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """The fusion's trees, target width and mode, read from its tensors' names and shapes."""
    roots = sorted({int(m[1]) for key in state_dict if (m := re.match(r"fusion\.parse_layers\.0\.(\d+)\.norm1\.weight$", key))})
    if not roots:
        return None
    dims, depths, splits, root_splits = [], [], [], []
    for tree in roots:
        prefix = f"fusion.parse_layers.0.{tree}."
        dims.append(state_dict[prefix + "norm1.weight"].shape[0])
        depth, node, counts = 0, prefix, []
        while True:
            children = {int(m[1]) for key in state_dict if key.startswith(node)
                        and (m := re.match(re.escape(node) + r"block\.(\d+)\.norm1\.weight$", key))}
            if not children:
                break
            counts.append(len(children))
            depth += 1
            node = node + "block.0."
        depths.append(depth)
        root_splits.append(counts[0] if counts else 2)
        # counts[i] is the split of the node at level i; a child at depth e splits gp[e - 1] ways,
        # so gp[depth - 1 - i] = counts[i + 1]; the leaves' own split (gp[0]) is not in the file: 2.
        gp = [2] * max(depth, 1)
        for level in range(1, depth):
            gp[depth - 1 - level] = counts[level]
        splits.append(tuple(gp))
    version = 1 if any(".downt." in key for key in state_dict if key.startswith("fusion.")) else 2
    has_up = "fusion.up_t.0.weight" in state_dict
    has_reducer = "fusion.linear_layers_t.0.weight" in state_dict
    total = sum(dims)
    transforms = [state_dict.get(f"fusion.linear_transform_t.0.{i}.weight") for i in range(len(dims))]
    if has_up:
        target = state_dict["fusion.up_t.0.weight"].shape[1]
        mode = 2 if has_reducer else 1
    else:
        mode = 3
        reducer = state_dict.get("fusion.linear_layers_t.0.weight")
        target = reducer.shape[0] if reducer is not None else total
        if any(t is not None for t in transforms):
            target = next(t for t in transforms if t is not None).shape[1]
        elif version == 1 and reducer is None:
            target = dims[0]
    if len(set(root_splits)) != 1:
        raise CheckpointError(f"pgvl: the file's parse-graph roots split {root_splits} ways; one count is supported")
    return dict(parse_dims=tuple(dims), depths=tuple(depths), splits=tuple(splits), root_split=root_splits[0],
                target_dim=target, mode=mode, version=version)


# ---------------------------------------------------------------------------------------------
# the released layout

_PREFIXES = (("my_up1.", "visual_proj."), ("my_up.", "text_proj."), ("my.", "fusion."), ("pgvl.", "fusion."),
             ("keypoint_head.", "head."))


class _Official:
    """The released PGVL checkpoints (``best_AP_epoch_*.pth``, ``best_PCKh_epoch_210.pth``):
    ``module.`` stripped, ``my.`` -> ``fusion.``, ``my_up1.`` -> ``visual_proj.``,
    ``keypoint_head.`` -> ``head.``; everything else keeps its name. Also the v1 files (``pgvl.``
    or ``my.`` -> ``fusion.``, ``my_up.`` -> ``text_proj.``)."""

    __name__ = "pgvl_official"

    def matches(self, state_dict: Mapping[str, torch.Tensor]) -> bool:
        return any(key.removeprefix("module.").startswith(("my.parse_layers.", "pgvl.parse_layers."))
                   for key in state_dict)

    def __call__(self, state_dict: Mapping[str, torch.Tensor]) -> ConvertedStateDict:
        converted = ConvertedStateDict()
        for key, tensor in state_dict.items():
            key = key.removeprefix("module.")
            for old, new in _PREFIXES:
                if key.startswith(old):
                    key = new + key[len(old):]
                    break
            converted[key] = tensor
        return converted


pgvl_official = _Official()


def to_official(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`pgvl_official` (for comparisons with the original code)."""
    out = {}
    for key, tensor in state_dict.items():
        for old, new in _PREFIXES:
            if key.startswith(new):
                key = old + key[len(new):]
                break
        out[key] = tensor
    return out


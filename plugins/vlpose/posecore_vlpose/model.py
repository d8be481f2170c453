"""VLPose (Li et al., 2024, "VLPose: Bridging the Domain Gap in Pose Estimation with Language-Vision
Tuning"; JulietLJY/VLPose, mmpose 1.0): ViTPose with a frozen image encoder tuned by visual prompts,
a frozen BLIP text encoder, a relation matcher and a dual extractor-injector head.

Data flow (ViT-B, 256x192, K = 17)::

    image -> ViT (+ deep/shallow prompts, frozen)             E (B, C, 16, 12)
    style -> sentence -> frozen BERT -> text_embed_proj        T (B, L, C)      (all L positions, pads too)
    matcher: softmax(q(E) k([E; T])^T) v([E; T]) -> proj; LN(. + E)   R (B, C, 16, 12)
    head stage 0: aux = relu(bn1(deconv1(E)));  out = relu(bn0(deconv0(E + R))) + aux
    head stage i: aux = relu(bn1(deconv1(out))); out = relu(bn0(deconv0(out))) + aux
    final_layer (1x1) -> heatmaps (B, K, 64, 48); keypoint MSE; UDP targets, DARK-UDP decode.

``deconv0``/``bn0`` are the **main** branch (ViTPose's head, frozen), ``deconv1``/``bn1`` the
trainable **extra** branch. Parameter names are the original's except the ViT's, which are core's
``vit`` names (``posecore.models.ViT``); :func:`convert_released` maps the released layout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import torch
from torch import nn

from posecore import ConfigError, ConvertedStateDict, DataError, Nested, get_converter
from posecore.codecs import Codec, average_flipped
from posecore.models import PoseModel, PoseResult, ViT, batch_flip_indices
from posecore_vlpose.text import (
    DEFAULT_FIXED_PROMPT,
    BertTextEncoder,
    PromptTokenizer,
    default_style_prompts,
    make_tokenizer,
)

__all__ = ["DualBranchHead", "RelationMatcher", "VLPoseModel", "VLPoseViT", "convert_released",
           "convert_vitpose_init", "ORIGINAL_LAYER_COUNT"]

#: The ``num_layers`` every original config hands the layer-decay optimiser, whatever the depth.
ORIGINAL_LAYER_COUNT = 12


class VLPoseViT(ViT):
    """Core's ViTPose ViT with VPT prompts, as VLPose's mmpretrain ``ViTPrompt`` runs it.

    * Patch tokens get only their own position (the class token is added and dropped before the
      blocks, so ``pos_embed``'s class slot, kept for the checkpoint layout, reaches no output).
    * ``prompt_mode="shallow"``: ``prompt_embed`` (1, N, C) is prepended after the position
      embedding and carried through every block; ``"deep"``: it is used before block 0 and before
      each later block ``i`` the previous prompt outputs are replaced by ``deep_prompt_embed[i-1]``.
      Prompt outputs are discarded; trunc-normal(0.02) init.
    * ``frozen_stages``: as the original, the embeddings and blocks 1..k get ``requires_grad=False``
      (the final norm too when all blocks are); ``-1`` freezes none.

    Args (beyond :class:`posecore.models.ViT`'s):
        prompt_mode: ``"none"``, ``"shallow"`` or ``"deep"``.
        prompt_tokens: N, prompt tokens per layer.
        frozen_stages: blocks frozen from the first; ``-1`` none.
        layer_decay_layers: the layer count the layer-wise lr decay uses (``num_layers``); ``None``
            is the depth. The original hands it 12 for every size (see ``VLPoseModel.legacy_quirks``).
    """

    def __init__(self, arch: str = "base", embed_dim: int | None = None, depth: int | None = None,
                 num_heads: int | None = None, input_size: tuple[int, int] = (192, 256), patch_size: int = 16,
                 patch_padding: int = 2, drop_path_rate: float = 0.0, norm_eps: float = 1e-6,
                 prompt_mode: Literal["none", "shallow", "deep"] = "none", prompt_tokens: int = 0,
                 frozen_stages: int = -1, layer_decay_layers: int | None = None) -> None:
        super().__init__(arch=arch, embed_dim=embed_dim, depth=depth, num_heads=num_heads, input_size=input_size,
                         patch_size=patch_size, patch_padding=patch_padding, drop_path_rate=drop_path_rate,
                         norm_eps=norm_eps)
        if prompt_mode not in ("none", "shallow", "deep"):
            raise ConfigError(f"vlpose_vit.prompt_mode must be none, shallow or deep; got {prompt_mode!r}")
        if (prompt_mode == "none") != (prompt_tokens == 0) or prompt_tokens < 0:
            raise ConfigError(f"vlpose_vit.prompt_tokens must be > 0 with prompts and 0 without; got {prompt_tokens} "
                              f"with prompt_mode {prompt_mode!r}")
        depth_ = len(self.blocks)
        if not -1 <= frozen_stages <= depth_:
            raise ConfigError(f"vlpose_vit.frozen_stages must be in -1..{depth_}; got {frozen_stages}")
        self.depth = depth_
        self.prompt_mode = prompt_mode
        self.prompt_tokens = prompt_tokens
        width = self.out_channels
        if prompt_mode != "none":
            self.prompt_embed = nn.Parameter(torch.zeros(1, prompt_tokens, width))
            nn.init.trunc_normal_(self.prompt_embed, std=0.02)
        if prompt_mode == "deep":
            self.deep_prompt_embed = nn.Parameter(torch.zeros(depth_ - 1, prompt_tokens, width))
            nn.init.trunc_normal_(self.deep_prompt_embed, std=0.02)
        self.num_layers = layer_decay_layers or depth_
        self.frozen_stages = frozen_stages
        if frozen_stages > 0:
            self.freeze_stages(frozen_stages)

    def freeze_stages(self, stages: int) -> None:
        """The original ``_freeze_stages``: embeddings, blocks 1..``stages`` and, with all blocks, the final norm."""
        self.pos_embed.requires_grad_(False)
        self.patch_embed.requires_grad_(False)
        for block in self.blocks[:stages]:
            block.requires_grad_(False)
        if stages == self.depth:
            self.last_norm.requires_grad_(False)

    def layer_id(self, name: str) -> int:
        """As the original's optimiser: 0 for the embeddings, ``i + 1`` for block ``i``, and
        ``num_layers + 1`` for everything else (the prompts, the final norm)."""
        return super().layer_id(name)

    def forward(self, images: torch.Tensor, dataset_index: torch.Tensor | None = None) -> torch.Tensor:
        """images (B, 3, H, W) -> features (B, C, h, w)."""
        tokens, grid = self.patch_embed(images)
        tokens = tokens + self.patch_positions(grid)  # no class slot, as mmpretrain's ViT
        count = self.prompt_tokens
        if count:
            tokens = torch.cat([self.prompt_embed.expand(tokens.shape[0], -1, -1), tokens], 1)
        for index, block in enumerate(self.blocks):
            if self.prompt_mode == "deep" and index > 0:
                tokens = torch.cat([self.deep_prompt_embed[index - 1].expand(tokens.shape[0], -1, -1),
                                    tokens[:, count:]], 1)
            tokens = block(tokens)
        tokens = self.last_norm(tokens[:, count:])
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


class RelationMatcher(nn.Module):
    """VLPose's ``ConcatAttentionMatcher``: image tokens attend over ``[image tokens; text tokens]``.

    ``R = LayerNorm(proj(softmax(q(E) k([E;T])^T / sqrt(d)) v([E;T])) + E)`` with ``heads`` heads
    (8 in every config), attention-probability dropout ``attn_drop`` (0.1), post-norm (eps 1e-5).
    Text pads are not masked, as in the original.
    """

    def __init__(self, width: int, heads: int = 8, attn_drop: float = 0.1) -> None:
        super().__init__()
        if width % heads:
            raise ConfigError(f"vlpose: matcher width {width} must be a multiple of matcher_heads {heads}")
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """image (B, N, C), text (B, L, C) -> (B, N, C)."""
        batch, count, width = image.shape
        keys = torch.cat([image, text], 1)
        head = width // self.heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(batch, x.shape[1], self.heads, head).transpose(1, 2)

        q, k, v = split(self.q(image)), split(self.k(keys)), split(self.v(keys))
        attn = self.attn_drop(((q @ k.transpose(-2, -1)) * head ** -0.5).softmax(-1))
        out = self.proj((attn @ v).transpose(1, 2).reshape(batch, count, width))
        return self.norm(out + image)


class _DualBlock(nn.Module):
    """One deconvolution stage with the main (``deconv0``/``bn0``) and extra (``deconv1``/``bn1``) branch."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.deconv0 = nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False)
        self.deconv1 = nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False)
        self.bn0 = nn.BatchNorm2d(out_channels)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)


class DualBranchHead(nn.Module):
    """The dual extractor-injector head (``deconv_type='first_amiddle_last_add'``), as the code runs it:
    the extra branch of stage 0 reads the image map E (the paper's figure feeds it R; the code is followed).

    Args:
        in_channels: C of E and R.
        num_keypoints: K.
        deconv_channels: output channels per stage (the original: 256, 256), each x2 upsampling.
        freeze_main_branch: ``requires_grad=False`` on every ``deconv0``/``bn0`` (BN statistics still
            update in train mode, as the original's).
    """

    def __init__(self, in_channels: int, num_keypoints: int, deconv_channels: Sequence[int] = (256, 256),
                 freeze_main_branch: bool = True) -> None:
        super().__init__()
        if not deconv_channels:
            raise ConfigError("vlpose: deconv_channels needs at least one stage (the main/extra branches live there)")
        channels = [in_channels, *deconv_channels]
        self.deconv_layers = nn.ModuleList(_DualBlock(a, b) for a, b in zip(channels[:-1], channels[1:], strict=True))
        self.final_layer = nn.Conv2d(channels[-1], num_keypoints, 1)
        self.in_channels, self.num_keypoints = in_channels, num_keypoints
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.normal_(module.weight, std=0.001)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if freeze_main_branch:
            for block in self.deconv_layers:
                block.deconv0.requires_grad_(False)
                block.bn0.requires_grad_(False)

    def forward(self, image: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        """image E, fused R: (B, C, h, w) -> heatmaps (B, K, h * 2^S, w * 2^S)."""
        out = image
        for index, block in enumerate(self.deconv_layers):
            aux = block.act(block.bn1(block.deconv1(out)))
            main_in = image + fused if index == 0 else out
            out = block.act(block.bn0(block.deconv0(main_in))) + aux
        return self.final_layer(out)


class VLPoseModel(PoseModel):
    """VLPose: prompted frozen ViT + frozen BERT text + relation matcher + dual-branch head.

    Batch keys: ``image``; ``style`` (B strings, Human-Art's scene of each image) when
    ``text_mode="style"``; ``heatmaps``/``keypoint_weights`` for training; ``meta`` for the flip test.

    Text. Every sentence the model can use (``fixed_prompt`` first, then ``prompts[style]``) is
    tokenised once. In eval mode the frozen BERT runs once over all of them padded to the longest
    and the result is cached; a batch takes its rows sliced to its own longest sentence, which is
    exactly what the original's per-batch padding computes (a pad position's output depends only
    on its own sentence and position). In training (``live_text_in_train``) BERT runs per sample in
    train mode, its dropout on, as mmengine's ``model.train()`` leaves LAVIS' model.

    Args:
        backbone: a ``backbones`` component, normally ``vlpose_vit``.
        num_keypoints: K.
        input_size: (width, height) of the network input.
        codec: the experiment's codec (UDP heatmaps; the engine passes it).
        text_mode: ``"fixed"``: ``fixed_prompt`` for every sample (the COCO stage, ``kw-1``);
            ``"style"``: ``prompts[sample["style"]]`` (the Human-Art stage, ``kw1``). A stage option
            ``text_mode`` switches it.
        fixed_prompt: the COCO stage's sentence.
        prompts: ``{style: sentence}``; default: OURS for Human-Art's 19 scenes
            (:func:`~posecore_vlpose.text.default_style_prompts`; the original file is missing).
        default_style: the style of samples that carry none (plain images through ``posecore.Pose``);
            ``None``: such samples are an error in ``style`` mode.
        vocab_file: bert-base-uncased ``vocab.txt``; without it the prompts' words are numbered.
        text_vocab_size, text_width, text_layers, text_heads, text_intermediate, text_max_positions:
            the BERT's size (BLIP-base: 30524, 768, 12, 12, 3072, 512).
        text_dropout: BERT's dropout in train mode (0.1).
        live_text_in_train: run BERT per sample in train mode (dropout on) while training; off: the
            cached eval-mode table everywhere.
        matcher_heads, matcher_attn_drop: the relation matcher's (8, 0.1).
        deconv_channels: the head's stages (256, 256).
        freeze_main_branch: freeze ``deconv0``/``bn0`` (the original's default, every config).
        legacy_quirks: the released code's behaviour: the layer-decay optimiser is told 12 layers
            for every ViT size (L and H deep blocks then get lr scales above 1), and frozen ViT
            blocks keep drop-path active in training (mmengine's ``train()`` undoes the freezing's
            ``eval()``). Off (corrected): the true depth, and fully frozen blocks run in eval mode.
    """

    def __init__(
        self,
        backbone: Annotated[nn.Module, Nested("backbones")],
        num_keypoints: int = 17,
        input_size: tuple[int, int] = (192, 256),
        codec: Codec | None = None,
        text_mode: Literal["fixed", "style"] = "style",
        fixed_prompt: str = DEFAULT_FIXED_PROMPT,
        prompts: dict[str, str] | None = None,
        default_style: str | None = None,
        vocab_file: str | None = None,
        text_vocab_size: int = 30524,
        text_width: int = 768,
        text_layers: int = 12,
        text_heads: int = 12,
        text_intermediate: int = 3072,
        text_max_positions: int = 512,
        text_dropout: float = 0.1,
        live_text_in_train: bool = True,
        matcher_heads: int = 8,
        matcher_attn_drop: float = 0.1,
        deconv_channels: tuple[int, ...] = (256, 256),
        freeze_main_branch: bool = True,
        legacy_quirks: bool = False,
    ) -> None:
        super().__init__()
        from posecore.models import ImageNormalizer

        if text_mode not in ("fixed", "style"):
            raise ConfigError(f"vlpose.text_mode must be 'fixed' or 'style'; got {text_mode!r}")
        width = int(backbone.out_channels)
        self.normalizer = ImageNormalizer()
        self.backbone = backbone
        self.text_encoder = BertTextEncoder(text_vocab_size, text_width, text_layers, text_heads, text_intermediate,
                                            text_max_positions, dropout=text_dropout)
        self.text_encoder.requires_grad_(False)
        self.text_embed_proj = nn.Linear(text_width, width) if text_width != width else nn.Identity()
        self.matcher = RelationMatcher(width, matcher_heads, matcher_attn_drop)
        self.head = DualBranchHead(width, num_keypoints, deconv_channels, freeze_main_branch)
        self.input_size = tuple(input_size)
        self.codec = codec
        self.num_keypoints = num_keypoints
        self.text_mode = text_mode
        self.live_text_in_train = live_text_in_train
        self.legacy_quirks = legacy_quirks
        if legacy_quirks and hasattr(backbone, "num_layers"):
            backbone.num_layers = ORIGINAL_LAYER_COUNT
        style_prompts = dict(default_style_prompts() if prompts is None else prompts)
        self.sentences: list[str] = list(dict.fromkeys([fixed_prompt, *style_prompts.values()]))
        self.style_index = {style: self.sentences.index(sentence) for style, sentence in style_prompts.items()}
        if default_style is not None and default_style not in self.style_index:
            raise ConfigError(f"vlpose.default_style {default_style!r} has no prompt; model.prompts knows "
                              f"{sorted(self.style_index)}")
        self.default_style = default_style
        self.vocab_file = vocab_file
        self._tokenizer: PromptTokenizer | None = None
        self._ids: torch.Tensor | None = None  # (P, L_max) token ids, 0-padded
        self._lengths: torch.Tensor | None = None  # (P,) true lengths
        self._cache: torch.Tensor | None = None  # (P, L_max, text_width), eval mode
        self.register_load_state_dict_post_hook(lambda module, keys: module.clear_text_cache())

    # -- text ---------------------------------------------------------------------------------

    def clear_text_cache(self) -> None:
        """Forget the cached prompt table (weights changed)."""
        self._cache = None

    def _tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._ids is None:
            self._tokenizer = make_tokenizer(self.vocab_file, self.sentences, self.text_encoder.embeddings.word_embeddings.num_embeddings)
            rows = [self._tokenizer(sentence) for sentence in self.sentences]
            longest = max(len(row) for row in rows)
            if longest > self.text_encoder.max_positions:
                raise ConfigError(f"vlpose: a prompt has {longest} tokens, more than the text encoder's "
                                  f"{self.text_encoder.max_positions} positions")
            self._ids = torch.tensor([row + [self._tokenizer.pad_id] * (longest - len(row)) for row in rows])
            self._lengths = torch.tensor([len(row) for row in rows])
        assert self._lengths is not None
        return self._ids, self._lengths

    def prompt_indices(self, batch: Mapping[str, Any], size: int) -> torch.Tensor:
        """(B,) the sentence of each sample: 0 (the fixed prompt) or its style's."""
        if self.text_mode == "fixed":
            return torch.zeros(size, dtype=torch.long)
        styles = batch.get("style")
        if styles is None and self.default_style is not None:
            styles = [self.default_style] * size
        if styles is None:
            raise DataError("vlpose: text_mode 'style' needs each sample's 'style' (wrap the dataset in vlpose_styled; "
                            "posecore predict --style NAME or --styles FILE; or set model.default_style or "
                            "model.text_mode=fixed)")
        unknown = sorted({s for s in styles if s not in self.style_index})
        if unknown:
            raise DataError(f"vlpose: no prompt for style(s) {unknown}; model.prompts knows {sorted(self.style_index)}")
        return torch.tensor([self.style_index[s] for s in styles], dtype=torch.long)

    def prompt_table(self) -> torch.Tensor:
        """(P, L_max, text_width): every sentence through the frozen BERT in eval mode, cached."""
        ids, lengths = self._tokens()
        device = self.text_encoder.embeddings.word_embeddings.weight.device
        if self._cache is None or self._cache.device != device:
            mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()
            was_training = self.text_encoder.training
            self.text_encoder.eval()
            with torch.no_grad():
                self._cache = self.text_encoder(ids.to(device), mask.to(device))
            self.text_encoder.train(was_training)
        return self._cache

    def text_features(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, L, text_width) for sentence ``indices`` (B,), L = the batch's longest sentence."""
        ids, lengths = self._tokens()
        length = int(lengths[indices].max())
        if self.training and self.live_text_in_train:
            device = self.text_encoder.embeddings.word_embeddings.weight.device
            rows = ids[indices, :length].to(device)
            mask = (torch.arange(length)[None] < lengths[indices][:, None]).long().to(device)
            with torch.no_grad():
                return self.text_encoder.train()(rows, mask)
        table = self.prompt_table()
        return table[indices.to(table.device), :length]

    # -- model --------------------------------------------------------------------------------

    def _sync_frozen_modes(self) -> None:
        """Corrected behaviour: fully frozen ViT blocks run in eval mode (no drop-path) in training."""
        if self.legacy_quirks or not self.training:
            return
        for block in getattr(self.backbone, "blocks", ()):
            block.train(any(p.requires_grad for p in block.parameters()))

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Heatmaps (B, K, h, w)."""
        images = self.normalizer(batch["image"])
        self._sync_frozen_modes()
        text = self.text_embed_proj(self.text_features(self.prompt_indices(batch, images.shape[0])).to(images.dtype))
        image = self.backbone(images)
        batch_size, width, height, grid_width = image.shape
        tokens = image.flatten(2).transpose(1, 2)
        fused = self.matcher(tokens, text).transpose(1, 2).reshape(batch_size, width, height, grid_width)
        return self.head(image, fused)

    def loss(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        heatmaps = self(batch)
        error = (heatmaps.float() - batch["heatmaps"].float()).pow(2).mean(dim=(2, 3))
        weights = batch.get("keypoint_weights")
        if weights is not None:
            error = error * weights.float()
        return {"loss_heatmap": error.mean()}

    def _codec_for(self, heatmaps: torch.Tensor) -> Codec:
        """The experiment's codec, or VLPose's own (UDP, DARK-UDP decode with an 11-pixel blur)."""
        if self.codec is not None:
            return self.codec
        from posecore.codecs import UDPHeatmap

        return UDPHeatmap(self.input_size, (heatmaps.shape[-1], heatmaps.shape[-2]), 2.0, 11)

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any], *, flip_test: bool = False) -> PoseResult:
        heatmaps = self(batch).float()
        codec = self._codec_for(heatmaps)
        if flip_test:  # same text for both; UDP: no shift of the flipped map
            flipped = self({**batch, "image": batch["image"].flip(-1)}).float()
            heatmaps = average_flipped(heatmaps, codec.flip_back(flipped, batch_flip_indices(batch)))
        keypoints, scores = codec.decode(heatmaps)
        return PoseResult(keypoints=keypoints, scores=scores, heatmaps=heatmaps)

    def example_batch(self, batch_size: int = 1) -> dict[str, Any]:
        width, height = self.input_size
        device = next(self.parameters()).device
        scale = 2 ** len(self.head.deconv_layers)
        with torch.no_grad():
            grid = self.backbone(torch.zeros(1, 3, height, width, device=device)).shape[2:]
        # Fill the eval-mode prompt table now: in evaluation text is a table lookup, so a complexity
        # count of an eval forward of this batch measures the per-image cost, not the one-off table.
        self.prompt_table()
        styles = sorted(self.style_index) or ["default"]
        return {
            "image": torch.randn(batch_size, 3, height, width, device=device),
            "heatmaps": torch.rand(batch_size, self.num_keypoints, grid[0] * scale, grid[1] * scale, device=device),
            "keypoint_weights": torch.ones(batch_size, self.num_keypoints, device=device),
            "style": [styles[i % len(styles)] for i in range(batch_size)],
        }

    def on_stage(self, index: int, options: Mapping[str, Any]) -> None:
        """Stage option ``text_mode``: ``fixed`` (COCO stage) or ``style`` (Human-Art stage)."""
        mode = options.get("text_mode")
        if mode is not None:
            if mode not in ("fixed", "style"):
                raise ConfigError(f"vlpose: stage option text_mode must be fixed or style; got {mode!r}")
            self.text_mode = mode


# -- checkpoint converters ---------------------------------------------------------------------

_TEXT_KEPT = re.compile(r"^text_encoder\.text_encoder\.(embeddings\.(word_embeddings|position_embeddings|LayerNorm)\."
                        r"|encoder\.layer\.\d+\.(attention|intermediate|output)\.)")


def convert_released(state_dict: Mapping[str, torch.Tensor]) -> ConvertedStateDict:
    """A released VLPose checkpoint (mmpose 1.0 ``state_dict``) -> this plugin's model.

    The ViT's mmpretrain names go through core's ``vitpose-mmpose1x`` converter; its unused
    ``cls_token`` is dropped. Of the frozen LAVIS ``BlipFeatureExtractor`` under ``text_encoder.``,
    only the BERT's embeddings and self-attention layers are kept (``text_encoder.text_encoder.X``
    -> ``text_encoder.X``); the BLIP ViT, cross-attention, ITC projections, temperature and the
    ``position_ids`` buffer are dropped, and reported. Matcher, ``text_embed_proj``, the prompts
    and the head keep their names.
    """
    state_dict = {key.removeprefix("module."): value for key, value in state_dict.items()}
    converted = ConvertedStateDict()
    backbone = {key: value for key, value in state_dict.items() if key.startswith("backbone.")}
    renamed = get_converter("vitpose-mmpose1x")(backbone)
    for key, value in renamed.items():
        if key == "backbone.cls_token":
            converted.dropped[key] = "VLPose drops the class token before the blocks; it reaches no output"
        else:
            converted[key] = value
    converted.dropped.update(getattr(renamed, "dropped", {}))
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            continue
        if key.startswith("text_encoder."):
            if _TEXT_KEPT.match(key):
                converted["text_encoder." + key.removeprefix("text_encoder.text_encoder.")] = value
            elif ".crossattention." in key:
                converted.dropped[key] = "BLIP BERT cross-attention, unused in text mode"
            elif key.endswith("position_ids"):
                converted.dropped[key] = "a buffer of positions 0..511, recomputed"
            else:
                converted.dropped[key] = "BLIP image side / ITC projection, unused by VLPose"
            continue
        converted[key] = value
    return converted


def _released_matches(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(key.removeprefix("module.").startswith(("matcher.", "text_encoder.text_encoder.", "backbone.prompt_embed"))
               for key in state_dict)


convert_released.matches = _released_matches  # type: ignore[attr-defined]

_VITPOSE_HEAD = (
    (re.compile(r"^head\.deconv_layers\.0\.weight$"), "head.deconv_layers.0.deconv0.weight"),
    (re.compile(r"^head\.deconv_layers\.1\.(.*)$"), r"head.deconv_layers.0.bn0.\1"),
    (re.compile(r"^head\.deconv_layers\.3\.weight$"), "head.deconv_layers.1.deconv0.weight"),
    (re.compile(r"^head\.deconv_layers\.4\.(.*)$"), r"head.deconv_layers.1.bn0.\1"),
)


def convert_vitpose_init(state_dict: Mapping[str, torch.Tensor]) -> ConvertedStateDict:
    """An mmpose 1.x ViTPose checkpoint -> VLPose's ViT and **main** head branch (and final layer):
    the initialisation of the COCO stage. Backbone through core's ``vitpose-mmpose1x``; the
    head's ``deconv_layers.{0,1,3,4}`` become ``deconv_layers.{0,1}.{deconv0,bn0}``. The prompts,
    matcher, extra branch and text encoder are not in such a file (non-strict loading)."""
    renamed = get_converter("vitpose-mmpose1x")({k.removeprefix("module."): v for k, v in state_dict.items()})
    converted = ConvertedStateDict(dropped=getattr(renamed, "dropped", {}))
    for key, value in renamed.items():
        if key == "backbone.cls_token":
            converted.dropped[key] = "VLPose drops the class token before the blocks"
            continue
        for pattern, replacement in _VITPOSE_HEAD:
            if pattern.match(key):
                key = pattern.sub(replacement, key)
                break
        converted[key] = value
    return converted


def _vitpose_matches(state_dict: Mapping[str, torch.Tensor]) -> bool:
    keys = {key.removeprefix("module.") for key in state_dict}
    return "head.deconv_layers.0.weight" in keys and any(k.startswith("backbone.layers.") for k in keys)


convert_vitpose_init.matches = _vitpose_matches  # type: ignore[attr-defined]


def count_text_tokens(model: VLPoseModel) -> int:
    """Longest prompt in tokens (for reports)."""
    return int(model._tokens()[1].max())

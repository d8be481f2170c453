"""Pose Anything's pose head: support keypoint tokens, a joint encoder, similarity proposals and the
graph transformer decoder (Hirschorn & Avidan, "A Graph-Based Approach for Category-Agnostic Pose
Estimation", ECCV 2024; code: github.com/orhir/PoseAnything, built on CapeFormer).

Module and parameter names follow the released code (``keypoint_head.*``), so the released
checkpoints load by renaming a prefix only. Everything here is batch-first: tokens are ``(B, L, D)``.

Quirks of the released code that the checkpoints depend on, reproduced on purpose:

* the encoder adds the positional encoding to the token stream before every layer, so it enters
  the query, key, value and the residual, and accumulates over the layers;
* the support tokens have no positional or order embedding (zeros);
* the image grid's sine encoding uses ``(i + 1) / n`` while the keypoint coordinates use their
  value in ``[0, 1]`` (``(i + 0.5) / n`` for a cell centre): a half-cell inconsistency;
* the decoder's cross-attention is a 512-d attention over ``concat(content, position)`` with a
  256-d value, followed by a 512 -> 256 ``choker``;
* each layer's ``kpt_branch`` is used twice: on the raw layer output to move the reference points,
  and on the normalised output for that layer's prediction;
* the GCN divides each neighbour message by the *sender's* degree (it contracts a row-normalised
  adjacency over its row index).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "GCNLayer",
    "GraphDecoderLayer",
    "GraphTransformerDecoder",
    "KeypointBranch",
    "ProposalGenerator",
    "SupportQueryEncoder",
    "coordinate_sine_encoding",
    "grid_sine_encoding",
    "inverse_sigmoid",
    "similarity_proposals",
    "skeleton_adjacency",
]


def _sine(embed: torch.Tensor, num_feats: int, temperature: float = 10000.0) -> torch.Tensor:
    """``(..., )`` angles -> ``(..., num_feats)`` interleaved sin, cos at DETR's frequencies."""
    index = torch.arange(num_feats, dtype=torch.float32, device=embed.device)
    dim_t = temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / num_feats)
    scaled = embed[..., None].float() / dim_t
    return torch.stack((scaled[..., 0::2].sin(), scaled[..., 1::2].cos()), dim=-1).flatten(-2)


def grid_sine_encoding(height: int, width: int, num_feats: int, device: torch.device | None = None) -> torch.Tensor:
    """DETR's normalised sine encoding of an ``height x width`` grid -> ``(height * width, 2 * num_feats)``.

    Row ``i`` is at ``(i + 1) / (height + 1e-6) * 2 pi`` (columns alike); channels are
    ``[y (num_feats), x (num_feats)]``, each interleaving sin and cos.
    """
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device) / (height + eps) * scale
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device) / (width + eps) * scale
    pos_y = _sine(y, num_feats)[:, None, :].expand(height, width, num_feats)
    pos_x = _sine(x, num_feats)[None, :, :].expand(height, width, num_feats)
    return torch.cat((pos_y, pos_x), dim=-1).reshape(height * width, 2 * num_feats)


def coordinate_sine_encoding(coords: torch.Tensor, num_feats: int) -> torch.Tensor:
    """Points ``(..., 2)`` as x, y in ``[0, 1]`` -> ``(..., 2 * num_feats)``: ``[y, x]`` at ``coord * 2 pi``."""
    scale = 2 * math.pi
    return torch.cat((_sine(coords[..., 1] * scale, num_feats), _sine(coords[..., 0] * scale, num_feats)), dim=-1)


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``log(x / (1 - x))`` with both terms clamped to ``eps`` (the released code's ``eps=1e-3``)."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def skeleton_adjacency(skeletons: Sequence[Sequence[tuple[int, int]]], valid: torch.Tensor) -> torch.Tensor:
    """The GCN's two-kernel adjacency: ``(B, 2, K, K)``.

    Kernel 0 is the identity on the valid keypoints; kernel 1 the skeleton's symmetrised adjacency
    with invalid keypoints' rows and columns removed, then row-normalised (empty rows stay 0).

    Args:
        skeletons: per sample, 0-based ``(i, j)`` links (a link ``(i, i)`` is a self-loop).
        valid: ``(B, K)`` bool, keypoints the support defines.
    """
    batch, k = valid.shape
    adjacency = torch.zeros(batch, k, k, device=valid.device)
    for b, links in enumerate(skeletons):
        if len(links):
            pairs = torch.as_tensor(list(links), dtype=torch.long, device=valid.device).reshape(-1, 2)
            if int(pairs.max()) >= k or int(pairs.min()) < 0:
                raise ValueError(f"skeleton of sample {b} links keypoint {int(pairs.max())}, but there are {k} slots; "
                                 "skeletons are 0-based (i, j) pairs")
            adjacency[b, pairs[:, 0], pairs[:, 1]] = 1.0
    adjacency = torch.maximum(adjacency, adjacency.transpose(1, 2))
    mask = valid.float()
    adjacency = adjacency * mask[:, :, None] * mask[:, None, :]
    normalised = torch.nan_to_num(adjacency / adjacency.sum(dim=-1, keepdim=True))
    identity = torch.diag_embed(mask)
    return torch.stack((identity, normalised), dim=1)


class GCNLayer(nn.Module):
    """Two-kernel graph convolution: ``out_w = relu(W0 x_w [w valid] + sum_v W1 x_v A[v, w])``.

    One 1x1 ``Conv1d`` makes both kernels' features (biases included) at once.

    Args:
        in_features, out_features: channels in and out.
        kernel_size: adjacency kernels (2: self and neighbours).
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(in_features, out_features * kernel_size, kernel_size=1)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        """x ``(B, K, C_in)``, adjacency ``(B, kernel_size, K, K)`` -> ``(B, K, C_out)``."""
        features = self.conv(x.transpose(1, 2))
        b, channels, k = features.shape
        features = features.view(b, self.kernel_size, channels // self.kernel_size, k)
        return F.relu(torch.einsum("bkcv,bkvw->bwc", features, adjacency))


class MLP(nn.Module):
    """``num_layers`` Linear layers with GELU between (``ref_point_head``)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [out_dim], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = F.gelu(x)
        return x


class KeypointBranch(nn.Module):
    """A layer's coordinate-refinement MLP: 3 x (Linear, GELU), then Linear to the (x, y) offset
    in logit space. The last Linear starts at zero, so a fresh head predicts its reference points."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim), nn.GELU(),
                                 nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, K, D)`` -> ``(B, K, 2)``."""
        return self.mlp(x)


class EncoderLayer(nn.Module):
    """Post-norm self-attention layer whose input first gets the positional encoding added."""

    def __init__(self, dim: int, num_heads: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(dim, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """x, pos ``(B, L, D)``; padding_mask ``(B, L)`` True where ignored."""
        x = x + pos  # kept in the value and the residual, and accumulated layer by layer
        attended = self.self_attn(x, x, x, key_padding_mask=padding_mask, need_weights=False)[0]
        x = self.norm1(x + self.dropout1(attended))
        return self.norm2(x + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class SupportQueryEncoder(nn.Module):
    """Joint encoder over the query-image tokens and the support keypoint tokens (``layers.{i}``)."""

    def __init__(self, dim: int, num_heads: int, dim_feedforward: int, dropout: float, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(dim, num_heads, dim_feedforward, dropout) for _ in range(num_layers))

    def forward(self, image_tokens: torch.Tensor, support_tokens: torch.Tensor, image_pos: torch.Tensor,
                support_padding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image_tokens ``(B, HW, D)``, support_tokens ``(B, K, D)``, image_pos ``(B, HW, D)``,
        support_padding ``(B, K)`` -> (memory ``(B, HW, D)``, support tokens ``(B, K, D)``)."""
        hw = image_tokens.shape[1]
        x = torch.cat((image_tokens, support_tokens), dim=1)
        pos = torch.cat((image_pos, torch.zeros_like(support_tokens)), dim=1)
        image_padding = torch.zeros(support_padding.shape[0], hw, dtype=torch.bool, device=support_padding.device)
        padding = torch.cat((image_padding, support_padding), dim=1)
        for layer in self.layers:
            x = layer(x, pos, padding)
        return x[:, :hw], x[:, hw:]


def similarity_proposals(similarity: torch.Tensor,
                         original_transposed_window: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarity maps ``(B, K, H, W)`` -> (local, global) soft-argmax points ``(B, K, 2)``, x, y in [0, 1].

    Both take the softmax over all cells, with cell ``(i, j)`` at ``((j + 0.5) / W, (i + 0.5) / H)``.
    The global one is its expectation; the local one keeps only the 3x3 cells around the maximum
    and renormalises (the released code's ``proposal_for_loss`` and ``proposals``).

    ``original_transposed_window``: lay the one-hot peak out as ``(W, H)`` before pooling the 3x3
    window, as the released code does by mistake. On a square grid (every released model) this
    changes nothing; on a non-square one the window then wraps across rows around the wrong cells.
    """
    b, k, height, width = similarity.shape
    ys = (torch.arange(height, device=similarity.device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=similarity.device, dtype=torch.float32) + 0.5) / width
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(height * width, 2)
    flat = similarity.float().flatten(2)
    probabilities = flat.softmax(dim=-1)
    global_proposals = probabilities @ grid
    layout = (width, height) if original_transposed_window else (height, width)
    peak = F.one_hot(flat.argmax(dim=-1), height * width).float().view(b * k, 1, *layout)
    window = F.max_pool2d(peak, kernel_size=3, stride=1, padding=1).view(b, k, height * width)
    local = probabilities * window
    local = local / (local.sum(dim=-1, keepdim=True) + 1e-10)
    return local @ grid, global_proposals


class ProposalGenerator(nn.Module):
    """Similarity-based initial localisation: a ``(B, K, H, W)`` similarity map between projected
    query features and gated support features, then a local soft-argmax around each peak.

    ``original_transposed_window``: see :func:`similarity_proposals`."""

    def __init__(self, dim: int, original_transposed_window: bool = False) -> None:
        super().__init__()
        self.original_transposed_window = original_transposed_window
        self.support_proj = nn.Linear(dim, dim)
        self.query_proj = nn.Linear(dim, dim)
        self.dynamic_proj = nn.Sequential(nn.Linear(dim, dim // 2), nn.ReLU(), nn.Linear(dim // 2, dim))

    def forward(self, memory: torch.Tensor, support_tokens: torch.Tensor,
                spatial: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """memory ``(B, HW, D)``, support_tokens ``(B, K, D)``, spatial ``(H, W)`` ->

        * ``similarity`` ``(B, K, H, W)``: raw dot products (the heatmap loss reads its sigmoid);
        * ``proposals`` ``(B, K, 2)``: x, y in ``[0, 1]``, soft-argmax within the 3x3 cells around
          each map's maximum (the decoder's starting points);
        * ``global_proposals`` ``(B, K, 2)``: soft-argmax over the whole map (the proposal loss).
        """
        height, width = spatial
        support = self.support_proj(support_tokens)
        support = (torch.tanh(self.dynamic_proj(support)) + 1) * support
        query = self.query_proj(memory)
        similarity = torch.bmm(support, query.transpose(1, 2))  # (B, K, HW)
        b, k, _ = similarity.shape
        similarity = similarity.view(b, k, height, width)
        proposals, global_proposals = similarity_proposals(similarity, self.original_transposed_window)
        return similarity, proposals, global_proposals


class GraphDecoderLayer(nn.Module):
    """Self-attention over keypoint tokens, conditional cross-attention to the image, and an FFN
    whose first layer is a GCN over the skeleton (``graph=True``) or a Linear (CapeFormer's)."""

    def __init__(self, dim: int, num_heads: int, dim_feedforward: int, dropout: float, graph: bool) -> None:
        super().__init__()
        self.graph = graph
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(2 * dim, num_heads, dropout=dropout, kdim=2 * dim, vdim=dim,
                                                    batch_first=True)
        self.choker = nn.Linear(2 * dim, dim)
        self.ffn1: nn.Module = GCNLayer(dim, dim_feedforward) if graph else nn.Linear(dim, dim_feedforward)
        self.ffn2 = nn.Linear(dim_feedforward, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, query_pos: torch.Tensor, memory_pos: torch.Tensor,
                padding_mask: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        """tokens, query_pos ``(B, K, D)``; memory, memory_pos ``(B, HW, D)``; padding_mask
        ``(B, K)``; adjacency ``(B, 2, K, K)`` -> tokens ``(B, K, D)``."""
        q = tokens + query_pos
        attended = self.self_attn(q, q, tokens, key_padding_mask=padding_mask, need_weights=False)[0]
        tokens = self.norm1(tokens + self.dropout1(attended))
        attended = self.multihead_attn(torch.cat((tokens, query_pos), dim=-1), torch.cat((memory, memory_pos), dim=-1),
                                       memory, need_weights=False)[0]
        tokens = self.norm2(tokens + self.dropout2(self.choker(attended)))
        hidden = self.ffn1(tokens, adjacency) if self.graph else self.ffn1(tokens)
        hidden = self.ffn2(self.dropout(F.relu(hidden)))
        return self.norm3(tokens + self.dropout3(hidden))


class GraphTransformerDecoder(nn.Module):
    """Decoder layers that refine the keypoint coordinates layer by layer in logit space."""

    def __init__(self, dim: int, num_heads: int, dim_feedforward: int, dropout: float, num_layers: int,
                 graph: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            GraphDecoderLayer(dim, num_heads, dim_feedforward, dropout, graph) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.ref_point_head = MLP(dim, dim, dim, 2)
        self.num_feats = dim // 2

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor, proposals: torch.Tensor,
                padding_mask: torch.Tensor, adjacency: torch.Tensor,
                kpt_branch: nn.ModuleList) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Returns (the normalised tokens of every layer, each ``(B, K, D)``; the reference points
        ``[P0, p1, ..., pL]``, each ``(B, K, 2)``, p1.. with their gradients).

        Layer 0's positional query comes from the proposals *with* their gradient (so it reaches
        the proposal generator); later layers use the detached reference points.
        """
        outputs, references = [], [proposals]
        base = proposals.detach()
        for index, layer in enumerate(self.layers):
            anchor = proposals if index == 0 else base
            query_pos = self.ref_point_head(coordinate_sine_encoding(anchor, self.num_feats))
            tokens = layer(tokens, memory, query_pos, memory_pos, padding_mask, adjacency)
            moved = torch.sigmoid(inverse_sigmoid(base) + kpt_branch[index](tokens))
            references.append(moved)
            base = moved.detach()
            outputs.append(self.norm(tokens))
        return outputs, references


class PoseAnythingTransformer(nn.Module):
    """``keypoint_head.transformer``: the encoder, the proposal generator and the decoder."""

    def __init__(self, dim: int, num_heads: int, dim_feedforward: int, dropout: float, num_encoder_layers: int,
                 num_decoder_layers: int, graph: bool, original_transposed_window: bool = False) -> None:
        super().__init__()
        self.encoder = SupportQueryEncoder(dim, num_heads, dim_feedforward, dropout, num_encoder_layers)
        self.proposal_generator = ProposalGenerator(dim, original_transposed_window)
        self.decoder = GraphTransformerDecoder(dim, num_heads, dim_feedforward, dropout, num_decoder_layers, graph)

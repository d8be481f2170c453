"""PGVL's parse-graph fusion of keypoint-text tokens and visual tokens (the released v2 code).

The "parse graph" is a tree over channel slices, the same tree for both modalities: a node of
width ``d`` splits its text tokens ``(B, K, d)`` and visual tokens ``(B, N, d)`` into ``s`` channel
chunks, one per child (width ``d / s``); leaves (depth 0) have identity children. With PGVL's
settings (root 512, depth 2, splits 2 and 2) that is 1 + 2 + 4 = 7 nodes of widths 512, 256, 128.

A node (:class:`ParseNode`, the original ``parse_cross``), bottom-up:

1. children first, on the chunks of the node's *input*; their outputs are concatenated (``o``);
2. ``q_t = norm1(o_t)``, ``q_v = norm2(o_v)``;
3. self-attention within each modality with the original ``Attention_my`` token layout
   (:class:`ScrambledSelfAttention`);
4. bidirectional cross-attention, 8 heads: text queries visual, visual queries text
   (:class:`CrossAttention`, q/k/v without bias, output dropout 0.1);
5. ``r_t = sigmoid(w3) s_t + c_t + o_t`` and ``r_v = sigmoid(w2) s_v + c_v + o_v``;
6. the Guided Module (:class:`GuidedModule`, the original ``SimilarityComparator``): the root's
   input and the node's own input (queries) attend to the node's ``r`` (keys and values); the
   two results are summed, gated by ``sigmoid(w)`` (text) or ``sigmoid(w1)`` (visual) and added.

:class:`ParseGraphFusion` (the original ``pgvl``, one block) runs one tree per entry of
``parse_dims`` on linearly projected copies of the inputs, concatenates them and combines them
with the inputs by ``mode`` (see its docstring), then a pre-norm MLP with dropout 0.1.

Parameter names are the original's, so a converter only has to move the prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from posecore import ConfigError
from posecore.models import attention

__all__ = ["CrossAttention", "GuidedModule", "ParseGraphFusion", "ParseNode", "ScrambledSelfAttention"]


class ScrambledSelfAttention(nn.Module):
    """The original ``Attention_my``: qkv (with bias) split into ``h`` channel chunks; the chunks of
    all tokens form one head-major sequence of ``h * N`` items (chunk 0 of every token, then
    chunk 1, ...) over which a single softmax attention runs at scale ``(d / h) ** -0.5``; the
    ``(h * N, d / h)`` result is read back row-major as ``(N, d)``, so output token ``n`` is the
    concatenation of sequence items ``n * h ... n * h + h - 1``; then ``proj``.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"pgvl: node width {dim} is not divisible by its {num_heads} self-attention heads")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens ``(B, N, d)`` -> ``(B, N, d)``."""
        batch, count, width = tokens.shape
        heads = self.num_heads
        qkv = self.qkv(tokens).reshape(batch, count, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.reshape(3, batch, heads * count, width // heads).unbind(0)
        attended = attention(query, key, value, scale=self.scale)
        return self.proj(attended.reshape(batch, count, width))


class CrossAttention(nn.Module):
    """Standard multi-head attention with separate q/k/v projections (no bias) and an output
    projection (with bias) followed by dropout: the original ``Attention``."""

    def __init__(self, dim: int, num_heads: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"pgvl: node width {dim} is not divisible by the {num_heads} cross-attention heads")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """query ``(B, N, d)``, key and value ``(B, M, d)`` -> ``(B, N, d)``."""
        batch, count, width = query.shape
        heads = self.num_heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(batch, x.shape[1], heads, width // heads).transpose(1, 2)

        attended = attention(split(self.q_proj(query)), split(self.k_proj(key)), split(self.v_proj(value)),
                             scale=self.scale)
        return self.proj_drop(self.proj(attended.transpose(1, 2).reshape(batch, count, width)))


class GuidedModule(nn.Module):
    """The Guided Module (original ``SimilarityComparator``) of one modality of one node.

    For each source ``s_i`` (the tree root's input, width ``source_dims[0]``; the node's own input,
    width ``source_dims[1]``): ``Q = norm1_list[i](linear_transforms[i](s_i))``, ``K = V =
    norm2_list[i](ta_line(target))``, 8-head :class:`CrossAttention` without dropout; the results
    are summed. (The original picks each source by its channel count, so at the root, whose two
    sources are the same tensor, it uses that tensor twice; passing ``[root, own input]`` is the same.)
    """

    def __init__(self, dim: int, source_dims: Sequence[int], num_heads: int = 8) -> None:
        super().__init__()
        self.ta_line = nn.Linear(dim, dim)
        self.linear_transforms = nn.ModuleList(nn.Linear(source, dim) for source in source_dims)
        self.cross_attn_list = nn.ModuleList(CrossAttention(dim, num_heads) for _ in source_dims)
        self.norm1_list = nn.ModuleList(nn.LayerNorm(dim) for _ in source_dims)
        self.norm2_list = nn.ModuleList(nn.LayerNorm(dim) for _ in source_dims)

    def forward(self, target: torch.Tensor, sources: Sequence[torch.Tensor]) -> torch.Tensor:
        """target ``(B, N, d)``, sources ``[(B, N, d_i)]`` -> ``(B, N, d)``."""
        projected = self.ta_line(target)
        total = None
        for index, source in enumerate(sources):
            memory = self.norm2_list[index](projected)
            guided = self.cross_attn_list[index](self.norm1_list[index](self.linear_transforms[index](source)),
                                                 memory, memory)
            total = guided if total is None else total + guided
        assert total is not None
        return total


class ParseNode(nn.Module):
    """One node of the parse graph and, recursively, its subtree (the original ``parse_cross``).

    Args:
        dim: this node's channel width ``d``.
        split: how many children (and self-attention heads) the node has.
        depth: levels below this node (0: a leaf, whose children are identities).
        child_splits: the original ``gp_list``: the children of a node at depth ``e`` split
            ``child_splits[e - 1]`` ways (and have as many self-attention heads).
        source_dim: width of the tree root's input (the Guided Module's first source).
        cross_heads: heads of the cross-attentions and the Guided Module.
        dropout: output dropout of the two cross-attentions.
    """

    def __init__(self, dim: int, split: int, depth: int, child_splits: Sequence[int], source_dim: int,
                 cross_heads: int = 8, dropout: float = 0.1, guided: bool = True) -> None:
        super().__init__()
        self.guided = guided
        if dim % split:
            raise ConfigError(f"pgvl: a parse-graph node of width {dim} cannot split {split} ways")
        self.split = split
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.self_attnt = ScrambledSelfAttention(dim, split)
        self.self_attnv = ScrambledSelfAttention(dim, split)
        self.cross_attnt = CrossAttention(dim, cross_heads, dropout)
        self.cross_attnv = CrossAttention(dim, cross_heads, dropout)
        if guided:
            self.v_node_w = GuidedModule(dim, (source_dim, dim), cross_heads)
            self.t_node_w = GuidedModule(dim, (source_dim, dim), cross_heads)
            self.w = nn.Parameter(torch.tensor(0.5))
            self.w1 = nn.Parameter(torch.tensor(0.5))
            self.w2 = nn.Parameter(torch.tensor(0.5))
            self.w3 = nn.Parameter(torch.tensor(0.5))
        else:  # v1 (parse_my): self- and cross-attention concatenated and reduced
            self.downv = nn.Linear(2 * dim, dim)
            self.downt = nn.Linear(2 * dim, dim)
        self.block: nn.ModuleList | None = None
        if depth > 0:
            self.block = nn.ModuleList(
                ParseNode(dim // split, child_splits[depth - 1], depth - 1, child_splits, source_dim, cross_heads, dropout,
                          guided)
                for _ in range(split))

    def forward(self, text: torch.Tensor, visual: torch.Tensor, root: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """text ``(B, K, d)``, visual ``(B, N, d)``, root = the tree's inputs -> the same shapes."""
        if self.block is None:
            children_t, children_v = text, visual  # identity children: chunk and concatenate
        else:
            outputs = [child(t, v, root) for child, t, v in
                       zip(self.block, text.chunk(self.split, dim=2), visual.chunk(self.split, dim=2), strict=True)]
            children_t = torch.cat([t for t, _ in outputs], dim=2)
            children_v = torch.cat([v for _, v in outputs], dim=2)
        query_t = self.norm1(children_t)
        query_v = self.norm2(children_v)
        if not self.guided:
            out_t = self.downt(torch.cat([self.self_attnt(query_t), self.cross_attnt(query_t, query_v, query_v)], -1))
            out_v = self.downv(torch.cat([self.self_attnv(query_v), self.cross_attnv(query_v, query_t, query_t)], -1))
            return out_t + children_t, out_v + children_v
        residual_t = (torch.sigmoid(self.w3) * self.self_attnt(query_t) + self.cross_attnt(query_t, query_v, query_v)
                      + children_t)
        residual_v = (torch.sigmoid(self.w2) * self.self_attnv(query_v) + self.cross_attnv(query_v, query_t, query_t)
                      + children_v)
        out_t = torch.sigmoid(self.w) * self.t_node_w(residual_t, (root[0], text)) + residual_t
        out_v = torch.sigmoid(self.w1) * self.v_node_w(residual_v, (root[1], visual)) + residual_v
        return out_t, out_v


class _Mlp(nn.Module):
    """Linear, GELU, Linear, dropout (the original's ``Mlp``)."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class ParseGraphFusion(nn.Module):
    """One PGVL fusion block (the original ``pgvl`` with ``num_blocks=1``).

    Inputs: text ``(B, K, target_dim)`` and visual ``(B, N, target_dim)`` tokens. For each width
    ``p`` of ``parse_dims`` the inputs are projected (``linear_transform_{t,v}.0.j``: Linear
    ``target_dim -> p``; Identity only in mode 1 when ``p == target_dim``) and run through a tree
    rooted at width ``p``; the trees' outputs are concatenated (width ``S = sum(parse_dims)``) and:

    * mode 1: ``+ up(input)``, ``up`` Linear ``target_dim -> S``; output width ``S``;
    * mode 2: Linear ``S -> S`` first, then as mode 1;
    * modes 3, 4: Linear ``S -> target_dim`` (Identity when equal), ``+ input``; width ``target_dim``;
    * mode 5: as mode 2, with Identity for both Linears when there is a single tree (then
      identical to mode 3).

    Then ``x + MLP(LN(x))`` per modality (hidden 4x, GELU, dropout 0.1 after the second Linear).

    Args:
        parse_dims: root width of each tree (``parse_dim_list``).
        depths: depth of each tree (``ew``).
        splits: ``gp_list`` of each tree (the children's split counts, indexed by depth - 1).
        root_split: children of each root (the original ``num_heads``).
        target_dim: width of the inputs.
        mode: how the trees' outputs combine with the inputs (1-5, above).
        cross_heads: heads of every cross-attention.
        dropout: dropout of the node cross-attentions and of the MLPs.
        version: 2, the released code (Guided Module, gates); 1, the earlier ``EmbeddingProcessor``
            with ``parse_my`` nodes (no Guided Module, self- and cross-attention concatenated and
            reduced by ``downt``/``downv``; 2 cross-attention heads in the original), which
            combines like mode 3 and keeps the input transform Identity for trees of width
            ``target_dim`` (its ``ALL_LINEAR=False``).
    """

    def __init__(self, parse_dims: Sequence[int] = (512,), depths: Sequence[int] = (2,),
                 splits: Sequence[Sequence[int]] = ((2, 2),), root_split: int = 2, target_dim: int = 512,
                 mode: int = 5, cross_heads: int = 8, dropout: float = 0.1, version: int = 2) -> None:
        super().__init__()
        if version not in (1, 2):
            raise ConfigError(f"pgvl fusion version must be 1 or 2; got {version}")
        if version == 1 and mode != 3:
            raise ConfigError("pgvl: the v1 fusion (EmbeddingProcessor) combines as mode 3")
        if mode not in (1, 2, 3, 4, 5):
            raise ConfigError(f"pgvl fusion mode must be 1, 2, 3, 4 or 5; got {mode}")
        if not (len(parse_dims) == len(depths) == len(splits)) or not parse_dims:
            raise ConfigError(f"pgvl: parse_dims {tuple(parse_dims)}, depths {tuple(depths)} and splits "
                              f"{tuple(map(tuple, splits))} must have one entry per tree")
        for depth, split in zip(depths, splits, strict=True):
            if len(split) < depth:
                raise ConfigError(f"pgvl: a tree of depth {depth} needs {depth} split counts; got {tuple(split)}")
        self.mode = mode
        total = sum(parse_dims)
        self.out_dim = total if mode in (1, 2, 5) else target_dim
        self.parse_layers = nn.ModuleList([nn.ModuleList(
            ParseNode(dim, root_split, depth, tuple(split), dim, cross_heads, dropout, guided=version == 2)
            for dim, depth, split in zip(parse_dims, depths, splits, strict=True))])

        def reducer() -> nn.Module:
            if mode == 1 or (mode == 5 and len(parse_dims) == 1):
                return nn.Identity()
            if mode in (3, 4):
                return nn.Identity() if total == target_dim else nn.Linear(total, target_dim)
            return nn.Linear(total, total)

        self.linear_layers_t = nn.ModuleList([reducer()])
        self.linear_layers_v = nn.ModuleList([reducer()])
        self.mlp_layers_t = nn.ModuleList([_Mlp(self.out_dim, 4 * self.out_dim, dropout)])
        self.norm_layers_t = nn.ModuleList([nn.LayerNorm(self.out_dim)])
        self.mlp_layers_v = nn.ModuleList([_Mlp(self.out_dim, 4 * self.out_dim, dropout)])
        self.norm_layers_v = nn.ModuleList([nn.LayerNorm(self.out_dim)])

        def transform(dim: int) -> nn.Module:
            keep = (mode == 1 or version == 1) and dim == target_dim
            return nn.Identity() if keep else nn.Linear(target_dim, dim)

        self.linear_transform_t = nn.ModuleList([nn.ModuleList(transform(dim) for dim in parse_dims)])
        self.linear_transform_v = nn.ModuleList([nn.ModuleList(transform(dim) for dim in parse_dims)])
        self.up_t: nn.ModuleList | None = None
        self.up_v: nn.ModuleList | None = None
        if mode in (1, 2) or (mode == 5 and len(parse_dims) > 1):
            self.up_t = nn.ModuleList([nn.Linear(target_dim, total)])
            self.up_v = nn.ModuleList([nn.Linear(target_dim, total)])

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """text ``(B, K, target_dim)``, visual ``(B, N, target_dim)`` -> both at :attr:`out_dim`."""
        outputs_t, outputs_v = [], []
        for index, tree in enumerate(self.parse_layers[0]):
            tree_t = self.linear_transform_t[0][index](text)
            tree_v = self.linear_transform_v[0][index](visual)
            out_t, out_v = tree(tree_t, tree_v, (tree_t, tree_v))  # (the root input is the tree's input)
            outputs_t.append(out_t)
            outputs_v.append(out_v)
        fused_t = self.linear_layers_t[0](torch.cat(outputs_t, dim=-1))
        fused_v = self.linear_layers_v[0](torch.cat(outputs_v, dim=-1))
        if self.up_t is not None and self.up_v is not None:
            text, visual = fused_t + self.up_t[0](text), fused_v + self.up_v[0](visual)
        else:
            text, visual = fused_t + text, fused_v + visual
        text = text + self.mlp_layers_t[0](self.norm_layers_t[0](text))
        visual = visual + self.mlp_layers_v[0](self.norm_layers_v[0](visual))
        return text, visual

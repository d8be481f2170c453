"""The released Pose Anything checkpoints' key layout, written from the implementation brief's list
(section 6.1) and its shapes (sections 1 and 2), independently of the plugin's modules: what an
mmcv 1.x ``save_checkpoint`` of the official model holds, buffers and unused classifier included."""

from __future__ import annotations

import torch

#: (embed_dim, depths, heads, image size, window, head channels, feedforward, learned upsampler)
VARIANTS = {
    "tiny": (96, (2, 2, 6, 2), (3, 6, 12, 24), 256, 16, 768, 768, False),
    "small": (96, (2, 2, 18, 2), (3, 6, 12, 24), 256, 16, 768, 768, False),
    "base-legacy": (128, (2, 2, 18, 2), (4, 8, 16, 32), 224, 14, 1024, 1024, True),
}


def _swinv2(embed: int, depths: tuple[int, ...], heads: tuple[int, ...], size: int, window: int) -> dict:
    shapes: dict[str, tuple[int, ...]] = {
        "backbone.patch_embed.proj.weight": (embed, 3, 4, 4), "backbone.patch_embed.proj.bias": (embed,),
        "backbone.patch_embed.norm.weight": (embed,), "backbone.patch_embed.norm.bias": (embed,),
    }
    resolution = size // 4
    for stage, (depth, h) in enumerate(zip(depths, heads, strict=True)):
        c = embed * 2**stage
        w = min(window, resolution)
        shift = w // 2 if resolution > window else 0
        for block in range(depth):
            p = f"backbone.layers.{stage}.blocks.{block}."
            shapes.update({
                p + "norm1.weight": (c,), p + "norm1.bias": (c,), p + "norm2.weight": (c,), p + "norm2.bias": (c,),
                p + "attn.logit_scale": (h, 1, 1),
                p + "attn.cpb_mlp.0.weight": (512, 2), p + "attn.cpb_mlp.0.bias": (512,), p + "attn.cpb_mlp.2.weight": (h, 512),
                p + "attn.qkv.weight": (3 * c, c), p + "attn.q_bias": (c,), p + "attn.v_bias": (c,),
                p + "attn.proj.weight": (c, c), p + "attn.proj.bias": (c,),
                p + "attn.relative_coords_table": (1, 2 * w - 1, 2 * w - 1, 2),
                p + "attn.relative_position_index": (w * w, w * w),
                p + "mlp.fc1.weight": (4 * c, c), p + "mlp.fc1.bias": (4 * c,),
                p + "mlp.fc2.weight": (c, 4 * c), p + "mlp.fc2.bias": (c,),
            })
            if block % 2 and shift:
                shapes[p + "attn_mask"] = ((resolution // w) ** 2, w * w, w * w)
        if stage < 3:
            p = f"backbone.layers.{stage}.downsample."
            shapes.update({p + "reduction.weight": (2 * c, 4 * c), p + "norm.weight": (2 * c,), p + "norm.bias": (2 * c,)})
            resolution //= 2
    last = embed * 8
    shapes.update({"backbone.norm.weight": (last,), "backbone.norm.bias": (last,),
                   "backbone.head.weight": (1000, last), "backbone.head.bias": (1000,)})
    return shapes


def _linear(shapes: dict, name: str, out: int, inp: int) -> None:
    shapes[name + ".weight"] = (out, inp)
    shapes[name + ".bias"] = (out,)


def _head(cb: int, ff: int, graph: bool = True, d: int = 256) -> dict:
    shapes: dict[str, tuple[int, ...]] = {"keypoint_head.input_proj.weight": (d, cb, 1, 1),
                                          "keypoint_head.input_proj.bias": (d,)}
    _linear(shapes, "keypoint_head.query_proj", d, cb)
    for b in range(3):
        for i in (0, 2, 4):
            _linear(shapes, f"keypoint_head.kpt_branch.{b}.mlp.{i}", d, d)
        _linear(shapes, f"keypoint_head.kpt_branch.{b}.mlp.6", 2, d)
    t = "keypoint_head.transformer."
    for layer in range(3):
        p = f"{t}encoder.layers.{layer}."
        shapes[p + "self_attn.in_proj_weight"] = (3 * d, d)
        shapes[p + "self_attn.in_proj_bias"] = (3 * d,)
        _linear(shapes, p + "self_attn.out_proj", d, d)
        _linear(shapes, p + "linear1", ff, d)
        _linear(shapes, p + "linear2", d, ff)
        for n in ("norm1", "norm2"):
            shapes[p + n + ".weight"] = shapes[p + n + ".bias"] = (d,)
        p = f"{t}decoder.layers.{layer}."
        shapes[p + "self_attn.in_proj_weight"] = (3 * d, d)
        shapes[p + "self_attn.in_proj_bias"] = (3 * d,)
        _linear(shapes, p + "self_attn.out_proj", d, d)
        shapes[p + "multihead_attn.q_proj_weight"] = (2 * d, 2 * d)
        shapes[p + "multihead_attn.k_proj_weight"] = (2 * d, 2 * d)
        shapes[p + "multihead_attn.v_proj_weight"] = (2 * d, d)
        shapes[p + "multihead_attn.in_proj_bias"] = (6 * d,)
        _linear(shapes, p + "multihead_attn.out_proj", 2 * d, 2 * d)
        _linear(shapes, p + "choker", d, 2 * d)
        if graph:
            shapes[p + "ffn1.conv.weight"] = (2 * ff, d, 1)
            shapes[p + "ffn1.conv.bias"] = (2 * ff,)
        else:
            _linear(shapes, p + "ffn1", ff, d)
        _linear(shapes, p + "ffn2", d, ff)
        for n in ("norm1", "norm2", "norm3"):
            shapes[p + n + ".weight"] = shapes[p + n + ".bias"] = (d,)
    shapes[f"{t}decoder.norm.weight"] = shapes[f"{t}decoder.norm.bias"] = (d,)
    _linear(shapes, f"{t}decoder.ref_point_head.layers.0", d, d)
    _linear(shapes, f"{t}decoder.ref_point_head.layers.1", d, d)
    _linear(shapes, f"{t}proposal_generator.support_proj", d, d)
    _linear(shapes, f"{t}proposal_generator.query_proj", d, d)
    _linear(shapes, f"{t}proposal_generator.dynamic_proj.0", d // 2, d)
    _linear(shapes, f"{t}proposal_generator.dynamic_proj.2", d, d // 2)
    return shapes


def original_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    """Every key of a released ``variant`` checkpoint's ``state_dict`` with its shape."""
    embed, depths, heads, size, window, cb, ff, upsample = VARIANTS[variant]
    shapes = _swinv2(embed, depths, heads, size, window)
    if upsample:
        shapes["backbone.upsample.weight"] = (cb, cb, 2, 2)
        shapes["backbone.upsample.bias"] = (cb,)
    shapes.update(_head(cb, ff))
    return shapes


def original_state_dict(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the released keys (index buffers as integers, as saved)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in original_shapes(variant).items():
        if key.endswith("relative_position_index"):
            state[key] = torch.randint(0, 100, shape, generator=generator)
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.02
    return state


def mmcv_checkpoint(state_dict: dict[str, torch.Tensor]) -> dict:
    """The container mmcv 1.x's ``save_checkpoint`` writes: ``meta`` (with the Python config
    source, as mmcv stores it) and ``state_dict``."""
    return {
        "meta": {"mmcv_version": "1.7.0", "time": "Fri Feb  2 10:00:00 2024", "epoch": 200, "iter": 175000,
                 "mmpose_version": "0.29.0", "seed": 1, "hook_msgs": {"last_ckpt": "work_dirs/epoch_200.pth"},
                 "config": "log_level = 'INFO'\nmodel = dict(\n    type='PoseAnythingModel',\n"
                           "    keypoint_head=dict(type='PoseHead', in_channels=768))\n",
                 "env_info": "sys.platform: linux"},
        "state_dict": state_dict,
    }

"""PGVL's starting point as one posecore weights file: the MAE ViT and the OpenAI CLIP text tower.

The original initialises the backbone from Facebook's MAE checkpoint (``mae_pretrain_vit_base.pth``
/ ``_large``, non-strict: MAE's final ``norm`` does not reach ``last_norm``, which keeps its
default) with the position grid resized bicubically from 14 x 14, and the text tower from OpenAI's
CLIP file (``ViT-B-16.pt`` / ``ViT-L-14.pt``, a TorchScript archive) with the position table cut
to 13 rows. Everything else starts from its own initialisation. :func:`initial_weights` writes
those tensors under posecore's names, for ``train.init_weights``::

    python -m posecore_pgvl.init --mae pretrained/mae_pretrain_vit_base.pth --clip pretrained/ViT-B-16.pt \\
        --input-size 192 256 --out weights/pgvl_init_vit_b_256x192.pth

Position-grid quirk of the original (kept by default, ``--no-transposed-grid`` to correct it): its
configs give ``img_size=(192, 256)``, so the 14 x 14 MAE grid is resized to 12 rows x 16 columns
and then read row-major as the model's 16 x 12 grid. Only the starting point differs (the table is
fine-tuned); square inputs are unaffected.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["initial_weights"]

_CLIP_TEXT = ("positional_embedding", "text_projection", "token_embedding.", "ln_final.", "transformer.")


def _clip_state(path: str) -> dict[str, torch.Tensor]:
    try:
        return {k: v.float() for k, v in torch.jit.load(path, map_location="cpu").state_dict().items()}
    except RuntimeError:  # a plain state_dict (open_clip's or a converted file)
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        return {k: v.float() for k, v in loaded.get("state_dict", loaded).items()}


def initial_weights(mae: str, clip: str, output: str, input_size: Sequence[int] = (192, 256),
                    transposed_grid: bool = True, text_context_length: int = 13, patch_size: int = 16) -> None:
    """Write the MAE backbone and CLIP text tower of a PGVL model to ``output`` (posecore names).

    Args:
        mae: MAE checkpoint (a dict with ``model``).
        clip: OpenAI CLIP file (TorchScript) or a state_dict with the text tower's keys.
        output: the file to write.
        input_size: (width, height) of the network input.
        transposed_grid: resize the position grid as the original does (see the module docstring).
        text_context_length: rows of the text position table kept (13).
        patch_size: the ViT's patch side.
    """
    loaded = torch.load(mae, map_location="cpu", weights_only=True)
    source = loaded.get("model", loaded)
    state: dict[str, torch.Tensor] = {f"backbone.{k}": v for k, v in source.items()
                                      if k.startswith(("patch_embed.", "blocks."))}
    width, height = input_size
    position = source["pos_embed"]
    side = int(round((position.shape[1] - 1) ** 0.5))
    grid = (width // patch_size, height // patch_size) if transposed_grid else (height // patch_size, width // patch_size)
    tokens = position[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    tokens = F.interpolate(tokens, size=grid, mode="bicubic", align_corners=False).permute(0, 2, 3, 1).flatten(1, 2)
    state["backbone.pos_embed"] = torch.cat([position[:, :1], tokens], dim=1)
    for key, tensor in _clip_state(clip).items():
        if key.startswith(_CLIP_TEXT):
            if key == "positional_embedding":
                tensor = tensor[:text_context_length]
            state[f"text_encoder.{key}"] = tensor
    torch.save({"state_dict": state, "meta": {"source": {"mae": mae, "clip": clip}}}, output)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mae", required=True)
    parser.add_argument("--clip", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--input-size", type=int, nargs=2, default=(192, 256), metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--no-transposed-grid", action="store_true")
    args = parser.parse_args(argv)
    initial_weights(args.mae, args.clip, args.out, args.input_size, not args.no_transposed_grid)


if __name__ == "__main__":
    main()

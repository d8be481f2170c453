"""The released PGVL checkpoints' keys and shapes.

``shared/briefs/checkpoint-keys/keys_pgvl_{crowdpose,mpii,ochuman}.txt`` (beside the checkout) are
the 867-key lists of the v2 checkpoints (``best_AP_epoch_210.pth``, ``best_PCKh_epoch_210.pth``),
enumerated from the original module tree for the project's brief; one ``key (shape)`` per line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[4] / "shared" / "briefs" / "checkpoint-keys"


def released_shapes(dataset: str) -> dict[str, tuple[int, ...]]:
    path = DATA / f"keys_pgvl_{dataset}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the tests read the released key lists from the shared folder "
                                "beside the checkout (../shared)")
    shapes = {}
    for line in path.read_text().splitlines():
        key, shape = line.split(" ", 1)
        shapes[key] = tuple(ast.literal_eval(shape))
    return shapes


def released_state_dict(dataset: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the released keys and shapes (BN statistics positive, counters int)."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in released_shapes(dataset).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        elif key.endswith(("norm1.weight", "norm2.weight", "ln_1.weight", "ln_2.weight", "ln_final.weight",
                           "last_norm.weight")) or ".norm" in key and key.endswith("weight"):
            state[key] = 1 + 0.1 * torch.randn(shape, generator=generator)
        else:
            state[key] = 0.02 * torch.randn(shape, generator=generator)
    return state


def mmcv_checkpoint(state_dict: dict[str, torch.Tensor]) -> dict[str, object]:
    """The container mmcv 1.x's runner saves (``meta``, ``state_dict``, ``optimizer``)."""
    return {"meta": {"epoch": 210, "iter": 100000, "mmcv_version": "1.4.0", "time": "Tue Apr 15 05:37:51 2025",
                     "config": "model = dict(type='PGVL', ...)"},
            "state_dict": state_dict, "optimizer": {"state": {}, "param_groups": []}}

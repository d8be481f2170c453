"""The search that chose HEViT-T/S/B's free hyper-parameters (run it: ``python -m posecore_hevitpose.search``).

The paper publishes, per size, only the parameters and GFLOPs at 256x256 (T 3.21M / 1.75G,
S 5.88M / 3.64G, B 10.63M / 5.58G, with a 16-keypoint MPII head) and, for B, GFLOPs against the
input side (a figure: exactly 5.58 x (side / 256)^2). Widths, depths, groups, heads and reduction
ratios are not published. This script enumerates configurations drawn from the parent designs'
conventions, counts each analytically (the formulas mirror :mod:`posecore_hevitpose.hevit`; the
``--verify`` flag rebuilds the chosen ones and measures them with ``posecore.analysis``), and
keeps, per size, the configuration closest to convention among those within 3% of both figures.

Two readings of the figure's exactly quadratic growth are counted side by side:

* ``ratio`` (chosen): keys/values reduced by a fixed ratio r (PVTv2's convolution, kernel =
  stride = r) and the attention products ``QK^T``/``AV`` *not* counted, as mmcv's module-hook
  counter (``posecore flops --convention modules``) does;
* ``pooled``: keys/values pooled to a fixed 7x7 grid (PVTv2-li: adaptive pooling + 1x1 conv) and
  the products counted; they then grow like the image too.

``--pvtv2`` measures the other transformer in the same figure, PVTv2-B2 (timm's, 24.8M
parameters in the backbone: the convolutional-SR model, not the 22.6M pooled "-li" one), under
both counts: its figure curve grows exactly quadratically too, which its counted attention products
would not allow (they add 23% at 640 and 52% at 960). The counter skipped the products; read with
the parameter count, the figure is the ``ratio`` reading.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["TARGETS", "Candidate", "count", "search"]

#: size -> (params in M, GFLOPs at 256x256), the paper's table.
TARGETS = {"T": (3.21, 1.75), "S": (5.88, 3.64), "B": (10.63, 5.58)}
#: HEViT-B's GFLOPs against the square input side, read from the paper's figure.
FIGURE_B = {160: 2.2, 320: 8.6, 480: 19.6, 640: 35.0, 800: 54.5, 960: 78.5}
KEYPOINTS = 16  # MPII, the table's dataset

# The parent designs' choices: EfficientViT M0-M5 (widths, depths, groups) and PVTv2's first three
# stages (widths), SR ratios 8/4/2, key width 16, FFN ratio 2, mmpose's 256-channel deconvolutions;
# two heads per group, as the network figure stacks them (EfficientViT has one).
EFFICIENTVIT_WIDTHS = [(64, 128, 192), (128, 144, 192), (128, 192, 224), (128, 240, 320), (128, 256, 384),
                       (192, 288, 384)]
PVTV2_WIDTHS = [(32, 64, 160), (64, 128, 320)]
CONVENTIONAL_DEPTHS = [(1, 2, 3), (1, 3, 4)]
CONVENTIONAL_GROUPS = [(4, 4, 4), (2, 3, 3), (4, 3, 2), (4, 3, 4), (3, 3, 4)]


@dataclass(frozen=True)
class Candidate:
    widths: tuple[int, int, int]
    depths: tuple[int, int, int]
    groups: tuple[int, int, int]
    heads: tuple[int, int, int]
    head_channels: int
    sr_ratios: tuple[int, int, int] = (8, 4, 2)
    key_dim: int = 16
    ffn_ratio: float = 2.0

    def unconventional(self) -> int:
        """How far the choices leave the parents' conventions (0 = all conventional; the widths,
        which define a family member, weigh double)."""
        return (2 * (self.widths not in EFFICIENTVIT_WIDTHS + PVTV2_WIDTHS) + (self.depths not in CONVENTIONAL_DEPTHS)
                + (self.groups not in CONVENTIONAL_GROUPS) + (self.heads != (2, 2, 2)) + (self.head_channels != 256))


def count(c: Candidate, side: int = 256, reading: str = "ratio", pool: int = 7) -> tuple[int, int]:
    """(parameters, multiply-accumulates) of HEViT + the 2-deconvolution head at ``side`` x ``side``.

    ``reading="ratio"``: conv SR by r, attention products not counted (the chosen model);
    ``"pooled"``: keys/values pooled to ``pool`` x ``pool`` then a 1x1 conv, products counted.
    """
    params = macs = 0
    c_in, size = 3, side
    for i, (width, depth) in enumerate(zip(c.widths, c.depths, strict=True)):
        kernel, stride = (7, 4) if i == 0 else (3, 2)
        size = (size + 2 * (kernel // 2) - kernel) // stride + 1
        n = size * size
        params += kernel * kernel * c_in * width + width + 2 * width
        macs += kernel * kernel * c_in * width * n
        g, h, r, dk = c.groups[i], c.heads[i], c.sr_ratios[i], c.key_dim
        cg, qk = width // g, h * dk
        hidden = int(width * c.ffn_ratio)
        block_params = 2 * (9 * width + 2 * width) + 2 * (2 * width * hidden + 2 * hidden + 2 * width)
        block_macs = 2 * 9 * width * n + 2 * 2 * width * hidden * n
        if reading == "ratio":
            nk = (size // r) ** 2 if r > 1 else n
            sr_params = (r * r * cg * cg + 3 * cg) if r > 1 else 0
            sr_macs = r * r * cg * cg * nk if r > 1 else 0
            products = 0
        else:
            nk = min(pool * pool, n)
            sr_params, sr_macs = cg * cg + 3 * cg, cg * cg * nk
            products = h * n * nk * (dk + cg // h)
        group_params = (sr_params + 2 * (cg * qk + qk + 2 * qk + 10 * qk) + (cg * cg + cg + 2 * cg + 10 * cg)
                        + (cg * cg + cg + 2 * cg))
        group_macs = (sr_macs + cg * qk * n + cg * qk * nk + cg * cg * nk + 9 * qk * n + 9 * qk * nk + 9 * cg * nk
                      + cg * cg * n + products)
        block_params += g * group_params + width * width + width
        block_macs += g * group_macs + width * width * n
        params += depth * block_params
        macs += depth * block_macs
        c_in = width
    d = c.head_channels
    params += c_in * d * 16 + 2 * d + d * d * 16 + 2 * d + d * KEYPOINTS + KEYPOINTS
    macs += 16 * c_in * d * size * size + 16 * d * d * (2 * size) ** 2 + d * KEYPOINTS * (4 * size) ** 2
    return params, macs


def _candidates() -> Iterator[Candidate]:
    widths = set(EFFICIENTVIT_WIDTHS + PVTV2_WIDTHS)
    # Beyond the parents' own: multiples of 32, non-decreasing, group width at least 16.
    widths |= {w for w in itertools.product(range(32, 257, 32), range(64, 385, 32), range(96, 513, 32))
               if w[0] <= w[1] <= w[2]}
    # Depths never fall from stage to stage, in both parents.
    depths = set(CONVENTIONAL_DEPTHS) | {d for d in itertools.product((1, 2), (1, 2, 3), (1, 2, 3, 4, 5, 6))
                                         if d[0] <= d[1] <= d[2]}
    groups = set(CONVENTIONAL_GROUPS) | {(2, 4, 4), (2, 2, 4), (4, 4, 8)}
    for w, d, g, h, hc in itertools.product(sorted(widths), sorted(depths), sorted(groups), ((2, 2, 2), (1, 1, 1)),
                                            (128, 256)):
        if all(wi % gi == 0 and (wi // gi) % hi == 0 and wi // gi >= 16 for wi, gi, hi in zip(w, g, h, strict=True)):
            yield Candidate(w, d, g, h, hc)


def _error(params: int, macs: int, size: str) -> float:
    target_params, target_gflops = TARGETS[size]
    return max(abs(params / 1e6 / target_params - 1), abs(macs / 1e9 / target_gflops - 1))


def search(reading: str = "ratio", tolerance: float = 0.02) -> dict[str, tuple[Candidate, float, int]]:
    """Per size: the most conventional candidate within ``tolerance`` of both figures (ties: the smaller
    error), with its error and how many fits there were."""
    fits: dict[str, list[tuple[int, float, Candidate]]] = {size: [] for size in TARGETS}
    for candidate in _candidates():
        params, macs = count(candidate, reading=reading)
        for size in TARGETS:
            error = _error(params, macs, size)
            if error <= tolerance:
                fits[size].append((candidate.unconventional(), error, candidate))
    best = {}
    for size, found in fits.items():
        if found:
            score, error, candidate = min(found, key=lambda f: (f[0], f[1], f[2].widths, f[2].depths))
            best[size] = (candidate, error, len(found))
    return best


def _verify(candidate: Candidate) -> tuple[float, float]:
    """Build the model and measure it with posecore's counter, mmcv's module convention."""
    import torch
    from torch import nn

    from posecore.analysis import measure_complexity
    from posecore.models import HeatmapDeconvHead
    from posecore_hevitpose.hevit import HEViT

    backbone = HEViT(widths=candidate.widths, depths=candidate.depths, groups=candidate.groups, heads=candidate.heads,
                     sr_ratios=candidate.sr_ratios)
    model = nn.Sequential(backbone, HeatmapDeconvHead(candidate.widths[-1], KEYPOINTS, (candidate.head_channels,) * 2))
    complexity = measure_complexity(_Images(model), {"image": torch.zeros(1, 3, 256, 256)}, convention="modules")
    return complexity.params_m, complexity.gflops


class _Images:
    def __new__(cls, model):  # a module taking the batch mapping, as measure_complexity calls it
        from torch import nn

        class Wrapped(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, batch):
                return self.model(batch["image"])

        return Wrapped()


def _pvtv2_check() -> None:
    import timm
    import torch
    from torch import nn

    from posecore.analysis import measure_complexity
    from posecore.models import HeatmapDeconvHead

    class PVT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = timm.create_model("pvt_v2_b2", pretrained=False, features_only=True, out_indices=(3,))
            self.head = HeatmapDeconvHead(512, 17, (256, 256, 256), input_stride=32)

        def forward(self, batch):
            return self.head(self.backbone(batch["image"])[-1])

    model = PVT()
    print(f"PVTv2-B2 backbone: {sum(p.numel() for p in model.backbone.parameters()) / 1e6:.2f}M parameters")
    print("side  GFLOPs/(side/256)^2 counting the attention products  |  leaf modules only (mmcv)")
    for side in (256, 640, 960):
        image = {"image": torch.zeros(1, 3, side, side)}
        ops = measure_complexity(model, image).gflops / (side / 256) ** 2
        mods = measure_complexity(model, image, convention="modules").gflops / (side / 256) ** 2
        print(f"{side:4d}  {ops:8.3f}  |  {mods:8.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reading", choices=("ratio", "pooled", "both"), default="both")
    parser.add_argument("--verify", action="store_true", help="build the chosen models and measure them")
    parser.add_argument("--pvtv2", action="store_true", help="PVTv2-B2's growth under both counts")
    args = parser.parse_args(argv)
    readings = ("ratio", "pooled") if args.reading == "both" else (args.reading,)
    for reading in readings:
        print(f"== reading '{reading}'")
        for size, (candidate, error, fits) in search(reading).items():
            params, macs = count(candidate, reading=reading)
            print(f"{size}: {candidate} unconventional={candidate.unconventional()} fits={fits} "
                  f"params={params / 1e6:.3f}M GFLOPs={macs / 1e9:.3f} (target {TARGETS[size]}, max error {error:.1%})")
            if size == "B":
                curve = {side: round(count(candidate, side, reading)[1] / 1e9, 2) for side in FIGURE_B}
                print(f"   B against the figure {FIGURE_B}: {curve}")
            if args.verify and reading == "ratio":
                print(f"   measured (posecore.analysis, convention 'modules'): {_verify(candidate)}")
    if args.pvtv2:
        _pvtv2_check()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Pose Anything's presets: every configuration of the published MP-100 table, and the tiny default.

The MP-100 presets follow the released configs (orhir/PoseAnything, ``configs/1shots``,
``configs/1shot-swin``, ``configs/5shots``, ``configs/5shot-swin``): 256x256 crops of the box
padded 1.25x, random scale (factor 0.15) and rotation (15 degrees, clipped at 30, probability 0.6)
and no flip; Gaussian targets of sigma 1 on 64x64; Adam at 1e-5 for every parameter, no weight
decay, linear warmup over 1000 iterations from 0.001x, x0.1 at epochs 160 and 180 of 200; new
class-balanced training pairs every epoch. Evaluation: 100 fixed episodes x 15 queries per val
category every 25 epochs; the reported figure is the test split, 200 episodes x 15 queries per
category (seed 1, as the released code draws them), PCK@0.2 of the query box's longer side,
averaged per query over the keypoints visible in the query and in every support.

Data paths are relative to ``--data ROOT``: ``data/mp100/annotations/mp100_split{n}_{train,val,test}.json``
and ``data/mp100/images/<category folder>/<file>``. Skeletons are the PoseAnything release's
(``skeleton="updated"``, 0-based for every category, what the released weights were trained with),
whichever release the files are. Training starts, as the released configs do, from the SwinV2
pre-training file each architecture names (:data:`PRETRAINED`, ``train.init_weights``, read from
``pretrained/`` in the working directory like the configs' ``pretrained=``); a run without that
file stops and says what to download, and ``train.init_weights=null`` trains from scratch
instead, which the paper did not do. Evaluating, converting or predicting never reads it.
"""

from __future__ import annotations

from typing import Any

from posecore.config import DataConfig, EvalConfig, ExperimentConfig, OptimizerConfig, ScheduleConfig, TrainConfig

__all__ = ["ARCHITECTURES", "PRETRAINED", "PUBLISHED_PCK", "SHOTS", "SPLITS", "mp100_preset", "preset_name",
           "tiny_synthetic"]

SPLITS = (1, 2, 3, 4, 5)
SHOTS = (1, 5)

#: Backbone, crop size, heatmap size, head width and training batch per released architecture
#: (brief table 1). Every released config draws 64x64 heatmaps: stride 4 at 256 px, 3.5 at 224 px.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "tiny": {"backbone": {"model_name": "swinv2_tiny_window16_256", "img_size": 256, "drop_path_rate": 0.2},
             "input": 256, "heatmap": 64, "channels": 768, "batch_size": {1: 16, 5: 8}},
    "small": {"backbone": {"model_name": "swinv2_small_window16_256", "img_size": 256, "drop_path_rate": 0.3},
              "input": 256, "heatmap": 64, "channels": 768, "batch_size": {1: 8, 5: 8}},
    # The December 2023 "Small" (paper v1): SwinV2-B at 224 px with a learned x2 upsampler.
    "base-legacy": {"backbone": {"model_name": "swinv2_base_window12_192", "img_size": 224, "window_size": 14,
                                 "pretrained_window_sizes": [12, 12, 12, 6], "upsample": "deconv",
                                 "drop_path_rate": 0.1},
                    "input": 224, "heatmap": 64, "channels": 1024, "batch_size": {1: 8, 5: 8}},
}

#: The SwinV2 pre-training each released config starts from (its ``pretrained=``): the local path
#: the presets read, what the file is, and where to download it (the authors also keep every one
#: in https://drive.google.com/drive/folders/1-q4mSxlNAUwDlevc3Hm5Ij0l_2OGkrcg).
PRETRAINED: dict[str, tuple[str, str, str]] = {
    "tiny": ("pretrained/swinv2_tiny_patch4_window16_256.pth",
             "the official supervised SwinV2-T (ImageNet-1k, window 16, 256 px)",
             "https://github.com/SwinTransformer/storage/releases/download/v2.0.0/"
             "swinv2_tiny_patch4_window16_256.pth"),
    "small": ("pretrained/swinv2_small_1k_500k.pth",
              "SimMIM's SwinV2-S (masked-image pre-training, ImageNet-1k, 500k iterations)",
              "https://huggingface.co/zdaxie/SimMIM/resolve/main/simmim_swinv2_pretrain_models/"
              "swinv2_small_1k_500k.pth"),
    "base-legacy": ("pretrained/swinv2_base_22k_500k.pth",
                    "SimMIM's SwinV2-B (masked-image pre-training, ImageNet-22k, 500k iterations)",
                    "the PoseAnything authors' folder of pre-trained SwinV2 files, "
                    "https://drive.google.com/drive/folders/1-q4mSxlNAUwDlevc3Hm5Ij0l_2OGkrcg"),
}

#: PCK@0.2 (percent) on the MP-100 test split of splits 1..5, from the PoseAnything README.
PUBLISHED_PCK: dict[tuple[str, int], tuple[float, ...]] = {
    ("tiny", 1): (91.19, 87.81, 85.68, 85.87, 85.61),
    ("small", 1): (94.73, 89.79, 90.69, 88.09, 90.11),
    ("tiny", 5): (94.24, 91.32, 90.15, 90.37, 89.73),
    ("small", 5): (96.67, 91.48, 92.62, 90.95, 92.41),
    ("base-legacy", 1): (93.66, 90.42, 89.79, 88.68, 89.61),
    ("base-legacy", 5): (96.51, 92.15, 91.99, 92.01, 92.36),
}

#: Where each row was published.
PUBLISHED_SOURCE: dict[str, str] = {
    "tiny": "orhir/PoseAnything README (2024-07-10 re-report with the updated annotations)",
    "small": "orhir/PoseAnything README (2024-02-02, SwinV2-S weights)",
    "base-legacy": "orhir/PoseAnything README before 2024-02-02 (SwinV2-B at 224 px, paper v1)",
}

#: PCK thresholds: 0.2 is the papers' figure; the mean over all five is what follow-up work reports.
PCK_THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25)
MAIN_METRIC = "PCK@0.2/instance"


def preset_name(arch: str, shots: int, split: int) -> str:
    return f"poseanything-{arch}-{shots}shot-split{split}"


def pretraining_note(arch: str) -> str:
    """What a preset of ``arch`` starts from and where to get it (in its description, and so in
    the message of a run whose file is missing)."""
    path, what, source = PRETRAINED[arch]
    return (f"training starts from {what}, read from {path} (train.init_weights): get it from {source}; "
            "train.init_weights=null trains from scratch instead")


def pck_evaluation() -> EvalConfig:
    """PCK at 0.05..0.25 of the query box's longer side, per-query mean; no flip test."""
    return EvalConfig(metrics=[{"type": "pck", "thresholds": list(PCK_THRESHOLDS), "mean": "instance",
                                "norm": "bbox"}],
                      main_metric=MAIN_METRIC, flip_test=False)


def episode_pipelines(scale_factor: float, rotate_factor: float) -> dict[str, list[Any]]:
    """Training and test transforms: no flip; the targets of the query and of every support."""
    return {
        "train_pipeline": ["get_bbox_center_scale",
                           {"type": "random_bbox_transform", "scale_factor": scale_factor,
                            "rotate_factor": rotate_factor, "rotate_prob": 0.6},
                           "topdown_affine", "generate_target", "pack_sample"],
        "test_pipeline": ["get_bbox_center_scale", "topdown_affine", "generate_target", "pack_sample"],
    }


def _mp100(split: int, part: str, shots: int, num_episodes: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "mp100", "ann_file": f"data/mp100/annotations/mp100_split{split}_{part}.json",
                            "image_root": "data/mp100/images", "skeleton": "updated", "episodes": True,
                            "num_shots": shots}
    if num_episodes:
        spec.update(num_queries=15, num_episodes=num_episodes, seed=1)
    return spec


def mp100_preset(arch: str, shots: int, split: int) -> ExperimentConfig:
    """One cell of the published table: ``arch`` in ``ARCHITECTURES``, 1 or 5 shots, split 1..5."""
    if (arch, shots) not in PUBLISHED_PCK or split not in SPLITS:
        cells = ", ".join(f"{a} {s}-shot" for a, s in PUBLISHED_PCK)
        raise ValueError(f"Pose Anything has no released {arch} {shots}-shot model for split {split} "
                         f"(released: {cells}; splits {SPLITS[0]}..{SPLITS[-1]})")
    facts = ARCHITECTURES[arch]
    size, heatmap = facts["input"], facts["heatmap"]
    return ExperimentConfig(
        name=preset_name(arch, shots, split),
        model={
            "type": "poseanything",
            "backbone": {"type": "poseanything_swinv2", **facts["backbone"]},
            "input_size": [size, size],
            "embed_dim": 256,
            "num_heads": 8,
            "dim_feedforward": facts["channels"],
            "dropout": 0.1,
            "max_keypoints": 100,
            "num_shots": shots,
        },
        codec={"type": "msra_heatmap", "input_size": [size, size], "heatmap_size": [heatmap, heatmap],
               "sigma": 1.0},
        data=DataConfig(
            train=[_mp100(split, "train", shots, 0)],
            val=[_mp100(split, "val", shots, 100)],
            test=[_mp100(split, "test", shots, 200)],
            batch_size=facts["batch_size"][shots],
            eval_batch_size=32,
            num_workers=4,
            input_size=(size, size),
            **episode_pipelines(scale_factor=0.15, rotate_factor=15.0),
        ),
        train=TrainConfig(
            epochs=200,
            init_weights=PRETRAINED[arch][0],
            optimizer=OptimizerConfig(type="adam", lr=1e-5, weight_decay=0.0),
            schedule=ScheduleConfig(type="step", milestones=(160, 180), warmup_iters=1000, warmup_ratio=0.001),
            seed=1,
            val_interval=25,
            log_interval=50,
        ),
        eval=pck_evaluation(),
        plugins=("poseanything",),
    )


#: The synthetic default: creatures of 24 training categories, evaluated on 8 unseen ones.
TINY_INPUT = 128


def tiny_synthetic() -> ExperimentConfig:
    """Pose Anything at 128 px with a thin ResNet-18 (to stride 8: a 16x16 grid, as the released
    models have) and a 64-wide head, trained from scratch on the synthetic creatures and scored
    on 8 categories it never saw (PCK@0.2). About 450 steps on two CPU cores; the untrained model
    scores at chance (predicting the crop's centre scores about 0.2 here).

    From scratch the model learns the matching much faster with flatter initial similarity maps
    (``similarity_init_gain=0.2``) and a higher learning rate than the paper's fine-tuning of a
    pre-trained backbone (1e-3 instead of 1e-5)."""
    size = TINY_INPUT
    return ExperimentConfig(
        name="poseanything-tiny-synthetic",
        model={
            "type": "poseanything",
            "backbone": {"type": "timm", "model_name": "resnet18", "out_index": 2,
                         "model_kwargs": {"channels": [32, 64, 128, 256], "stem_width": 32}},
            "input_size": [size, size],
            "embed_dim": 64,
            "num_heads": 4,
            "dim_feedforward": 128,
            "dropout": 0.0,
            "max_keypoints": 16,
            "similarity_init_gain": 0.2,
        },
        codec={"type": "msra_heatmap", "input_size": [size, size], "heatmap_size": [size // 4, size // 4],
               "sigma": 1.0},
        data=DataConfig(
            train=[{"type": "synthetic_categories", "split": "train", "num_images": 1200, "episodes": True,
                    "num_shots": 1}],
            val=[{"type": "synthetic_categories", "split": "test", "num_images": 240, "episodes": True,
                  "num_shots": 1, "num_queries": 5, "num_episodes": 10}],
            batch_size=16,
            eval_batch_size=32,
            num_workers=1,
            input_size=(size, size),
            **episode_pipelines(scale_factor=0.15, rotate_factor=15.0),
        ),
        train=TrainConfig(
            epochs=6,
            optimizer=OptimizerConfig(type="adam", lr=1e-3, weight_decay=0.0),
            schedule=ScheduleConfig(type="step", milestones=(5,), warmup_iters=30),
            val_interval=6,
            log_interval=10,
        ),
        eval=pck_evaluation(),
        plugins=("poseanything",),
    )

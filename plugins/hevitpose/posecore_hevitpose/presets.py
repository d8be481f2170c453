"""HEViTPose's experiments.

The authors published no code and no configs, only the README's note that they used mmpose 0.29.
The recipes below are therefore OURS: mmpose 0.29's top-down defaults for 256x256 inputs
(``configs/body/2d_kpt_sview_rgb_img/topdown_heatmap/{mpii,coco}/*_256x256.py``): Adam 5e-4,
210 epochs, steps x0.1 at 170 and 200, linear warm-up 500 iterations from 0.001x, batch 64 per
GPU (the GPU count is unknown), flip, scale factor 0.5, rotation 40, MSRA Gaussian sigma 2 at
64x64, JointsMSE, flip test with the one-pixel shift and the quarter-pixel decode; COCO adds
half-body crops (8 joints, p 0.3), mmpose 0.x's once-per-build centre shift and the detector boxes.

* ``hevitpose-{t,s,b}-mpii-256x256``: the table's models on MPII (GT boxes, PCKh@0.5).
* ``hevitpose-b-coco-256x256``: HEViTPose-B on COCO.
* ``hevitpose-tiny-synthetic``: the embedded default, a few CPU minutes on synthetic people.

The architecture is a reconstruction (see :mod:`posecore_hevitpose.hevit`).
"""

from __future__ import annotations

from typing import Any

from posecore.config import DataConfig, EvalConfig, ExperimentConfig, OptimizerConfig, ScheduleConfig, TrainConfig
from posecore.data import COCO_VAL_PERSON_DETECTIONS, coco_dataset_spec, coco_test_dev_spec, standard_topdown_pipeline
from posecore_hevitpose.hevit import HEAD_CHANNELS, HEVIT_ARCHS

__all__ = ["hevitpose_b_coco", "hevitpose_b_mpii", "hevitpose_mpii", "hevitpose_s_mpii", "hevitpose_t_mpii",
           "model_spec", "tiny_synthetic"]

INPUT_SIZE, HEATMAP_SIZE = (256, 256), (64, 64)
PLUGINS = ("hevitpose",)


def model_spec(arch: str, num_keypoints: int, input_size: tuple[int, int] = INPUT_SIZE, **backbone: Any) -> dict[str, Any]:
    """core's ``topdown_heatmap`` with the HEViT backbone and the two-deconvolution heatmap head."""
    if arch in HEVIT_ARCHS:
        widths = backbone.get("widths", HEVIT_ARCHS[arch]["widths"])
        head_channels = backbone.pop("head_channels", HEAD_CHANNELS[arch])
    else:
        raise ValueError(f"HEViTPose arch must be one of {sorted(HEVIT_ARCHS)}; got {arch!r}")
    return {
        "type": "topdown_heatmap",
        "backbone": {"type": "hevitpose", "arch": arch, **{k: list(v) if isinstance(v, tuple) else v
                                                             for k, v in backbone.items()}},
        "head": {"type": "heatmap_deconv", "in_channels": widths[-1], "num_keypoints": num_keypoints,
                 "deconv_channels": [head_channels, head_channels], "input_stride": 16},
        "input_size": list(input_size),
    }


def _codec(input_size: tuple[int, int] = INPUT_SIZE, heatmap_size: tuple[int, int] = HEATMAP_SIZE,
           sigma: float = 2.0) -> dict[str, Any]:
    return {"type": "msra_heatmap", "input_size": list(input_size), "heatmap_size": list(heatmap_size), "sigma": sigma}


def _pipeline(**options: Any) -> list[dict[str, Any]]:
    return [spec.to_dict() for spec in standard_topdown_pipeline(train=True, **options)]


def _mmpose029_train() -> TrainConfig:
    return TrainConfig(
        epochs=210,
        optimizer=OptimizerConfig(type="adam", lr=5e-4, weight_decay=0.0),
        schedule=ScheduleConfig(type="step", milestones=(170, 200), warmup_iters=500, warmup_ratio=0.001),
        val_interval=10,
    )


def hevitpose_mpii(size: str) -> ExperimentConfig:
    """HEViTPose-{T,S,B} on MPII at 256x256 (GT boxes, PCKh@0.5), mmpose 0.29's MPII recipe (ours)."""
    root = "data/mpii"
    return ExperimentConfig(
        name=f"hevitpose-{size.lower()}-mpii-256x256",
        model=model_spec(size, 16),
        codec=_codec(),
        data=DataConfig(
            train=[{"type": "mpii", "ann_file": f"{root}/annotations/mpii_train.json", "image_root": f"{root}/images"}],
            val=[{"type": "mpii", "ann_file": f"{root}/annotations/mpii_val.json", "image_root": f"{root}/images",
                  "headbox_file": f"{root}/annotations/mpii_gt_val.mat"}],
            batch_size=64, eval_batch_size=32, num_workers=4, input_size=INPUT_SIZE,
            # mmpose 0.x's MPII loader: no half-body crops, no centre shift.
            train_pipeline=_pipeline(half_body=False, scale_factor=0.5, rotate_factor=40.0),
        ),
        train=_mmpose029_train(),
        eval=EvalConfig(metrics=[{"type": "pckh", "thr": 0.5, "mean_thrs": [0.1]}], main_metric="Mean", flip_test=True),
        plugins=PLUGINS,
    )


def hevitpose_b_coco() -> ExperimentConfig:
    """HEViTPose-B on COCO at 256x256, mmpose 0.29's COCO recipe (ours): detector boxes for val, test-dev."""
    return ExperimentConfig(
        name="hevitpose-b-coco-256x256",
        model=model_spec("B", 17),
        codec=_codec(),
        data=DataConfig(
            train=[coco_dataset_spec("train")],
            val=[{**coco_dataset_spec("val"), "bbox_file": COCO_VAL_PERSON_DETECTIONS}],
            test=[coco_test_dev_spec()],
            batch_size=64, eval_batch_size=32, num_workers=4, input_size=INPUT_SIZE,
            # mmpose 0.x's COCO loader moves 30% of the box centres by up to 0.2 of the box, once.
            train_pipeline=_pipeline(scale_factor=0.5, rotate_factor=40.0, shift_factor=0.16, shift_prob=0.3,
                                     shift_once=True),
        ),
        train=_mmpose029_train(),
        # mmpose 0.x's TopDownCocoDataset.evaluate: box score x mean keypoint score above 0.2, OKS-NMS 0.9.
        eval=EvalConfig(metrics=[{"type": "coco_ap", "metainfo": "coco", "score_mode": "bbox_keypoint",
                                  "keypoint_score_thr": 0.2, "nms_thr": 0.9}], main_metric="AP", flip_test=True),
        plugins=PLUGINS,
    )


def hevitpose_t_mpii() -> ExperimentConfig:
    return hevitpose_mpii("T")


def hevitpose_s_mpii() -> ExperimentConfig:
    return hevitpose_mpii("S")


def hevitpose_b_mpii() -> ExperimentConfig:
    return hevitpose_mpii("B")


#: The embedded default's backbone: the T layout narrowed and shortened to train in minutes on 2 CPU cores.
TINY_BACKBONE: dict[str, Any] = {"widths": [32, 64, 128], "depths": [1, 1, 2], "groups": [2, 2, 4], "heads": [1, 1, 2],
                                 "sr_ratios": [4, 2, 1]}


def tiny_synthetic() -> ExperimentConfig:
    """HEViTPose end to end on a CPU: a small HEViT (the same blocks, narrower and shorter) with the
    two-deconvolution head on 128x96 crops of the synthetic people, trained from scratch; scored
    with COCO AP on held-out synthetic images."""
    input_size = (96, 128)
    return ExperimentConfig(
        name="hevitpose-tiny-synthetic",
        model=model_spec("T", 17, input_size, **TINY_BACKBONE, head_channels=64),
        codec=_codec(input_size, (24, 32), sigma=1.5),
        data=DataConfig(
            train=[{"type": "synthetic_people", "split": "train", "num_images": 1500}],
            val=[{"type": "synthetic_people", "split": "val", "num_images": 150}],
            batch_size=32, eval_batch_size=64, num_workers=1, input_size=input_size,
        ),
        train=TrainConfig(
            mixed_precision="auto",  # bf16 on a CPU with AMX: 1.15x faster steps (README, the default runs)
            epochs=10,
            optimizer=OptimizerConfig(type="adamw", lr=2e-3, weight_decay=1e-4),
            schedule=ScheduleConfig(type="cosine", warmup_iters=50, min_lr=1e-5),
            val_interval=5,
            log_interval=10,
        ),
        eval=EvalConfig(metrics=[{"type": "coco_ap", "metainfo": "coco"}], main_metric="AP", flip_test=True),
        plugins=PLUGINS,
    )

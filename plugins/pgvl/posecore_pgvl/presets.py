"""PGVL's experiments, from the released configs (lushbng/PGVL HEAD, ``PGVL/configs``).

Every preset trains as the original does: AdamW lr 5e-4, weight decay 1e-4, the CLIP text tower
at lr x 0 (frozen through its learning rate, gradients still reach the contexts), the backbone
at lr x 0.1, 210 epochs with 500 warm-up iterations and steps at 170 and 200, MSRA heatmaps
(sigma 2) with the flip test shifting the mirrored heatmaps, and the quarter-pixel decode.
Per-GPU batch sizes are the configs'.

* ``pgvl-b-crowdpose-256x192``: ``PGVL_ViTB_crowdpose_256X192.py`` (runs with the released code).
* ``pgvl-b-mpii-256x256``: ``PGVL_ViTB_mpii_256x256.py`` without ``ALL_LINEAR`` and with
  ``context_decoder=None`` (as written it does not run with the released code; with those two
  edits it has the CrowdPose structure, which is what the released key layout shows).
* ``pgvl-b-ochuman-256x192``: ``PGVL_ViTB_OCHuman_256x192.py``: trained on COCO train2017,
  evaluated on OCHuman val with ground-truth boxes; descriptive prompts, one context vector.
* ``pgvl-l-ap10k-256x256``: ``PGVL_ViTL_ap10k_256x256.py``: ViT-L, the CLIP ViT-L/14 text tower
  (width 768, 8 heads as the config says), trees of widths 512 and 768 concatenated (mode 1) to
  1280 channels. The released code reshapes the fused visual tokens to a hard-coded 512 channels
  and so cannot run this config; the weights come from a variant that uses the actual width,
  which is what this model does.
* ``pgvl-b-animalpose-256x256``: the config is inconsistent (``src_to_dim=[1024, 768]`` on a
  768-wide ViT-B, 768-wide trees on 512-wide CLIP-B text, a head of 512+256 channels). This
  preset takes the reading that makes the head's 512+256 true: trees of widths 512 and 256,
  mode 2, target width 512. It is an inference; loading the released file rebuilds the fusion,
  projection and head from the file's shapes (``PGVLModel.fit_to_state_dict``).
* ``pgvl-tiny-synthetic``: the embedded default (a few CPU minutes, no data).

Dataset files are named relative to a data root laid out as the original expects
(``data/crowd_pose``, ``data/mpii``, ``data/coco``, ``data/ochuman``, ``data/ap10k``,
``data/animalpose``); the initial weights (MAE ViT + CLIP text tower, see
``posecore_pgvl.model.initial_weights``) under ``weights/``.
"""

from __future__ import annotations

from typing import Any

from posecore.config import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    OptimizerConfig,
    ParamGroupRule,
    ScheduleConfig,
    TrainConfig,
)
from posecore.data import coco_dataset_spec, standard_topdown_pipeline
from posecore_pgvl.prompts import PROMPTS

__all__ = ["PARAM_GROUPS", "pgvl_preset", "tiny_synthetic"]

PLUGINS = ("pgvl",)

#: mmcv custom_keys (longest key first, first match wins): text_encoder lr x 0, backbone lr x 0.1,
#: no weight decay on non-backbone parameters named "norm". The released configs' constructor
#: decays everything else, biases, backbone norms, gates and ``logit_scale`` included, so the
#: published presets set ``decay_exemptions="none"``.
PARAM_GROUPS = (
    ParamGroupRule("text_encoder.*", lr_mult=0.0),
    ParamGroupRule("backbone.*", lr_mult=0.1),
    ParamGroupRule("*norm*", decay_mult=0.0),
)


def _codec(input_size: tuple[int, int], sigma: float = 2.0) -> dict[str, Any]:
    return {"type": "msra_heatmap", "input_size": list(input_size),
            "heatmap_size": [input_size[0] // 4, input_size[1] // 4], "sigma": sigma}


def _pipeline(input_size: tuple[int, int], shift: bool, half_body_joints: int = 8) -> list[dict[str, Any]]:
    """mmpose 0.21's training pipeline: flip, half-body (p 0.3), scale 0.5 / rotation 40 (p 0.6);
    the COCO-style loaders shift 30% of the box centres once, when the dataset is built."""
    options: dict[str, Any] = {"scale_factor": 0.5, "rotate_factor": 40.0}
    if shift:
        options.update(shift_factor=0.16, shift_prob=0.3, shift_once=True)
    specs = [spec.to_dict() for spec in standard_topdown_pipeline(train=True, **options)]
    for spec in specs:
        if spec["type"] == "random_half_body":
            spec.update(min_visible=half_body_joints, input_size=list(input_size))
    return specs


def _coco_metric(metainfo: str, **extra: Any) -> dict[str, Any]:
    return {"type": "coco_ap", "metainfo": metainfo, "score_mode": "bbox_keypoint", "keypoint_score_thr": 0.2,
            "nms_thr": 0.9, **extra}


#: dataset -> (ViT size, input size, train, val, metrics, main metric, batch, cl_ratio, shift, half-body joints)
_DATASETS: dict[str, dict[str, Any]] = {
    "crowdpose": dict(
        input_size=(192, 256), batch=128, eval_batch=64, cl_ratio=0.0005, shift=True, half_body=6,
        train={"type": "crowdpose", "ann_file": "data/crowd_pose/json/mmpose_crowdpose_trainval.json",
               "image_root": "data/crowd_pose/images"},
        val={"type": "crowdpose", "ann_file": "data/crowd_pose/json/mmpose_crowdpose_test.json",
             "image_root": "data/crowd_pose/images",
             "bbox_file": "data/crowd_pose/json/det_for_crowd_test_0.1_0.5.json"},
        metrics=[_coco_metric("crowdpose", iou_type="keypoints_crowd", use_area=False)], main="AP"),
    "mpii": dict(
        input_size=(256, 256), batch=32, eval_batch=32, cl_ratio=0.0005, shift=False, half_body=8,
        train={"type": "mpii", "ann_file": "data/mpii/annot/train.json", "image_root": "data/mpii/images"},
        val={"type": "mpii", "ann_file": "data/mpii/annot/valid.json", "image_root": "data/mpii/images",
             "headbox_file": "data/mpii/annot/mpii_gt_val.mat"},
        metrics=[{"type": "pckh", "thr": 0.5}], main="Mean"),
    "ochuman": dict(
        input_size=(192, 256), batch=128, eval_batch=64, cl_ratio=0.0005, shift=True, half_body=8,
        train=coco_dataset_spec("train"),
        val={"type": "ochuman", "ann_file": "data/ochuman/annotations/ochuman_val.json",
             "image_root": "data/ochuman/images"},
        metrics=[_coco_metric("ochuman")], main="AP"),
    "ap10k": dict(
        input_size=(256, 256), batch=32, eval_batch=32, cl_ratio=0.001, shift=True, half_body=8,
        train={"type": "ap10k", "ann_file": "data/ap10k/annotations/ap10k-train-split1.json",
               "image_root": "data/ap10k/data"},
        val={"type": "ap10k", "ann_file": "data/ap10k/annotations/ap10k-val-split1.json",
             "image_root": "data/ap10k/data"},
        metrics=[_coco_metric("ap10k")], main="AP"),
    "animalpose": dict(
        input_size=(256, 256), batch=32, eval_batch=32, cl_ratio=0.001, shift=True, half_body=8,
        train={"type": "animalpose", "ann_file": "data/animalpose/annotations/animalpose_train.json",
               "image_root": "data/animalpose"},
        val={"type": "animalpose", "ann_file": "data/animalpose/annotations/animalpose_val.json",
             "image_root": "data/animalpose"},
        metrics=[_coco_metric("animalpose")], main="AP"),
}


def pgvl_model(dataset: str, size: str = "b", input_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The model spec of a released configuration."""
    input_size = input_size or _DATASETS[dataset]["input_size"]
    prompts = PROMPTS[dataset]
    keypoints = len(prompts)
    if size == "l":
        backbone = {"type": "vit", "arch": "large", "drop_path_rate": 0.5, "norm_eps": 1e-5, "input_size": list(input_size)}
        text = {"text_width": 768, "text_heads": 8, "text_embed_dim": 768}
        fusion = {"parse_dims": [512, 768], "depths": [2, 2], "splits": [[2, 2], [2, 2]], "target_dim": 768, "mode": 1}
        head_in = 1280
    else:
        backbone = {"type": "vit", "arch": "base", "drop_path_rate": 0.3, "norm_eps": 1e-5, "input_size": list(input_size)}
        text = {}
        if dataset == "animalpose":
            fusion = {"parse_dims": [512, 256], "depths": [2, 2], "splits": [[2, 2], [2, 2]], "target_dim": 512,
                      "mode": 2}
            head_in = 768
        else:
            # CrowdPose's mode 5 and MPII's / OCHuman's mode 3 build the same model with one tree.
            fusion = {"parse_dims": [512], "depths": [2], "splits": [[2, 2]], "target_dim": 512,
                      "mode": 5 if dataset == "crowdpose" else 3}
            head_in = 512
    deconvs = [192, 256] if input_size == (192, 256) else [256, 256]
    model: dict[str, Any] = {
        "type": "pgvl",
        "backbone": backbone,
        "head": {"type": "heatmap_deconv", "in_channels": head_in, "num_keypoints": keypoints,
                 "deconv_channels": deconvs, "input_stride": 16},
        "class_names": list(prompts),
        "context_length": 12 if dataset == "ochuman" else 5,
        **text,
        **fusion,
        "cl_ratio": _DATASETS[dataset]["cl_ratio"],
        "input_size": list(input_size),
    }
    if dataset == "ochuman":
        model["prompt_num"] = 16  # the config's prompt_num (K is 17); the table is never used
    return model


def pgvl_preset(dataset: str, size: str = "b") -> ExperimentConfig:
    """A released PGVL configuration, trained and evaluated as the original."""
    spec = _DATASETS[dataset]
    input_size = spec["input_size"]
    name = f"pgvl-{size}-{dataset}-{input_size[1]}x{input_size[0]}"
    return ExperimentConfig(
        name=name,
        model=pgvl_model(dataset, size),
        codec=_codec(input_size),
        data=DataConfig(train=[spec["train"]], val=[spec["val"]], batch_size=spec["batch"],
                        eval_batch_size=spec["eval_batch"], num_workers=4, input_size=input_size,
                        train_pipeline=_pipeline(input_size, spec["shift"], spec["half_body"])),
        train=TrainConfig(
            epochs=210,
            init_weights=f"weights/pgvl_init_vit_{size}{'_clip_l14' if size == 'l' else ''}_{input_size[1]}x{input_size[0]}.pth",
            optimizer=OptimizerConfig(type="adamw", lr=5e-4, weight_decay=1e-4, param_groups=PARAM_GROUPS,
                                      decay_exemptions="none"),
            schedule=ScheduleConfig(type="step", milestones=(170, 200), warmup_iters=500, warmup_ratio=0.001),
            val_interval=10,
        ),
        eval=EvalConfig(metrics=spec["metrics"], main_metric=spec["main"], flip_test=True),
        plugins=PLUGINS,
    )


def tiny_synthetic() -> ExperimentConfig:
    """PGVL end to end on a CPU, shrunk: the whole method (text tower frozen by lr 0 with learnable
    contexts, prompt encoder, the 7-node parse graph with its Guided Modules, the contrastive
    loss) with a 3-block width-128 ViT (8-pixel patches, 128x96 crops, trained from scratch, so at the
    full lr rather than x 0.1), a 2-layer width-64 text tower, one fusion layer per graph node and
    COCO's 17 keypoint names as prompts, on the synthetic people; evaluated on held-out synthetic
    images. One fusion layer rather than two: 3 min 41 s instead of 5 min 20 s on two idle Xeon
    cores, AP 0.52 instead of 0.54."""
    input_size = (96, 128)
    model = {
        "type": "pgvl",
        "backbone": {"type": "vit", "arch": "small", "embed_dim": 128, "depth": 3, "num_heads": 4, "patch_size": 8,
                     "patch_padding": 1, "norm_eps": 1e-5, "input_size": list(input_size)},
        "head": {"type": "heatmap_deconv", "in_channels": 64, "num_keypoints": 17, "deconv_channels": [64],
                 "input_stride": 8},
        "class_names": list(PROMPTS["coco"]),
        "text_width": 64, "text_heads": 2, "text_layers": 2, "text_embed_dim": 64, "prompt_heads": 2,
        "parse_dims": [64], "depths": [1], "splits": [[2, 2]], "target_dim": 64, "mode": 5, "cross_heads": 4,
        "cl_ratio": 0.0005,
        "input_size": list(input_size),
    }
    return ExperimentConfig(
        name="pgvl-tiny-synthetic",
        model=model,
        codec={"type": "msra_heatmap", "input_size": list(input_size), "heatmap_size": [24, 32], "sigma": 1.5},
        data=DataConfig(train=[{"type": "synthetic_people", "split": "train", "num_images": 1500}],
                        val=[{"type": "synthetic_people", "split": "val", "num_images": 150}],
                        batch_size=32, eval_batch_size=64, num_workers=1, input_size=input_size),
        train=TrainConfig(
            mixed_precision="auto",  # bf16 on a CPU with AMX: 1.2x faster steps (README, the default runs)
            epochs=6,
            optimizer=OptimizerConfig(type="adamw", lr=2e-3, weight_decay=1e-4,
                                      param_groups=(ParamGroupRule("text_encoder.*", lr_mult=0.0),
                                                    ParamGroupRule("*norm*", decay_mult=0.0))),
            schedule=ScheduleConfig(type="cosine", warmup_iters=50, min_lr=1e-5),
            val_interval=3,
            log_interval=10,
        ),
        eval=EvalConfig(metrics=[{"type": "coco_ap", "metainfo": "coco"}], main_metric="AP", flip_test=True),
        plugins=PLUGINS,
    )


def _define(name: str, *args: Any) -> None:
    def preset() -> ExperimentConfig:
        return pgvl_preset(*args)

    preset.__name__ = preset.__qualname__ = name
    preset.__doc__ = pgvl_preset.__doc__
    globals()[name] = preset


for _dataset, _size in (("crowdpose", "b"), ("mpii", "b"), ("ochuman", "b"), ("ap10k", "l"), ("animalpose", "b")):
    _define(f"pgvl_{_size}_{_dataset}", _dataset, _size)

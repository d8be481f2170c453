"""VLPose's experiments, from the original configs (``configs/_ours_/``).

* ``vlpose-{s,b,l,h}-{dp,sp}-humanart-256x192``: the eight released models, i.e. the Human-Art
  stage (``humanart/pretrain/cvl/first_amiddle_last_add_concat_attn_blip-B_kw1_vit-{S_dp50,S_sp50,
  B_dp20,B_sp20,L_dp10,L_sp10,H_dp5,H_sp5}.py``): ViT frozen except its deep (dp) or shallow (sp)
  prompts, one sentence per Human-Art style, main head branch frozen; trained are the prompts, the
  matcher, ``text_embed_proj``, the extra head branch and the final layer. Starts from the COCO
  stage's checkpoint (``train.init_weights``). AdamW 5e-4, wd 0.1, layer decay 0.8 over the
  original's 12 layers (``legacy_quirks``; no effect here, the ViT is frozen), clip 1.0, 500
  linear warm-up iterations, steps at 170/200 of 210 epochs; per-GPU batch 64 (S, B), 32 (L), 16 (H).
* ``vlpose-{s,b,l,h}-coco-256x192``: the COCO stage (``coco/scratch/cvl/*_kw-1_vit-*.py``): the
  fixed sentence "a photo of a human", plain ViT (no prompts) trained with layer decay 0.75 over
  the original's 12 layers (``legacy_quirks``: L/H deep blocks get lr scales above 1; set
  ``model.legacy_quirks=false`` for the true depth), main head branch frozen. The released config
  starts from MAE weights and leaves that frozen branch at random init; the published COCO figures
  equal official ViTPose's, so here the stage starts from the mmpose 1.x ViTPose checkpoint
  (converter ``vlpose-from-vitpose``: ViT + main branch), the brief's reading.
* ``vlpose-tiny-synthetic``: the embedded default: both stages on synthetic people, a few CPU minutes.

Paths are relative to a data root laid out as the original expects (``data/HumanArt``,
``data/coco``) and ``weights/`` for checkpoints and bert-base-uncased's ``vocab.txt``.
"""

from __future__ import annotations

import functools
from typing import Any

from posecore import Preset, PublishedResult
from posecore.config import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    OptimizerConfig,
    ScheduleConfig,
    StageConfig,
    TrainConfig,
)
from posecore.data import COCO_VAL_PERSON_DETECTIONS, coco_dataset_spec, standard_topdown_pipeline

__all__ = ["HUMANART_TRAINABLE", "SIZES", "coco_stage_preset", "humanart_preset", "preset_declarations",
           "tiny_synthetic"]

INPUT_SIZE, HEATMAP_SIZE = (192, 256), (48, 64)
PLUGINS = ("vlpose",)
_SOURCE = "Li et al. 2024 (arXiv 2402.14456); JulietLJY/VLPose README table"

#: size -> (arch, width, drop path, prompt tokens, Human-Art batch per GPU, ViTPose mmpose-1 checkpoint).
SIZES: dict[str, tuple[str, int, float, int, int, str]] = {
    "s": ("small", 384, 0.1, 50, 64, "td-hm_ViTPose-small_8xb64-210e_coco-256x192.pth"),
    "b": ("base", 768, 0.3, 20, 64, "td-hm_ViTPose-base_8xb64-210e_coco-256x192.pth"),
    "l": ("large", 1024, 0.5, 10, 32, "td-hm_ViTPose-large_8xb64-210e_coco-256x192.pth"),
    "h": ("huge", 1280, 0.55, 5, 16, "td-hm_ViTPose-huge_8xb64-210e_coco-256x192.pth"),
}

#: The README's figures: size -> (Human-Art val AP, COCO val2017 AP).
PUBLISHED: dict[str, tuple[float, float]] = {"s": (30.57, 73.92), "b": (34.33, 75.75), "l": (40.18, 78.18),
                                             "h": (43.03, 78.84)}

#: What trains in the Human-Art stage of the released dp/sp models.
HUMANART_TRAINABLE = ("backbone.prompt_embed", "backbone.deep_prompt_embed", "matcher.*", "text_embed_proj.*",
                      "head.deconv_layers.*.deconv1.*", "head.deconv_layers.*.bn1.*", "head.final_layer.*")
#: The COCO stage: everything but the frozen text encoder and the frozen main branch.
COCO_TRAINABLE = ("backbone.*", "matcher.*", "text_embed_proj.*", "head.deconv_layers.*.deconv1.*",
                  "head.deconv_layers.*.bn1.*", "head.final_layer.*")

VOCAB_FILE = "weights/bert-base-uncased/vocab.txt"
_HUMANART_ROOT = "data/HumanArt"


def _codec(input_size: tuple[int, int] = INPUT_SIZE, heatmap_size: tuple[int, int] = HEATMAP_SIZE,
           sigma: float = 2.0) -> dict[str, Any]:
    return {"type": "udp_heatmap", "input_size": list(input_size), "heatmap_size": list(heatmap_size),
            "sigma": sigma, "blur_kernel_size": 11}


def _pipeline() -> list[dict[str, Any]]:
    """mmpose 1.x's: flip, half body (p 0.3), scale 0.5-1.5, rotation 80 deg (p 0.6), shift 0.16 (p 0.3)."""
    specs = [spec.to_dict() for spec in standard_topdown_pipeline(train=True, scale_factor=0.5, rotate_factor=80.0,
                                                                   shift_factor=0.16, shift_prob=0.3)]
    return specs


def _model(size: str, prompt: str | None, text_mode: str, *, legacy_quirks: bool = True) -> dict[str, Any]:
    arch, width, drop_path, tokens, _, _ = SIZES[size]
    backbone: dict[str, Any] = {"type": "vlpose_vit", "arch": arch, "drop_path_rate": drop_path,
                                "input_size": list(INPUT_SIZE)}
    if prompt is not None:
        backbone.update(prompt_mode="deep" if prompt == "dp" else "shallow", prompt_tokens=tokens,
                        frozen_stages={"small": 12, "base": 12, "large": 24, "huge": 32}[arch])
    return {"type": "vlpose", "backbone": backbone, "num_keypoints": 17, "input_size": list(INPUT_SIZE),
            "text_mode": text_mode, "vocab_file": VOCAB_FILE, "legacy_quirks": legacy_quirks}


def _train(epochs: int, layer_decay: float, trainable: tuple[str, ...], text_mode: str,
           init_weights: str | None) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        init_weights=init_weights,
        optimizer=OptimizerConfig(type="adamw", lr=5e-4, weight_decay=0.1, betas=(0.9, 0.999), layer_decay=layer_decay),
        schedule=ScheduleConfig(type="step", warmup_iters=500, warmup_ratio=0.001, milestones=(170, 200), gamma=0.1),
        stages=(StageConfig(start_epoch=0, trainable=trainable, options={"text_mode": text_mode}),),
        grad_clip=1.0,
        val_interval=10,
    )


def humanart_preset(size: str, prompt: str) -> ExperimentConfig:
    """The Human-Art stage of a released model (see the module docstring)."""
    batch = SIZES[size][4]
    train = {"type": "vlpose_styled", "source": "parent_dir", "pipeline": _pipeline(),
             "dataset": {"type": "humanart", "ann_file": f"{_HUMANART_ROOT}/annotations/training_humanart.json",
                         "image_root": "data"}}
    val = {"type": "vlpose_styled", "source": "parent_dir",
           "dataset": {"type": "humanart", "ann_file": f"{_HUMANART_ROOT}/annotations/validation_humanart.json",
                       "image_root": "data",
                       "bbox_file": f"{_HUMANART_ROOT}/person_detection_results/"
                                    "HumanArt_validation_detections_AP_H_56_person.json"}}
    return ExperimentConfig(
        name=f"vlpose-{size}-{prompt}-humanart-256x192",
        model=_model(size, prompt, "style"),
        codec=_codec(),
        data=DataConfig(train=[train], val=[val], batch_size=batch, eval_batch_size=32, num_workers=4,
                        input_size=INPUT_SIZE),
        train=_train(210, 0.8, HUMANART_TRAINABLE, "style", f"weights/vlpose_{size}_coco_stage.pth"),
        eval=EvalConfig(metrics=[{"type": "coco_ap", "metainfo": "humanart"}], main_metric="AP", flip_test=True),
        plugins=PLUGINS,
    )


def coco_stage_preset(size: str) -> ExperimentConfig:
    """The COCO stage (see the module docstring)."""
    val = {**coco_dataset_spec("val"), "bbox_file": COCO_VAL_PERSON_DETECTIONS}
    return ExperimentConfig(
        name=f"vlpose-{size}-coco-256x192",
        model=_model(size, None, "fixed"),
        codec=_codec(),
        data=DataConfig(train=[{**coco_dataset_spec("train"), "pipeline": _pipeline()}], val=[val], batch_size=64,
                        eval_batch_size=32, num_workers=4, input_size=INPUT_SIZE),
        train=_train(210, 0.75, COCO_TRAINABLE, "fixed", f"weights/{SIZES[size][5]}"),
        eval=EvalConfig(metrics=[{"type": "coco_ap", "metainfo": "coco"}], main_metric="AP", flip_test=True),
        plugins=PLUGINS,
    )


#: The tiny run's styles (its synthetic images get them in turn).
TINY_STYLES = ("cartoon", "sketch", "oil_painting")


def tiny_synthetic() -> ExperimentConfig:
    """VLPose end to end on a CPU: a small ViT with deep prompts, a 2-layer text BERT over the
    prompts' own words, matcher and dual head, on synthetic people. Stage 0 ("COCO stage", fixed
    sentence): everything but the text encoder trains (the tiny ViT has no pre-training and the
    main branch none either); stage 1 ("Human-Art stage", one sentence per style): ViT and main
    branch frozen, only prompts, matcher, projection, extra branch and final layer train.
    Measured here: AP 0.639 on the 150 held-out images (0.522 after the 4th epoch); per training
    step about 1.15x the core's ``vit-tiny-synthetic`` in stage 0 and well under it in stage 1
    (no ViT backward)."""
    input_size, heatmap_size = (96, 128), (24, 32)
    width = 128
    model = {
        "type": "vlpose",
        "backbone": {"type": "vlpose_vit", "arch": "small", "embed_dim": width, "depth": 4, "num_heads": 4,
                     "patch_size": 8, "patch_padding": 1, "input_size": list(input_size), "prompt_mode": "deep",
                     "prompt_tokens": 4},
        "num_keypoints": 17,
        "input_size": list(input_size),
        # The last stage's mode, so that the trained checkpoint predicts as it was evaluated; the
        # first stage switches to the fixed sentence (StageConfig options) while it runs.
        "text_mode": "style",
        "prompts": {style: f"a photo of a human in {style.replace('_', ' ')} style" for style in TINY_STYLES},
        "text_vocab_size": 64, "text_width": 64, "text_layers": 2, "text_heads": 2, "text_intermediate": 128,
        "text_max_positions": 32,
        "matcher_heads": 4,
        "deconv_channels": [64],
        "freeze_main_branch": False,
    }

    def styled(split: str, images: int) -> dict[str, Any]:
        return {"type": "vlpose_styled", "source": "cycle", "styles": list(TINY_STYLES),
                "dataset": {"type": "synthetic_people", "split": split, "num_images": images}}

    stage1 = ("backbone.prompt_embed", "backbone.deep_prompt_embed", "matcher.*", "text_embed_proj.*",
              "head.deconv_layers.*.deconv1.*", "head.deconv_layers.*.bn1.*", "head.final_layer.*")
    return ExperimentConfig(
        name="vlpose-tiny-synthetic",
        model=model,
        codec=_codec(input_size, heatmap_size, 1.5),
        data=DataConfig(train=[styled("train", 1500)], val=[styled("val", 150)], batch_size=32, eval_batch_size=64,
                        num_workers=0, input_size=input_size),
        # Loading in the training process and bf16 where the CPU has AMX: on 2 cores a data worker
        # preempts a compute thread, and bf16 speeds this small model's step 1.55x
        # (README: the embedded default runs).
        train=TrainConfig(
            mixed_precision="auto",
            epochs=8,
            optimizer=OptimizerConfig(type="adamw", lr=2e-3, weight_decay=1e-4),
            schedule=ScheduleConfig(type="cosine", warmup_iters=50, min_lr=1e-5),
            stages=(StageConfig(start_epoch=0, trainable=COCO_TRAINABLE[:1] + ("matcher.*", "text_embed_proj.*",
                                                                               "head.*"),
                                options={"text_mode": "fixed"}),
                    StageConfig(start_epoch=6, trainable=stage1, options={"text_mode": "style"})),
            val_interval=4,
            log_interval=10,
        ),
        eval=EvalConfig(metrics=[{"type": "coco_ap", "metainfo": "coco"}], main_metric="AP", flip_test=True),
        plugins=PLUGINS,
    )


#: ``posecore predict`` with each input's Human-Art style (``--style``, ``--styles``).
PREDICTOR = "posecore_vlpose.predictor:predict_styled"


def preset_declarations() -> list[Preset]:
    """The plugin's presets (``posecore_presets``)."""
    presets = [Preset("vlpose-tiny-synthetic", "posecore_vlpose.presets:tiny_synthetic",
                      "VLPose end to end on synthetic people, both stages (no data needed, a few CPU minutes)",
                      default=True, predictor=PREDICTOR)]
    for size, (arch, _, _, tokens, _, vitpose) in SIZES.items():
        humanart, coco = PUBLISHED[size]
        for prompt in ("dp", "sp"):
            kind = "deep" if prompt == "dp" else "shallow"
            published = []
            if prompt == "dp":
                note = (f"the README row 'VLPose-{size.upper()}'; it does not say whether the dp or the sp model produced it "
                        "(carried on dp)")
                published = [
                    PublishedResult("Human-Art", "validation", "AP", humanart, f"{_SOURCE}; {note}; detector boxes"),
                    PublishedResult("COCO", "val2017", "AP", coco, f"{_SOURCE}; {note}; equals official ViTPose-"
                                    f"{size.upper()}: the frozen main branch (run vlpose-{size}-coco-256x192's eval)"),
                ]
            presets.append(Preset(
                f"vlpose-{size}-{prompt}-humanart-256x192", functools.partial(humanart_preset, size, prompt),
                f"VLPose-{size.upper()} Human-Art stage, {kind} prompts ({tokens} tokens), frozen ViT ({arch}) and main "
                f"branch; released config ..._kw1_vit-{size.upper()}_{prompt}{tokens}.py (legacy_quirks on)",
                published=published, predictor=PREDICTOR,
            ))
        presets.append(Preset(
            f"vlpose-{size}-coco-256x192", functools.partial(coco_stage_preset, size),
            f"VLPose-{size.upper()} COCO stage: fixed sentence, ViT trained (layer decay over 12 layers: legacy_quirks), "
            f"main branch from {vitpose} and frozen",
            predictor=PREDICTOR,
        ))
    return presets

"""The assembly step: the context the engine builds with is the context validation knows, and the
ground truth an evaluation dataset and its metric share is parsed once, with the same results."""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from posecore._errors import ConfigError
from posecore._fileio import parsing_each_file_once, read_json
from posecore._plugins import get_host
from posecore.config import ExperimentConfig, apply_overrides
from posecore.engine._assembly_rules import ENGINE_CONTEXT, engine_context, validate_config
from posecore.engine._builder import build_codec, build_eval_sets, build_model
from posecore.engine._evaluation import evaluate

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COCO_GT = SHARED / "coco" / "test_coco.json"
COCO_METRIC = {"type": "coco_ap", "metainfo": "coco"}

# ------------------------------------------------------------------------------------ file opens

_OPENED: list[list[str]] = []  # one list per active `opens_of` block


def _record_open(event: str, args: tuple) -> None:
    if event == "open" and _OPENED and isinstance(args[0], (str, os.PathLike)):
        _OPENED[-1].append(os.path.realpath(os.fspath(args[0])))


sys.addaudithook(_record_open)  # an audit hook observes the interpreter's own file opens; it replaces nothing


@contextmanager
def opens_of(path: Path) -> Iterator[list[str]]:
    """The opens of ``path`` within the block (a list, filled as files are opened)."""
    target = os.path.realpath(path)
    _OPENED.append([])
    opened: list[str] = []
    try:
        yield opened
    finally:
        opened.extend(p for p in _OPENED.pop() if p == target)


def _coco_config(tiny_config) -> ExperimentConfig:
    return apply_overrides(tiny_config(epochs=0), [
        f"data.val=[{{type: coco, ann_file: {COCO_GT}, image_root: {SHARED / 'coco'}}}]",
        "eval.metrics=[{type: coco_ap, metainfo: coco}]",
    ])


def _near_ground_truth(dataset) -> list[dict]:
    """Results a little off each instance's ground truth, with the keys the metric reads."""
    rng = np.random.default_rng(0)
    results = []
    for index in range(len(dataset)):
        annotation = dataset.annotation(index)
        keypoints = np.asarray(annotation["keypoints"], dtype=np.float64)
        results.append({
            "image_id": annotation["image_id"], "id": annotation["id"], "category_id": annotation["category_id"],
            "keypoints": keypoints + rng.normal(0.0, 2.0, keypoints.shape),
            "keypoint_scores": rng.uniform(0.5, 1.0, len(keypoints)), "bbox_score": 1.0,
            "sample_index": index,
        })
    return results


# ------------------------------------------------------------------------------------ the ground truth


def test_inside_a_block_a_file_is_parsed_once_and_every_reader_gets_the_same_document(tmp_path) -> None:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps({"a": [1, 2]}), encoding="utf-8")
    assert read_json(path, "test file") is not read_json(path, "test file")  # outside: a parse per read
    with parsing_each_file_once(), opens_of(path) as opened:
        first = read_json(path, "test file")
        assert read_json(str(path), "another reader's name for it") is first
        with parsing_each_file_once():  # nested: the outer block's documents
            assert read_json(path, "test file") is first
        path.write_text(json.dumps({"a": [1, 2, 3]}), encoding="utf-8")  # changed on disk: parsed anew
        assert read_json(path, "test file") == {"a": [1, 2, 3]}
    assert len(opened) == 3  # the first read, the rewrite, the read of the new content


def test_an_evaluation_dataset_and_its_metric_parse_the_annotation_file_once(tiny_config) -> None:
    registries = get_host().registries
    config = _coco_config(tiny_config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the sample has unlabelled people; the reader says so
        # Built apart, as before the assembly shared it, the file is parsed by each of them.
        with opens_of(COCO_GT) as apart:
            dataset = registries.datasets.build(config.data.val[0])
            separate = registries.metrics.build(COCO_METRIC, context={"ann_file": str(COCO_GT)})
        assert len(apart) == 2
        with opens_of(COCO_GT) as assembled:
            (eval_set,) = build_eval_sets(config, registries, codec=build_codec(config, registries))
    assert len(assembled) == 1
    (shared,) = eval_set.metrics
    assert shared.ann_file == separate.ann_file == str(COCO_GT)
    # The same ground truth, so the same scores for the same predictions.
    assert len(eval_set.dataset.dataset) == len(dataset)
    results = _near_ground_truth(eval_set.dataset.dataset)
    table = evaluate(results, [shared])
    assert table == evaluate(results, [separate])
    assert 0.0 < table["AP"] < 1.0  # off the ground truth by a little: neither a perfect nor an empty score


# ------------------------------------------------------------------------------------ the context


def test_the_assembly_gives_no_context_that_validation_does_not_know() -> None:
    assert engine_context("models", codec=None) == {}  # nothing to give: the factory's default stands
    assert set(engine_context("transforms", codec="c", input_size=(1, 2), use_udp=False)) <= set(ENGINE_CONTEXT["transforms"])
    with pytest.raises(TypeError, match=r"the engine gives metrics no context \['dataset_index'\]"):
        engine_context("metrics", dataset_index=0)


def test_the_model_is_given_the_experiments_codec(tiny_config) -> None:
    registries = get_host().registries
    config = tiny_config()
    validate_config(config, registries)  # the model spec sets no codec: validation knows the engine gives it
    codec = build_codec(config, registries)
    assert build_model(config, registries, codec).codec is codec
    assert type(build_model(config, registries).codec) is type(codec)  # no codec at hand: the config's


def test_the_no_codec_rule_for_evaluation_sets_is_one_rule_for_validation_and_building(tiny_config) -> None:
    registries = get_host().registries
    own = {"type": "msra_heatmap", "input_size": [48, 64], "heatmap_size": [12, 16], "sigma": 2.0}
    config = apply_overrides(tiny_config(), [f"data.test=[{{type: synthetic_people, split: val, codec: {json.dumps(own)}}}]"])
    message = r"config 'engine-test', data\.test\[0\]: an evaluation dataset cannot set its own codec"
    with pytest.raises(ConfigError, match=message):
        validate_config(config, registries)
    with pytest.raises(ConfigError, match=message):
        build_eval_sets(config, registries, split="test")

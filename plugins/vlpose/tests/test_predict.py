"""``posecore predict`` and ``Pose`` with a Human-Art style per image, on real Human-Art images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import attrs
import numpy as np
import pytest
from posecore_vlpose.predictor import style_of

import posecore
from posecore.data import read_image

HUMANART = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "humanart"
ACROBATICS = HUMANART / "real_human" / "acrobatics" / "000000000590.jpg"
DIGITAL_ART = HUMANART / "2D_virtual_human" / "digital_art" / "000000001648.jpg"


@pytest.fixture(scope="module")
def pose() -> posecore.Pose:
    """The tiny preset's model with the default Human-Art prompts (random weights)."""
    config = posecore.get_preset("vlpose-tiny-synthetic")
    model = {key: value for key, value in config.model.to_dict().items() if key != "prompts"}
    return posecore.Pose(config=attrs.evolve(config, model=model), device="cpu", flip_test=False)


def test_the_style_picks_the_prompt_the_model_predicts_with(pose: posecore.Pose) -> None:
    image = read_image(ACROBATICS)
    acrobatics, digital = (pose(image, batch_extras={"style": style})[0] for style in ("acrobatics", "digital_art"))
    again = pose(image, batch_extras={"style": "acrobatics"})[0]
    np.testing.assert_array_equal(acrobatics.scores, again.scores)
    assert not np.allclose(acrobatics.scores, digital.scores), "another style's sentence changes the prediction"


def test_style_sources_in_order_file_then_option_then_the_images_folder(tmp_path: Path) -> None:
    table = tmp_path / "styles.json"
    table.write_text(json.dumps({DIGITAL_ART.name: "sketch"}))

    def request(**options: object) -> posecore.PredictRequest:
        return posecore.PredictRequest(inputs=(ACROBATICS, DIGITAL_ART), output=tmp_path, options=options)

    by_folder = style_of(request(vlpose_style="parent_dir"))
    assert [by_folder(path) for path in (ACROBATICS, DIGITAL_ART)] == [{"style": "acrobatics"}, {"style": "digital_art"}]
    mixed = style_of(request(vlpose_style="cartoon", vlpose_styles=str(table)))
    assert [mixed(path) for path in (ACROBATICS, DIGITAL_ART)] == [{"style": "cartoon"}, {"style": "sketch"}]
    assert style_of(request())(ACROBATICS) == {}, "no option: the model's default_style"
    table.write_text("[1, 2]")
    with pytest.raises(posecore.PosecoreError, match=r"--styles .*JSON object"):
        style_of(request(vlpose_styles=str(table)))


def test_predict_cli_styles_each_image_and_an_unknown_style_fails_that_image_alone(tmp_path: Path, capsys) -> None:
    from posecore._cli.main import main

    images = tmp_path / "images"
    images.mkdir()
    for source in (ACROBATICS, DIGITAL_ART):
        shutil.copy(source, images / source.name)
    common = ["predict", "--preset", "vlpose-tiny-synthetic", "--device", "cpu", "--whole-image", "--no-flip-test"]
    assert main([*common, "--style", "sketch", "--output", str(tmp_path / "sketch"), str(images)]) == 0
    assert len(json.loads((tmp_path / "sketch" / "predictions.json").read_text())) == 2

    table = tmp_path / "styles.json"
    table.write_text(json.dumps({ACROBATICS.name: "cartoon", DIGITAL_ART.name: "digital_art"}))
    capsys.readouterr()
    status = main([*common, "--styles", str(table), "--output", str(tmp_path / "mixed"), str(images)])
    rows = json.loads((tmp_path / "mixed" / "predictions.json").read_text())
    error = capsys.readouterr().err
    assert status == 1 and [row["file_name"] for row in rows] == [ACROBATICS.name]
    assert "digital_art" in error and "cartoon" in error and "sketch" in error, error  # the unknown style, the known ones

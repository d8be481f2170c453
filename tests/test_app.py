"""``posecore app``: tabs declared through the plugin hook (the core's own too), a failing tab
reported without taking the app down, the Predict tab writing what ``posecore predict`` writes,
and, in headless Chromium, a real image uploaded and its results read back from the page."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from posecore import PluginError
from posecore._plugins import load_plugins

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IMAGE = SHARED / "coco" / "000000000785.jpg"


@pytest.fixture(scope="module")
def vit_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded default model (random weights) as a posecore checkpoint with its config and
    keypoint set, as training writes it."""
    import torch

    import posecore
    from posecore._checkpoint import save_checkpoint
    from posecore.config import dump_config, unstructure
    from posecore.data import load_metainfo

    config = posecore.get_preset("vit-tiny-synthetic")
    torch.manual_seed(0)
    model = posecore.build_model(config)
    path = tmp_path_factory.mktemp("weights") / "best.pth"
    save_checkpoint({"state_dict": model.state_dict(), "meta": {"config": dump_config(config),
                                                                "keypoint_set": unstructure(load_metainfo("coco"))}},
                    path)
    return path


def _context(checkpoint: Path | None, output: Path) -> object:
    from posecore import AppContext
    from posecore._predict import predict_topdown

    return AppContext(checkpoint=None if checkpoint is None else str(checkpoint), preset=None, plugin=None,
                      device="cpu", output=output, predictor=predict_topdown)


def test_the_cli_help_imports_neither_gradio_nor_torch() -> None:
    code = ("import sys\nfrom posecore._cli.main import main\ntry:\n    main(['app', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in ('torch', 'gradio') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert "--checkpoint" in result.stdout and result.stdout.strip().endswith("[]")


def test_tabs_are_declared_through_the_hook(clean_plugin_env: None) -> None:
    host = load_plugins()
    tabs = host.registries.app_tabs
    assert tabs.provider("predict") == "posecore" and tabs.get("predict").title == "Predict"
    assert host.records["posecore"].components["app_tabs"] == ["predict"]


def test_a_wrong_declaration_breaks_only_its_plugin(fake_plugin_dist: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
                                                   clean_plugin_env: None) -> None:
    site = fake_plugin_dist("tabby", """
        import posecore
        POSECORE_PLUGIN_API = 2

        @posecore.hookimpl
        def posecore_app_tabs():
            return [posecore.Component("tabby", "posecore_fake_tabby:build")]
    """)
    monkeypatch.syspath_prepend(str(site))
    host = load_plugins()
    assert host.records["tabby"].status == "error"
    assert "declared a Component among its app_tabs; expected posecore.AppTab" in host.records["tabby"].error
    assert "predict" in host.registries.app_tabs


def test_a_tab_that_fails_to_build_is_reported_and_the_app_goes_on(
        fake_plugin_dist: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, clean_plugin_env: None,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("gradio", reason="posecore app needs the app extra: pip install 'posecore[app]'")
    from posecore._app import build_app

    site = fake_plugin_dist("shaky", """
        import posecore
        POSECORE_PLUGIN_API = 2

        def build(context):
            raise RuntimeError("no model for me")

        @posecore.hookimpl
        def posecore_app_tabs():
            return [posecore.AppTab("shaky", "Shaky", build)]
    """)
    monkeypatch.syspath_prepend(str(site))
    host = load_plugins()
    app = build_app(_context(None, tmp_path), host)
    message = "plugin 'shaky': app tab 'shaky' failed: RuntimeError: no model for me"
    assert message in capsys.readouterr().err
    texts = [getattr(block, "value", None) for block in app.blocks.values()]
    assert any(message in str(text) for text in texts), "the tab says why it is empty"
    labels = {getattr(block, "label", None) for block in app.blocks.values()}
    assert "Image or video" in labels, "the core's tab is still built"
    host.strict = True
    with pytest.raises(PluginError, match="no model for me"):
        build_app(_context(None, tmp_path), host)


def test_without_gradio_the_command_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from posecore._cli.main import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # what an environment without the extra imports
    assert main(["app"]) == 2
    assert "pip install 'posecore[app]'" in capsys.readouterr().err


def test_the_predict_tab_writes_what_posecore_predict_writes(vit_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("gradio", reason="posecore app needs the app extra: pip install 'posecore[app]'")
    from posecore._app import _predict
    from posecore._cli.main import main

    drawn, video, results, status = _predict(_context(vit_checkpoint, tmp_path / "app"), str(IMAGE), 0.3, True)
    assert status.startswith("1 instance(s) in 000000000785.jpg"), status
    assert cv2.imread(drawn).shape == cv2.imread(str(IMAGE)).shape and video["visible"] is False
    assert main(["predict", "--checkpoint", str(vit_checkpoint), "--device", "cpu", "--whole-image", "--output",
                 str(tmp_path / "command"), str(IMAGE)]) == 0
    assert json.loads(Path(results).read_text()) == json.loads((tmp_path / "command" / "predictions.json").read_text())


def test_the_predict_tab_finds_people_with_the_chosen_detector(vit_checkpoint: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The tab's detector is the context's (``posecore app --detector``) unless the dropdown says
    otherwise; offline with no weights, the tab shows predict's message naming the file."""
    pytest.importorskip("gradio", reason="posecore app needs the app extra: pip install 'posecore[app]'")
    import attrs

    from posecore._app import WHOLE_IMAGE, _predict

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache: nothing to find
    monkeypatch.setenv("POSECORE_OFFLINE", "1")
    context = attrs.evolve(_context(vit_checkpoint, tmp_path / "app"), detector="fasterrcnn_mobilenet_v3_large_320_fpn")
    *_, status = _predict(context, str(IMAGE), 0.3, False)
    assert status.startswith("**Error:**") and "fasterrcnn_mobilenet_v3_large_320_fpn" in status, status
    assert ".pth" in status and str(tmp_path / "torch") in status, "names the weights file and where to put it"
    *_, status = _predict(context, str(IMAGE), 0.3, False, WHOLE_IMAGE)
    assert status.startswith("1 instance(s) in 000000000785.jpg (the whole image is the one box)"), status


def test_the_predict_tab_draws_a_video(vit_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("gradio", reason="posecore app needs the app extra: pip install 'posecore[app]'")
    from posecore._app import _predict

    frame = cv2.resize(cv2.imread(str(IMAGE)), (160, 106))
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5, (160, 106))
    for shift in range(3):
        writer.write(np.roll(frame, 4 * shift, axis=1))
    writer.release()
    drawn, video, results, status = _predict(_context(vit_checkpoint, tmp_path / "app"), str(clip), 0.3, False)
    assert drawn is None and video["visible"] is True and Path(video["value"]).name == "clip.mp4"
    rows = json.loads(Path(results).read_text())
    assert [row["file_name"] for row in rows] == ["clip.mp4:0", "clip.mp4:1", "clip.mp4:2"], status


def test_a_bad_upload_is_explained(vit_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("gradio", reason="posecore app needs the app extra: pip install 'posecore[app]'")
    from posecore._app import _predict

    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    *_, status = _predict(_context(vit_checkpoint, tmp_path / "app"), str(notes), 0.3, True)
    assert status.startswith("**Error:**") and "not an image or video file" in status
    assert not list((tmp_path / "app").glob("predict-*")), "a refused upload leaves no results folder"
    *_, status = _predict(_context(vit_checkpoint, tmp_path / "app"), None, 0.3, True)
    assert status == "Upload an image or a video first."


def test_without_chromium_the_browser_tests_are_told_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    from posecore.testing import BrowserUnavailable, _browser, chromium_driver

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(_browser, "CHROMIUM", (str(tmp_path / "chromium"), str(tmp_path / "chromedriver")))
    with pytest.raises(BrowserUnavailable, match="chromium and chromedriver not found: apt-get install chromium "
                                                 "chromium-driver"):
        chromium_driver()


@pytest.mark.browser
def test_the_app_in_a_browser_predicts_an_uploaded_image(vit_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("gradio", reason="posecore app needs the app extra: pip install 'posecore[app]'")
    from selenium.webdriver.common.by import By

    from posecore.testing import BrowserUnavailable, chromium_driver, open_tab, served_app, upload, wait_for_text

    try:
        driver = chromium_driver()
    except BrowserUnavailable as exc:
        print(f"skipped: {exc}")
        pytest.skip(str(exc))
    shots = tmp_path / "screenshots"
    shots.mkdir()
    output = tmp_path / "app"
    try:
        with served_app(["--checkpoint", str(vit_checkpoint), "--device", "cpu", "--whole-image", "--output", str(output)]) as url:
            driver.get(url)
            open_tab(driver, "Predict")
            driver.save_screenshot(str(shots / "1-opened.png"))
            upload(driver, "#predict-input", IMAGE)
            wait_for_text(driver, "#predict-input", IMAGE.stem)
            driver.save_screenshot(str(shots / "2-uploaded.png"))
            driver.find_element(By.CSS_SELECTOR, "#predict-run").click()
            status = wait_for_text(driver, "#predict-status", "instance|Error", timeout=120)
            assert status.startswith("1 instance(s) in 000000000785.jpg"), status
            driver.save_screenshot(str(shots / "3-predicted.png"))
            assert driver.find_elements(By.CSS_SELECTOR, "#predict-image img"), "the drawn image is shown"
            [link] = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#predict-results a")]
            with urllib.request.urlopen(link, timeout=30) as response:  # the app's own address: 127.0.0.1
                downloaded = json.loads(response.read())
    finally:
        driver.quit()
    [written] = output.glob("predict-*/predictions.json")
    assert downloaded == json.loads(written.read_text())
    [row] = downloaded
    assert row["file_name"] == IMAGE.name and len(row["keypoints"]) == 17 * 3

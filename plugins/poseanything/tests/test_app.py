"""Pose Anything's tab of ``posecore app``: the category clicked in the browser is the file
``posecore predict --category`` takes, and the tab's keypoints on a query are the command's.

The browser test drives the real app (``python -m posecore app``) in headless Chromium on real
images: a horse from the AnimalPose sample is the support, clicked at its annotated keypoints,
and a jaguar from the AP-10K sample is the query. It saves a screenshot of each step in its
temporary folder; ``docs/images/app_screenshot.py`` runs it to refresh the README's picture
(``POSECORE_APP_SCREENSHOT``: where to copy the last one; ``POSECORE_APP_CHECKPOINT``: a trained
model to serve instead of the random-weight one).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from posecore_poseanything.category import Category, SupportShot, load_category, save_category

from posecore._cli.main import main
from posecore.data import read_image

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
SUPPORT = SHARED / "animalpose" / "ho105.jpeg"
QUERY = SHARED / "ap10k" / "000000037516.jpg"
#: The support's keypoints clicked, by their AnimalPose names, and the limbs joined between them.
CLICKED = ("Nose", "L_Eye", "L_EarBase", "Throat", "Withers", "TailBase", "L_F_Elbow", "L_F_Paw", "L_B_Knee",
           "L_B_Paw")
LINKS = ((0, 1), (1, 2), (0, 3), (3, 4), (4, 5), (4, 6), (6, 7), (5, 8), (8, 9))


def _annotated_support() -> list[tuple[float, float]]:
    """The horse's annotated keypoints named in CLICKED, in that order (image pixels)."""
    document = json.loads((SHARED / "animalpose" / "test_animalpose.json").read_text())
    image_id = next(image["id"] for image in document["images"] if image["file_name"] == SUPPORT.name)
    values = next(a["keypoints"] for a in document["annotations"] if a["image_id"] == image_id)
    names = document["categories"][0]["keypoints"]
    return [(values[3 * names.index(name)], values[3 * names.index(name) + 1]) for name in CLICKED]


def _predict_with_the_command(checkpoint: Path, category: Path, output: Path) -> list[dict]:
    assert main(["predict", "--plugin", "poseanything", "--checkpoint", str(checkpoint), "--device", "cpu",
                 "--category", str(category), "--output", str(output), str(QUERY)]) == 0
    return json.loads((output / "predictions.json").read_text())


def test_a_saved_category_reads_back_and_predicts(small_checkpoint: Path, tmp_path: Path) -> None:
    image = read_image(SUPPORT)
    points = np.asarray(_annotated_support(), np.float32)
    visibility = np.ones(len(points), np.float32)
    visibility[3] = 0  # a keypoint the support does not show keeps its third value 0
    box = np.array([10, 5, 280, 250], np.float32)
    category = Category("horse side", (SupportShot(image, points, visibility, box, str(SUPPORT)),), LINKS,
                        tuple(n.lower() for n in CLICKED))
    path = save_category(category, tmp_path / "categories")
    assert path == tmp_path / "categories" / "horse-side.yaml"
    loaded = load_category(path)
    assert (loaded.name, loaded.skeleton, loaded.keypoint_names) == ("horse side", LINKS, category.keypoint_names)
    [shot] = loaded.shots
    assert np.array_equal(shot.image, image), "the support is saved losslessly"
    assert np.array_equal(shot.keypoints, points) and np.array_equal(shot.visibility, visibility)
    assert np.array_equal(shot.bbox, box)
    [row] = _predict_with_the_command(small_checkpoint, path, tmp_path / "out")
    assert (row["file_name"], row["category"], len(row["keypoints"])) == (QUERY.name, "horse side", 3 * len(CLICKED))


@pytest.mark.browser
def test_the_tab_defines_a_category_by_clicks_and_finds_it(small_checkpoint: Path, tmp_path: Path) -> None:
    """Upload the support, click its keypoints, join them, save, run on the query, read it back."""
    pytest.importorskip("gradio", reason="posecore app needs the app extra: pip install 'posecore[app]'")
    from selenium.webdriver.common.by import By

    from posecore.testing import (
        BrowserUnavailable,
        chromium_driver,
        click_image,
        open_tab,
        served_app,
        upload,
        wait_for_text,
    )

    try:
        driver = chromium_driver(1400, 1500)
    except BrowserUnavailable as exc:
        print(f"skipped: {exc}")
        pytest.skip(str(exc))
    checkpoint = Path(os.environ.get("POSECORE_APP_CHECKPOINT") or small_checkpoint)  # the README's: a trained one
    shots = tmp_path / "screenshots"
    shots.mkdir()
    points = _annotated_support()
    output = tmp_path / "app"
    try:
        with served_app(["--plugin", "poseanything", "--checkpoint", str(checkpoint), "--device", "cpu",
                         "--output", str(output)]) as url:
            driver.get(url)
            open_tab(driver, "Pose Anything")
            upload(driver, "#pa-support", SUPPORT)
            wait_for_text(driver, "#pa-definition", "click the support")
            driver.save_screenshot(str(shots / "1-support-uploaded.png"))
            for count, (x, y) in enumerate(points, start=1):
                click_image(driver, "#pa-support", x, y)
                wait_for_text(driver, "#pa-definition", rf"^{count} keypoint\(s\)")
            driver.save_screenshot(str(shots / "2-keypoints-clicked.png"))
            driver.find_element(By.XPATH, "//*[@id='pa-mode']//label[contains(., 'Join')]").click()
            for made, link in enumerate(LINKS, start=1):
                for end in link:
                    click_image(driver, "#pa-support", *points[end])
                wait_for_text(driver, "#pa-definition", r"Skeleton: " + ", ".join(f"{a}-{b}" for a, b in LINKS[:made])
                              + r"\.")
            driver.save_screenshot(str(shots / "3-skeleton-joined.png"))
            driver.find_element(By.CSS_SELECTOR, "#pa-name textarea, #pa-name input").clear()
            driver.find_element(By.CSS_SELECTOR, "#pa-name textarea, #pa-name input").send_keys("horse")
            driver.find_element(By.CSS_SELECTOR, "#pa-save").click()
            wait_for_text(driver, "#pa-status", "Saved")
            driver.save_screenshot(str(shots / "4-category-saved.png"))
            upload(driver, "#pa-queries", QUERY)
            wait_for_text(driver, "#pa-queries", QUERY.stem)
            driver.find_element(By.CSS_SELECTOR, "#pa-run").click()
            status = wait_for_text(driver, "#pa-status", "Found|Error", timeout=120)
            assert "Found the 10 keypoint(s)" in status, status
            driver.execute_script("document.querySelector('#pa-gallery').scrollIntoView()")
            driver.save_screenshot(str(shots / "5-keypoints-found.png"))
            shown = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#pa-results a")]
            assert shown, "the results file is offered for download"
            with urllib.request.urlopen(shown[0], timeout=30) as response:  # the app's own address: 127.0.0.1
                downloaded = json.loads(response.read())
            assert driver.find_elements(By.CSS_SELECTOR, "#pa-gallery img"), "the drawn query is shown"
    finally:
        driver.quit()

    category = output / "categories" / "horse.yaml"
    saved = load_category(category)
    assert saved.skeleton == LINKS
    assert np.abs(saved.shots[0].keypoints - np.asarray(points)).max() <= 1.0, "clicks land on the image's pixels"
    assert np.array_equal(saved.shots[0].image, read_image(SUPPORT))
    [row] = downloaded
    assert (row["file_name"], row["category"], len(row["keypoints"])) == (QUERY.name, "horse", 30)
    [expected] = _predict_with_the_command(checkpoint, category, tmp_path / "command")
    assert np.allclose(row["keypoints"], expected["keypoints"], atol=0.02), "the tab finds what the command finds"
    target = os.environ.get("POSECORE_APP_SCREENSHOT")
    if target:  # docs/images/app_screenshot.py: the README's picture
        shutil.copyfile(shots / "5-keypoints-found.png", target)

"""Regenerate ``docs/images/app.png``, the README's picture of ``posecore app``.

The picture is the last screenshot of Pose Anything's browser test
(``plugins/poseanything/tests/test_app.py``), which drives the real app in headless Chromium:
a horse clicked as the support, its skeleton joined, the category saved and found on a jaguar.
This script runs that test and keeps the screenshot, scaled to 1120 pixels wide.

    python docs/images/app_screenshot.py                      # the test's random-weight tiny model
    python docs/images/app_screenshot.py --checkpoint best.pth   # a trained Pose Anything checkpoint

Needs what the test needs: ``pip install -e '.[all,dev]'`` and ``apt-get install chromium chromium-driver``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[2]
TEST = "plugins/poseanything/tests/test_app.py::test_the_tab_defines_a_category_by_clicks_and_finds_it"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a Pose Anything checkpoint (default: the test's random-weight model)")
    parser.add_argument("--output", default=str(REPO / "docs" / "images" / "app.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        shot = Path(folder) / "app.png"
        env = {**os.environ, "POSECORE_APP_SCREENSHOT": str(shot)}
        if args.checkpoint:
            env["POSECORE_APP_CHECKPOINT"] = str(Path(args.checkpoint).resolve())
        status = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST, "-rs"],
                                cwd=REPO, env=env).returncode
        if status != 0 or not shot.is_file():
            print(f"app_screenshot: the browser test did not pass (status {status}); nothing written", file=sys.stderr)
            return 1
        image = cv2.imread(str(shot))
        scale = 1120 / image.shape[1]
        small = cv2.resize(image, (1120, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".png", small, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            print("app_screenshot: could not encode the screenshot", file=sys.stderr)
            return 1
        Path(args.output).write_bytes(data.tobytes())
    print(f"app_screenshot: wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

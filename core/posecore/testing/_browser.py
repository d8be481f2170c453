"""Driving ``posecore app`` in a real browser, for tests of the app and of plugins' tabs.

The browser is Debian's ``chromium`` with its ``chromedriver`` (``apt-get install chromium
chromium-driver``), driven by Selenium (the ``dev`` extra). Both are named explicitly, so
Selenium Manager never looks for, or downloads, a browser or a driver of its own. Without them,
:func:`chromium_driver` raises :class:`BrowserUnavailable` with the reason, for the test to skip.

The app runs as the command a user types (``python -m posecore app ... --port 0``) in its own
process, and :func:`served_app` yields the address it prints.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["BrowserUnavailable", "chromium_driver", "click_image", "open_tab", "served_app", "upload", "wait_for_text"]

#: Where Debian installs the browser and its driver.
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromedriver")


class BrowserUnavailable(RuntimeError):
    """No browser to test with (what is missing, and how to install it); tests skip with it."""


def chromium_driver(width: int = 1400, height: int = 1000) -> Any:
    """A headless Chromium under Selenium, ``width`` x ``height`` CSS pixels; quit it when done."""
    binary = shutil.which("chromium") or (CHROMIUM[0] if Path(CHROMIUM[0]).exists() else None)
    driver_path = shutil.which("chromedriver") or (CHROMIUM[1] if Path(CHROMIUM[1]).exists() else None)
    missing = [name for name, path in (("chromium", binary), ("chromedriver", driver_path)) if path is None]
    if missing:
        raise BrowserUnavailable(f"{' and '.join(missing)} not found: apt-get install chromium chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        raise BrowserUnavailable(f"selenium is not installed: pip install -e '.[dev]' ({exc})") from None
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    # The app is on this machine: every other host name resolves to nothing, and Chromium's own
    # background traffic (updates, sync, safe browsing) is off.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1",
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check"):
        options.add_argument(argument)
    try:
        return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except Exception as exc:  # a driver that does not match the browser, a sandbox refusing to start
        raise BrowserUnavailable(f"chromium did not start under {driver_path}: {type(exc).__name__}: {exc}") from None


@contextmanager
def served_app(arguments: Sequence[str], *, timeout: float = 120.0,
               env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``python -m posecore app ARGUMENTS --port 0`` and yield its address
    (``http://127.0.0.1:PORT/``) once it serves; stop it afterwards. Its output is relayed to
    stderr, so a failing test shows what the app said."""
    command = [sys.executable, "-m", "posecore", "app", *arguments, "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env or {})})
    lines: queue.Queue[str | None] = queue.Queue()

    def relay() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stderr.write(f"[posecore app] {line}")
            lines.put(line)
        lines.put(None)

    threading.Thread(target=relay, daemon=True).start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"posecore app did not serve within {timeout:.0f} s: {' '.join(command)}") from None
            if line is None:
                raise RuntimeError(f"posecore app exited with status {process.wait()} before serving")
            found = re.search(r"at (http://127\.0\.0\.1:\d+/?)", line)
            if found:
                yield found.group(1)
                return
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def open_tab(driver: Any, title: str, timeout: float = 60.0) -> None:
    """Show the app's tab whose label contains ``title`` (waiting for the page to draw it)."""
    from selenium.webdriver.common.by import By

    tab = _wait(driver, timeout).until(
        lambda d: d.find_element(By.XPATH, f"//button[@role='tab'][contains(normalize-space(.), {title!r})]"))
    tab.click()


def upload(driver: Any, selector: str, *paths: str | Path) -> None:
    """Give ``paths`` to the file input inside the element ``selector`` (a Gradio File or Image)."""
    from selenium.webdriver.common.by import By

    field = _wait(driver, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, f"{selector} input[type=file]"))
    field.send_keys("\n".join(str(Path(path).resolve()) for path in paths))


def click_image(driver: Any, selector: str, x: float, y: float) -> None:
    """Click the image shown in ``selector`` at pixel ``(x, y)`` of the image itself, whatever
    size it is displayed at."""
    from selenium.webdriver.common.action_chains import ActionChains

    def shown(d: Any) -> Any:  # the image and its sizes read at once: Gradio replaces it on each update
        found = d.execute_script(
            "const i = document.querySelector(arguments[0]); if (!i || !i.complete || !i.naturalWidth) return null;"
            "const r = i.getBoundingClientRect(); return [i, i.naturalWidth, i.naturalHeight, r.width, r.height];",
            f"{selector} img")
        return found or False

    image, natural_width, natural_height, width, height = _wait(driver, 30).until(shown)
    offset_x = (x + 0.5) * width / natural_width - width / 2
    offset_y = (y + 0.5) * height / natural_height - height / 2
    ActionChains(driver).move_to_element_with_offset(image, round(offset_x), round(offset_y)).click().perform()


def wait_for_text(driver: Any, selector: str, pattern: str, timeout: float = 60.0) -> str:
    """The text of ``selector`` once it matches the regular expression ``pattern``."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By

    def matching(d: Any) -> str | bool:
        elements = d.find_elements(By.CSS_SELECTOR, selector)
        text = elements[0].text if elements else ""
        return text if re.search(pattern, text) else False

    try:
        return _wait(driver, timeout).until(matching)
    except TimeoutException:
        elements = driver.find_elements(By.CSS_SELECTOR, selector)
        shown = elements[0].text if elements else "(no such element)"
        raise AssertionError(f"{selector} never matched {pattern!r} in {timeout:.0f} s; it shows {shown!r}") from None


def _wait(driver: Any, timeout: float) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2)

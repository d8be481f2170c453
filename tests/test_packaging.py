"""Packaging, tested for real: wheels install into an isolated environment from no index.

The isolated environment is a fresh venv that sees this machine's third-party packages (torch,
timm, ...) through a folder of links to site-packages from which every ``posecore*``
distribution and editable finder is left out. ``posecore`` and its plugins therefore come only
from the wheels built here, exactly as after ``pip install posecore[posebh]`` on a new machine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIRS = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))

pytestmark = pytest.mark.slow


def _run(*command: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _build_wheel(source: Path, out: Path) -> Path:
    # Build from a clean copy: setuptools reuses a checkout's build/ folder, whose stale files
    # would otherwise end up in the wheel (and hide missing ones).
    clean = out.parent / f"src-{source.name}"
    shutil.copytree(source, clean, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".git",
                                                                 "runs", "tests", "benchmarks"))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", out, clean)
    name = tomllib.loads((source / "pyproject.toml").read_text())["project"]["name"].replace("-", "_")
    (wheel,) = out.glob(f"{name}-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    for source in (ROOT, ROOT / "plugins" / "posebh", ROOT / "examples" / "plugin-template"):
        _build_wheel(source, out)
    return out


@pytest.fixture(scope="module")
def isolated_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv's python that sees third-party packages but no posecore distribution at all."""
    base = tmp_path_factory.mktemp("isolated")
    deps = base / "deps"
    deps.mkdir()
    site_packages = Path(sysconfig.get_paths()["purelib"])
    for entry in site_packages.iterdir():
        if entry.name.lower().startswith(("posecore", "__editable__")) or entry.name == "__pycache__":
            continue
        (deps / entry.name).symlink_to(entry)
    _run(sys.executable, "-m", "venv", "--without-pip", base / "venv")
    python = base / "venv" / "bin" / "python"
    venv_site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (venv_site / "thirdparty.pth").write_text(f"import site; site.addsitedir({str(deps)!r})\n")
    probe = _run(python, "-c", "import importlib.util as u; print(u.find_spec('posecore'), u.find_spec('torch') is not None)")
    assert probe.stdout.split() == ["None", "True"], "the isolated environment must not see posecore"
    return python


def _pip_install(python: Path, wheelhouse: Path, *requirements: str) -> None:
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-index", "--find-links", wheelhouse,
         *requirements)


def _plugins_json(python: Path) -> dict[str, dict]:
    document = json.loads(_run(python, "-m", "posecore", "plugins", "--json").stdout)
    return {p["name"]: p for p in document["plugins"]}


def test_extra_installs_the_plugin_from_wheels(isolated_python: Path, wheelhouse: Path) -> None:
    _pip_install(isolated_python, wheelhouse, "posecore[posebh]")
    plugins = _plugins_json(isolated_python)
    assert plugins["posebh"]["status"] == "ok"
    assert plugins["posebh"]["distribution"] == "posecore-posebh"
    assert plugins["posebh"]["version"] == "0.1.0"
    assert "pgvl" not in plugins, "only the requested extra may be installed"
    location = _run(isolated_python, "-c", "import posecore, posecore_posebh; print(posecore.__file__); print(posecore_posebh.__file__)")
    venv = isolated_python.parent.parent
    assert all(Path(line).is_relative_to(venv) for line in location.stdout.split()), location.stdout


def test_wheel_ships_every_core_module(isolated_python: Path, wheelhouse: Path) -> None:
    _pip_install(isolated_python, wheelhouse, "posecore")
    source_modules = sorted(
        ".".join(p.relative_to(ROOT / "core").with_suffix("").parts)
        for p in (ROOT / "core" / "posecore").rglob("*.py")
    )
    source_modules = sorted(m.removesuffix(".__init__") for m in source_modules)
    listing = _run(isolated_python, "-c", (
        "import pkgutil, posecore; print('\\n'.join(sorted(['posecore'] + "
        "[m.name for m in pkgutil.walk_packages(posecore.__path__, 'posecore.')])))"
    ))
    assert listing.stdout.split() == sorted(set(source_modules) | {"posecore"})
    typed = _run(isolated_python, "-c", "import posecore, pathlib; print((pathlib.Path(posecore.__file__).parent / 'py.typed').is_file())")
    assert typed.stdout.strip() == "True"


def test_template_plugin_is_discovered_and_passes_its_contract_checks(isolated_python: Path, wheelhouse: Path) -> None:
    _pip_install(isolated_python, wheelhouse, "posecore", "posecore-template")
    plugins = _plugins_json(isolated_python)
    assert plugins["template"]["status"] == "ok", plugins["template"]["error"]
    assert plugins["template"]["components"]["backbones"] and plugins["template"]["components"]["heads"]
    tests = ROOT / "examples" / "plugin-template" / "tests"
    result = subprocess.run([str(isolated_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
                            capture_output=True, text=True, cwd=tests, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\d+ passed", result.stdout) and "failed" not in result.stdout


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text[text.index("<!-- setup:begin"):text.index("<!-- setup:end")]
    return [line for line in block.splitlines() if line.startswith("python -m ")]


def test_readme_install_command_resolves_every_plugin_locally() -> None:
    """The README's install, run by pip with no index at all, must resolve: no posecore-*
    requirement may ever be looked up on a registry (dependency confusion)."""
    install, test = _readme_commands()
    assert test.startswith("python -m pytest")
    install, run = install.split(" && ")
    assert run == "posecore run", "the first set-up command ends by running the embedded default"
    args = shlex.split(install)[3:]  # after: python -m pip
    assert args[0] == "install"
    named = {Path(arg).name for arg in args if arg.startswith("plugins/")}
    assert named == {p.name for p in PLUGIN_DIRS}, "every plugin folder must be installed by the README command"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    required = {re.split(r"[=<>]", r)[0] for reqs in extras.values() for r in reqs if r.startswith("posecore-")}
    assert required == {f"posecore-{p.name}" for p in PLUGIN_DIRS}
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}
    result = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--dry-run", "--no-build-isolation", "--no-index", "--report", "-", "-q"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for item in report["install"]:
        name = item["metadata"]["name"]
        if name.startswith("posecore"):
            assert item["download_info"]["url"].startswith("file://"), f"{name} would come from {item['download_info']['url']}"


def test_ci_runs_exactly_the_readme_commands() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "setup:begin" in script and "setup:end" in script
    assert len(_readme_commands()) == 2

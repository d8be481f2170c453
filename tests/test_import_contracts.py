"""The import contracts of the root ``pyproject.toml`` (``[tool.importlinter]``), run in the suite.

Plugins import only posecore's public surface, the core imports no plugin, and the core's layers
import only downward (docs/design.md, "Layers and the public surface"). import-linter runs in a
subprocess, as ``lint-imports`` does, so the packages written here never enter this interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("importlinter", reason="the import contracts need import-linter (the 'dev' extra)")

from importlinter.api import read_configuration  # noqa: E402 - only once import-linter is known to be there

import posecore  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
TEMPLATE = REPO / "examples" / "plugin-template"
PACKAGE = Path(posecore.__file__).parent


def _contracts() -> dict[str, dict[str, Any]]:
    return {contract["id"]: contract for contract in read_configuration(str(PYPROJECT))["contracts_options"]}


def _lint(config: Path, *, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``lint-imports --config CONFIG`` (the current directory is on the import path, as there)."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(sys.argv[1], no_cache=True))"
    return subprocess.run([sys.executable, "-c", code, str(config)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def _write_config(path: Path, root_packages: list[str], contract: dict[str, Any]) -> Path:
    """A ``pyproject.toml`` with one contract (JSON strings and lists are valid TOML)."""
    lines = ["[tool.importlinter]", f"root_packages = {json.dumps(root_packages)}", "",
             "[[tool.importlinter.contracts]]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in contract.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _public_surface_for(package: str) -> dict[str, Any]:
    """The root pyproject's public-surface contract, with ``package`` as its only source."""
    contract = dict(_contracts()["public-surface"])
    contract.update(source_modules=[package], allow_indirect_imports=True)
    return contract


def test_the_contracts_hold() -> None:
    result = _lint(PYPROJECT, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_contracts_name_every_plugin_package() -> None:
    packages = {path.parent.name for path in REPO.glob("plugins/*/posecore_*/__init__.py")}
    contracts = _contracts()
    assert packages and set(contracts["public-surface"]["source_modules"]) == packages
    assert set(contracts["core-imports-no-plugin"]["forbidden_modules"]) == packages


def test_the_forbidden_modules_are_exactly_the_private_ones() -> None:
    """Wildcards replace whole names only, so the private top-level modules are listed by name and
    ``posecore.*.*`` stands for every module inside a package: that holds only while every module
    in a public package is private by name (those in a private package are private with it),
    which is checked here too."""
    forbidden = set(_contracts()["public-surface"]["forbidden_modules"])
    private = {f"posecore.{path.stem}" for path in PACKAGE.glob("_*.py") if path.stem != "__init__"}
    private |= {f"posecore.{path.parent.name}" for path in PACKAGE.glob("_*/__init__.py")}
    assert forbidden == private | {"posecore.*.*"}
    in_public_packages = [path for path in PACKAGE.glob("[!_]*/*.py") if path.name != "__init__.py"]
    public_by_name = [str(path.relative_to(PACKAGE)) for path in in_public_packages if not path.name.startswith("_")]
    assert in_public_packages and not public_by_name


def test_the_template_imports_only_the_public_surface(tmp_path: Path) -> None:
    """The template is not installed in a development checkout, so it is checked from its folder
    with the same contract (the root configuration names only installed packages)."""
    config = _write_config(tmp_path / "pyproject.toml", ["posecore", "posecore_template"],
                           _public_surface_for("posecore_template"))
    result = _lint(config, cwd=tmp_path, pythonpath=TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_a_plugin_importing_a_private_module_breaks_the_contract(tmp_path: Path) -> None:
    package = tmp_path / "posecore_leaky"
    package.mkdir()
    (package / "__init__.py").write_text("from posecore._registry import Registries\n", encoding="utf-8")
    (package / "models.py").write_text(textwrap.dedent("""\
        from posecore.data import DatasetMeta
        from posecore.models._vit import ViT
        """), encoding="utf-8")
    config = _write_config(tmp_path / "pyproject.toml", ["posecore", "posecore_leaky"], _public_surface_for("posecore_leaky"))
    result = _lint(config, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "posecore_leaky -> posecore._registry (l.1)" in result.stdout
    assert "posecore_leaky.models -> posecore.models._vit (l.2)" in result.stdout
    assert "posecore.data (l." not in result.stdout, "a public package must not be reported"

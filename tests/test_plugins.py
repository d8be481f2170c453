"""Plugin discovery and loading, with real entry points on real (temporary) distributions.

Every fake plugin here is a dist-info folder plus a module on ``sys.path`` (see
``fake_plugin_dist`` in conftest.py), found by ``importlib.metadata`` like an installed one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

from posecore._errors import ConfigError, PluginError, UnknownComponentError
from posecore._plugins import load_plugins
from posecore.hookspecs import MIN_PLUGIN_API_VERSION, PLUGIN_API_VERSION

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = ("pgvl", "vlpose", "posebh", "poseanything", "hevitpose")

pytestmark = pytest.mark.usefixtures("clean_plugin_env")

TINY_BACKBONE = """
    import torch
    from torch import nn

    import posecore

    POSECORE_PLUGIN_API = 1


    class TinyBackbone(nn.Module):
        def __init__(self, width: int = 4, stride: int = 2) -> None:
            super().__init__()
            self.out_channels = width
            self.conv = nn.Conv2d(3, width, 3, stride=stride, padding=1)

        def forward(self, images):
            return torch.relu(self.conv(images))


    @posecore.hookimpl
    def posecore_backbones():
        return [posecore.Component("fake_tiny", "posecore_fake_good:TinyBackbone", "a tiny conv",
                                   example={"width": 4})]
"""


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch):
    """Put a fake site directory on ``sys.path`` (and clear import caches)."""

    def prepend(directory: Path) -> Path:
        monkeypatch.syspath_prepend(str(directory))
        return directory

    return prepend


def _declared_version(plugin: str) -> str:
    return tomllib.loads((ROOT / "plugins" / plugin / "pyproject.toml").read_text())["project"]["version"]


# -- the installed plugins ---------------------------------------------------------------------


def test_builtin_and_official_plugins_load_ok() -> None:
    host = load_plugins()
    core = host.records["posecore"]
    assert (core.status, core.builtin, core.distribution, core.error) == ("ok", True, "posecore", None)
    assert core.version == metadata.version("posecore")
    assert "timm" in core.components["backbones"]
    for name in OFFICIAL:
        record = host.records[name]
        assert record.status == "ok", record.error
        assert record.error is None and not record.builtin
        assert record.distribution == f"posecore-{name}"
        assert record.version == _declared_version(name) == metadata.version(f"posecore-{name}")
        assert record.module == f"posecore_{name}.plugin"
    assert set(OFFICIAL) | {"posecore"} <= set(host.loaded())
    assert not {r.name for r in host.broken} & {*OFFICIAL, "posecore"}


# -- import failures and strictness ------------------------------------------------------------

EXPLODING = "raise RuntimeError('kaboom at import time')\n"


def test_plugin_failing_on_import_is_reported_and_the_others_keep_working(fake_plugin_dist, on_path) -> None:
    on_path(fake_plugin_dist("exploding", EXPLODING))
    host = load_plugins()
    record = host.records["exploding"]
    assert record.status == "error"
    assert "kaboom at import time" in record.error and "RuntimeError" in record.error
    assert record.distribution == "posecore-fake-exploding" and record.version == "0.1.0"
    assert "exploding" in [r.name for r in host.broken]
    assert all(host.records[name].status == "ok" for name in (*OFFICIAL, "posecore"))
    assert "timm" in host.registries.backbones


@pytest.mark.reliability
def test_strict_loading_raises_naming_the_broken_plugin(fake_plugin_dist, on_path) -> None:
    on_path(fake_plugin_dist("exploding", EXPLODING))
    with pytest.raises(PluginError, match=r"exploding.*kaboom at import time"):
        load_plugins(strict=True)


def test_strict_loading_from_the_environment(fake_plugin_dist, on_path, monkeypatch) -> None:
    on_path(fake_plugin_dist("exploding", EXPLODING))
    monkeypatch.setenv("POSECORE_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"exploding.*kaboom"):
        load_plugins()
    monkeypatch.setenv("POSECORE_STRICT_PLUGINS", "0")
    assert load_plugins().records["exploding"].status == "error"


# -- registration hooks that misbehave ---------------------------------------------------------

# The plugin's posecore_backbones succeeds (collected first), posecore_presets would succeed
# (collected last); posecore_heads misbehaves in between. Nothing of the plugin may remain.
MISBEHAVING_HEADS = {
    "raises": ("raise ValueError('no heads today')", ["ValueError", "no heads today"]),
    "returns-dict": ("return {'name': 'h'}", ["dict"]),
    "returns-str": ("return 'some_head'", ["str"]),
    "returns-none": ("return None", ["NoneType"]),
    "non-component-item": ("return ['not a component']", ["str", "Component"]),
    "preset-among-heads": (
        "return [posecore.Preset('p', 'posecore._presets:simplebaseline_res50_coco')]", ["Preset", "Component"]),
}


@pytest.mark.parametrize("case", list(MISBEHAVING_HEADS))
def test_misbehaving_registration_hook_withdraws_the_whole_plugin(case, fake_plugin_dist, on_path) -> None:
    body, expected = MISBEHAVING_HEADS[case]
    source = TINY_BACKBONE.replace("posecore_fake_good", "posecore_fake_shaky") + f"""

    @posecore.hookimpl
    def posecore_heads():
        {body}


    @posecore.hookimpl
    def posecore_presets():
        return [posecore.Preset("shaky-preset", "posecore._presets:simplebaseline_res50_coco")]
"""
    on_path(fake_plugin_dist("shaky", source))
    host = load_plugins()
    record = host.records["shaky"]
    assert record.status == "error"
    for text in expected:
        assert text in record.error
    assert record.components == {}
    assert "fake_tiny" not in host.registries.backbones
    assert "shaky-preset" not in host.registries.presets
    assert host.registries.provided_by("shaky") == {}
    with pytest.raises(UnknownComponentError, match="fake_tiny"):
        host.registries.backbones.build({"type": "fake_tiny"})
    assert host.pm.get_plugin("shaky") is None, "a broken plugin must be unregistered from pluggy"
    assert all(host.records[name].status == "ok" for name in (*OFFICIAL, "posecore"))
    assert "posecore_heads" in record.error, f"the error should name the hook: {record.error!r}"


def test_registration_hook_may_return_a_tuple(fake_plugin_dist, on_path) -> None:
    source = TINY_BACKBONE.replace("return [posecore.Component(", "return (posecore.Component(").replace(
        'example={"width": 4})]', 'example={"width": 4}),)')
    on_path(fake_plugin_dist("good", source))
    record = load_plugins().records["good"]
    assert record.status == "ok", record.error
    assert record.components == {"backbones": ["fake_tiny"]}


@pytest.mark.reliability
def test_unknown_hook_is_reported_with_a_did_you_mean(fake_plugin_dist, on_path) -> None:
    on_path(fake_plugin_dist("typo", """
        import posecore

        POSECORE_PLUGIN_API = 1

        @posecore.hookimpl
        def posecore_backbone():
            return []
    """))
    host = load_plugins()
    record = host.records["typo"]
    assert record.status == "error"
    assert "posecore_backbone" in record.error
    assert "did you mean 'posecore_backbones'" in record.error
    assert host.pm.get_plugin("typo") is None


def test_hookimpl_with_an_argument_the_spec_lacks_is_reported(fake_plugin_dist, on_path) -> None:
    on_path(fake_plugin_dist("extra_arg", """
        import posecore

        POSECORE_PLUGIN_API = 1

        @posecore.hookimpl
        def posecore_backbones(device):
            return []
    """))
    host = load_plugins()
    record = host.records["extra_arg"]
    assert record.status == "error"
    assert "posecore_backbones" in record.error and "device" in record.error
    assert record.components == {}


def test_plugin_failing_hook_validation_contributes_no_cli_options(fake_plugin_dist, on_path) -> None:
    """pluggy validates hook by hook (alphabetically) and leaves the plugin registered when one
    fails; a plugin reported as broken must not keep extending the command line."""
    on_path(fake_plugin_dist("half_valid", """
        import posecore

        POSECORE_PLUGIN_API = 1

        @posecore.hookimpl
        def posecore_cli_arguments(command, parser):
            parser.add_argument("--half-valid-option")

        @posecore.hookimpl
        def posecore_models(device):
            return []
    """))
    host = load_plugins()
    assert host.records["half_valid"].status == "error"
    parser = argparse.ArgumentParser()
    host.add_cli_arguments("predict", parser)
    assert "--half-valid-option" not in parser.format_help()
    assert host.pm.get_plugin("half_valid") is None


# -- plugin API versions -----------------------------------------------------------------------

API_CASES = {
    "missing": ("", "does not declare POSECORE_PLUGIN_API"),
    "string": ("POSECORE_PLUGIN_API = '1'", "must be an int; got '1'"),
    "bool": ("POSECORE_PLUGIN_API = True", "must be an int; got True"),
    "future": (f"POSECORE_PLUGIN_API = {PLUGIN_API_VERSION + 1}", "upgrade posecore"),
    "too-old": (f"POSECORE_PLUGIN_API = {MIN_PLUGIN_API_VERSION - 1}", "upgrade the plugin"),
}


@pytest.mark.parametrize("case", list(API_CASES))
def test_plugin_api_version_is_checked(case, fake_plugin_dist, on_path) -> None:
    declaration, message = API_CASES[case]
    source = TINY_BACKBONE.replace("posecore_fake_good", "posecore_fake_versioned").replace(
        "POSECORE_PLUGIN_API = 1", declaration)
    on_path(fake_plugin_dist("versioned", source))
    host = load_plugins()
    record = host.records["versioned"]
    assert record.status == "error"
    assert message in record.error and "versioned" in record.error
    assert "fake_tiny" not in host.registries.backbones
    assert host.pm.get_plugin("versioned") is None
    with pytest.raises(PluginError, match=message.replace("(", r"\(")):
        load_plugins(strict=True)


def test_future_api_message_names_both_versions(fake_plugin_dist, on_path) -> None:
    on_path(fake_plugin_dist("versioned", f"POSECORE_PLUGIN_API = {PLUGIN_API_VERSION + 1}\n"))
    error = load_plugins().records["versioned"].error
    assert f"plugin API {PLUGIN_API_VERSION + 1}" in error and f"API {PLUGIN_API_VERSION};" in error


# -- name clashes ------------------------------------------------------------------------------

CLASHING = """
    from torch import nn

    import posecore

    POSECORE_PLUGIN_API = 1


    class Net(nn.Module):
        owner = "{owner}"

        def __init__(self, width: int = 2) -> None:
            super().__init__()
            self.out_channels = width
            self.conv = nn.Conv2d(3, width, 1)


    @posecore.hookimpl
    def posecore_backbones():
        return [posecore.Component("{component}", Net)]


    @posecore.hookimpl
    def posecore_heads():
        return [posecore.Component("{owner}_head", Net)]
"""


def test_two_plugins_registering_the_same_name(fake_plugin_dist, on_path) -> None:
    # entry points load in name order: alpha first, then beta
    fake_plugin_dist("alpha", CLASHING.format(owner="alpha", component="shared_net"))
    on_path(fake_plugin_dist("beta", CLASHING.format(owner="beta", component="shared_net")))
    host = load_plugins()
    assert host.records["alpha"].status == "ok"
    beta = host.records["beta"]
    assert beta.status == "error"
    assert "'alpha'" in beta.error and "'beta'" in beta.error and "shared_net" in beta.error
    assert host.registries.backbones.provider("shared_net") == "alpha"
    assert host.registries.backbones.build({"type": "shared_net", "width": 3}).owner == "alpha"
    assert "beta_head" not in host.registries.heads  # beta is withdrawn entirely
    assert host.records["alpha"].components == {"backbones": ["shared_net"], "heads": ["alpha_head"]}


def test_a_plugin_cannot_take_a_builtin_name(fake_plugin_dist, on_path) -> None:
    on_path(fake_plugin_dist("usurper", CLASHING.format(owner="usurper", component="timm")))
    host = load_plugins()
    record = host.records["usurper"]
    assert record.status == "error"
    assert "'posecore'" in record.error and "'usurper'" in record.error
    assert host.registries.backbones.provider("timm") == "posecore"


# -- autoload, enable, block -------------------------------------------------------------------


def test_autoload_off_loads_only_enabled_plugins(fake_plugin_dist, on_path, monkeypatch) -> None:
    on_path(fake_plugin_dist("good", TINY_BACKBONE))
    monkeypatch.setenv("POSECORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    host = load_plugins()
    assert host.records["posecore"].status == "ok"
    for name in (*OFFICIAL, "good"):
        assert host.records[name].status == "not loaded"
        assert host.records[name].distribution is not None
    assert "fake_tiny" not in host.registries.backbones
    assert "posecore_fake_good" not in sys.modules
    assert host.loaded() == ["posecore"]

    host = load_plugins(enable=["posebh"])
    assert host.records["posebh"].status == "ok"
    assert host.records["posebh"].version == _declared_version("posebh")
    assert {n for n, r in host.records.items() if r.status == "ok" and not r.builtin} == {"posebh"}
    assert {n for n, r in host.records.items() if r.status == "not loaded"} >= set(OFFICIAL) - {"posebh"} | {"good"}


def test_autoload_false_argument_overrides_environment(monkeypatch) -> None:
    assert load_plugins(autoload=False).records["pgvl"].status == "not loaded"
    monkeypatch.setenv("POSECORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert load_plugins(autoload=True).records["pgvl"].status == "ok"


def test_block_argument(fake_plugin_dist, on_path) -> None:
    on_path(fake_plugin_dist("exploding", EXPLODING))
    host = load_plugins(block=["pgvl", "exploding"])
    assert host.records["pgvl"].status == "blocked"
    assert host.records["exploding"].status == "blocked"  # never imported, so not an error
    assert host.records["exploding"].error is not None and "blocked" in host.records["exploding"].error
    assert "posecore_fake_exploding" not in sys.modules
    assert all(host.records[n].status == "ok" for n in OFFICIAL if n != "pgvl")


def test_block_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("POSECORE_DISABLED_PLUGINS", "pgvl, vlpose")
    host = load_plugins()
    assert host.records["pgvl"].status == "blocked"
    assert host.records["vlpose"].status == "blocked"
    assert host.records["posebh"].status == "ok"
    with pytest.raises(PluginError, match="blocked"):
        host.require("pgvl")


def test_enabling_a_plugin_that_is_not_installed(monkeypatch) -> None:
    monkeypatch.setenv("POSECORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    with pytest.raises(PluginError, match=r"posbh.*did you mean 'posebh'"):
        load_plugins(enable=["posbh"])
    with pytest.raises(PluginError, match="not installed: nosuchplugin"):
        load_plugins(enable=["nosuchplugin"], autoload=True)


# -- a good plugin -----------------------------------------------------------------------------


def test_good_plugin_component_is_buildable(fake_plugin_dist, on_path) -> None:
    import torch

    on_path(fake_plugin_dist("good", TINY_BACKBONE, dist="posecore-good-thing", version="2.3.4"))
    host = load_plugins()
    record = host.records["good"]
    assert (record.status, record.distribution, record.version) == ("ok", "posecore-good-thing", "2.3.4")
    assert record.module == "posecore_fake_good"
    assert record.components == {"backbones": ["fake_tiny"]}
    assert host.registries.backbones.provider("fake_tiny") == "good"

    backbone = host.registries.backbones.build({"type": "fake_tiny", "width": "6"})  # "6" structured to int
    assert type(backbone).__name__ == "TinyBackbone" and backbone.out_channels == 6
    assert backbone(torch.zeros(2, 3, 16, 16)).shape == (2, 6, 8, 8)
    assert host.registries.backbones.build("fake_tiny", stride=1)(torch.zeros(1, 3, 8, 8)).shape == (1, 4, 8, 8)
    with pytest.raises(ConfigError, match=r"no argument 'widht'.*did you mean 'width'"):
        host.registries.backbones.build({"type": "fake_tiny", "widht": 6})
    with pytest.raises(ConfigError, match="'wide' is not a valid int"):
        host.registries.backbones.build({"type": "fake_tiny", "width": "wide"})


# -- presets -----------------------------------------------------------------------------------

PRESETS = """
    import posecore

    POSECORE_PLUGIN_API = 1

    @posecore.hookimpl
    def posecore_presets():
        return [
            posecore.Preset("{name}-a", "posecore._presets:simplebaseline_res50_coco", default={a}),
            posecore.Preset("{name}-b", "posecore._presets:simplebaseline_res50_coco", default={b}),
            posecore.Preset("{name}-c", "posecore._presets:simplebaseline_res50_coco"),
        ]
"""


@pytest.mark.reliability
def test_several_default_presets_is_an_error(fake_plugin_dist, on_path) -> None:
    on_path(fake_plugin_dist("greedy", PRESETS.format(name="greedy", a=True, b=True)))
    host = load_plugins()
    record = host.records["greedy"]
    assert record.status == "error"
    assert "several presets as default" in record.error
    assert "greedy-a" in record.error and "greedy-b" in record.error
    assert not any(n.startswith("greedy-") for n in host.registries.presets.names())


def test_default_preset(fake_plugin_dist, on_path) -> None:
    on_path(fake_plugin_dist("modest", PRESETS.format(name="modest", a=False, b=True)))
    on_path(fake_plugin_dist("shy", PRESETS.format(name="shy", a=False, b=False)))
    host = load_plugins()
    assert host.records["modest"].status == "ok", host.records["modest"].error
    assert host.records["modest"].components == {"presets": ["modest-a", "modest-b", "modest-c"]}
    preset = host.default_preset("modest")
    assert preset.name == "modest-b" and preset.default
    assert preset.load().name == "simplebaseline-res50-coco-256x192"
    with pytest.raises(PluginError, match="marks no preset as default"):
        host.default_preset("shy")
    with pytest.raises(PluginError, match=r"no plugin named 'modets'.*did you mean 'modest'"):
        host.default_preset("modets")


# -- the CLI hook ------------------------------------------------------------------------------

SUPPORT_OPTION = """
    import posecore

    POSECORE_PLUGIN_API = 1

    @posecore.hookimpl
    def posecore_cli_arguments(command, parser):
        if command == "predict":
            parser.add_argument("--exemplar", metavar="IMAGES", help="exemplar images for few-shot prediction")
"""


def _posecore(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "posecore", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def test_cli_arguments_hook_extends_predict_help(fake_plugin_dist, plugin_env, tmp_path) -> None:
    env = plugin_env(fake_plugin_dist("exemplar", SUPPORT_OPTION))
    result = _posecore("predict", "--help", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--exemplar" in result.stdout, "a plugin's option must appear under the command's --help"


def test_cli_arguments_hook_extends_predict_parsing(fake_plugin_dist, plugin_env, tmp_path) -> None:
    args = ("predict", "--preset", "simplebaseline-res50-coco-256x192", "--exemplar", "imgs/")
    with_plugin = _posecore(*args, env=plugin_env(fake_plugin_dist("exemplar", SUPPORT_OPTION)), cwd=tmp_path)
    without = _posecore(*args, env=plugin_env(), cwd=tmp_path)
    # with the plugin the option parses, and predict gets as far as asking for its inputs
    assert "unrecognized arguments" not in with_plugin.stderr
    assert "give at least one INPUT" in with_plugin.stderr and "Traceback" not in with_plugin.stderr
    # without it, argparse rejects the option
    assert without.returncode == 2 and "unrecognized arguments: --exemplar" in without.stderr


def test_cli_block_option_keeps_plugins_out(fake_plugin_dist, plugin_env, tmp_path) -> None:
    """``-p no:NAME`` on the command line: a blocked plugin is never imported (so one that raises
    on import does not fail ``--strict-plugins``) and adds no options to an extensible command."""
    fake_plugin_dist("exploding", EXPLODING)
    env = plugin_env(fake_plugin_dist("exemplar", SUPPORT_OPTION))
    unblocked = _posecore("plugins", "--json", "--strict-plugins", env=env, cwd=tmp_path)
    assert unblocked.returncode == 2 and "kaboom at import time" in unblocked.stderr
    blocked = _posecore("plugins", "--json", "--strict-plugins", "-p", "no:exploding", "-p", "no:pgvl", env=env,
                        cwd=tmp_path)
    assert blocked.returncode == 0, blocked.stderr
    status = {entry["name"]: entry["status"] for entry in json.loads(blocked.stdout)["plugins"]}
    assert status["exploding"] == status["pgvl"] == "blocked"
    assert status["exemplar"] == status["posebh"] == "ok"
    assert "--exemplar" in _posecore("predict", "--help", env=env, cwd=tmp_path).stdout
    help_text = _posecore("predict", "--help", "-p", "no:exemplar", "-p", "no:exploding", env=env, cwd=tmp_path)
    assert help_text.returncode == 0, help_text.stderr
    assert "--exemplar" not in help_text.stdout


def test_cli_arguments_hook_in_process(fake_plugin_dist, on_path) -> None:
    on_path(fake_plugin_dist("exemplar", SUPPORT_OPTION))
    host = load_plugins()
    assert host.records["exemplar"].status == "ok", host.records["exemplar"].error
    predict, run = argparse.ArgumentParser(), argparse.ArgumentParser()
    host.add_cli_arguments("predict", predict)
    host.add_cli_arguments("run", run)
    assert predict.parse_args(["--exemplar", "imgs/"]).exemplar == "imgs/"
    assert "--exemplar" not in run.format_help()

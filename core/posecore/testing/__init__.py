"""Contract checks for plugin authors (and for the core's own registry-driven test-suite).

Run them in your plugin's tests::

    import pytest
    from posecore.testing import contract_cases

    @pytest.mark.parametrize("case", contract_cases(plugin="myplugin"), ids=str)
    def test_contract(case, tmp_path):
        case.run(tmp_path)

Every component your plugin registers gets checked with its declared small ``example``:
backbones and heads run forward and backward, heads decode K keypoints, datasets yield samples
of the documented schema, detectors find boxes of the classes asked for in two images, models compute finite losses, back-propagate to every trainable
parameter and predict, codecs give keypoints back through encode and decode within the tolerance
of their kind, metrics give the same table whatever the order of the results and with the repeats
of multi-process padding, presets validate against the registries and round-trip through YAML
unchanged. :func:`check_model_step` runs the models' check on a model and batch of your own (a
shrunk copy of each preset, say). :func:`model_and_batch` builds a config's model and a batch of
its training samples as the trainer would, and :func:`loss_history` trains it for a few hundred
steps and returns every step's losses, for the test to judge.

A tab of ``posecore app`` is tested in a real browser (Debian's chromium, driven by Selenium):
:func:`served_app` runs the app, :func:`chromium_driver` opens the browser (or raises
:class:`BrowserUnavailable`, to skip with), and :func:`open_tab`, :func:`upload`,
:func:`click_image` and :func:`wait_for_text` act on the page.
"""

from posecore.testing._browser import (
    BrowserUnavailable,
    chromium_driver,
    click_image,
    open_tab,
    served_app,
    upload,
    wait_for_text,
)
from posecore.testing._contracts import (
    ContractCase,
    check_backbone,
    check_codec,
    check_dataset,
    check_detector,
    check_head,
    check_metric,
    check_model,
    check_model_step,
    check_preset,
    contract_cases,
)
from posecore.testing._training import loss_history, model_and_batch

__all__ = [
    "BrowserUnavailable",
    "ContractCase",
    "check_backbone",
    "check_codec",
    "check_dataset",
    "check_detector",
    "check_head",
    "check_metric",
    "check_model",
    "check_model_step",
    "check_preset",
    "chromium_driver",
    "click_image",
    "contract_cases",
    "loss_history",
    "model_and_batch",
    "open_tab",
    "served_app",
    "upload",
    "wait_for_text",
]

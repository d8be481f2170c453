"""``posecore app``: the browser app, on Gradio (``pip install 'posecore[app]'``).

Every tab is an :class:`~posecore.AppTab` declared through the ``posecore_app_tabs`` hook, the
core's own "Predict" tab too, so a plugin's tab (Pose Anything's click-to-define category) is
assembled exactly like the core's. A tab predicts through the same path as ``posecore predict``:
it builds a :class:`~posecore.PredictRequest` with :meth:`AppContext.request` and hands it to a
predictor, so what the app shows and writes is what the command writes.

Neither Gradio nor torch is imported at module level: ``posecore.AppContext`` is importable
without the ``app`` extra, and only assembling the app needs it.
"""

from __future__ import annotations

import functools
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from posecore._errors import ConfigError, PluginError, PosecoreError
from posecore._plugins import BUILTIN_PLUGIN

if TYPE_CHECKING:
    from posecore._plugins import PluginHost
    from posecore._predict import PredictRequest

__all__ = ["AppContext", "build_app", "import_gradio", "predict_tab"]

#: Where the app listens: this machine only (the app reads and writes local files).
HOST = "127.0.0.1"
#: The Predict tab's choice of no detector.
WHOLE_IMAGE = "whole image"


@attrs.frozen
class AppContext:
    """What every tab of ``posecore app`` is given: the model the app serves and where results go.

    Attributes:
        checkpoint: the weights (``None``: the preset's random initialisation).
        preset: the preset named with ``--preset`` (``None``: the checkpoint's own config, or the
            plugin's default preset, as :func:`posecore.load_model` chooses).
        plugin: the plugin named with ``--plugin``, if any.
        device: ``"cpu"``, ``"cuda"``, ... (``None``: CUDA when available).
        output: the folder each prediction writes its own subfolder into.
        predictor: what ``posecore predict`` would call for this model: its preset's own
            :class:`~posecore.Predictor`, or the core's top-down one.
        detector: the registered detector that finds the instances of an upload, as in
            ``posecore predict`` (``None``: the whole image is the one instance).
    """

    checkpoint: str | None
    preset: str | None
    plugin: str | None
    device: str | None
    output: Path
    predictor: Callable[[PredictRequest], int | None]
    detector: str | None = None

    def request(self, inputs: Sequence[str | Path], label: str, **fields: Any) -> PredictRequest:
        """A :class:`~posecore.PredictRequest` for ``inputs`` with the served model, writing into a
        new folder ``output/<label>-*``; ``fields`` set the others (``flip_test``, ``options``)."""
        from posecore._predict import PredictRequest, expand_inputs

        files = tuple(expand_inputs(inputs))  # checked before any folder is made
        self.output.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=self.output))
        return PredictRequest(inputs=files, output=folder, checkpoint=self.checkpoint,
                              preset=self.preset, plugin=self.plugin, device=self.device, **fields)

    def describe(self) -> str:
        """One line naming the served model, for the app's header."""
        model = self.checkpoint or f"preset {self.preset or 'default'} with random weights (no --checkpoint)"
        return f"{model} on {self.device or 'the default device'}"


def import_gradio() -> Any:
    """The ``gradio`` module, or a clear error saying how to install it."""
    try:
        import gradio
    except ImportError as exc:
        raise ConfigError(f"posecore app needs Gradio: pip install 'posecore[app]' ({exc})") from None
    return gradio


def build_app(context: AppContext, host: PluginHost) -> Any:
    """The app: one tab per registered :class:`~posecore.AppTab`, the core's first.

    A tab whose ``build`` raises is reported in the tab and on stderr and the app goes on without
    it (with ``--strict-plugins`` it is an error, as a broken plugin is).
    """
    gr = import_gradio()
    tabs = host.registries.app_tabs
    order = sorted(tabs.names(), key=lambda name: (tabs.provider(name) != BUILTIN_PLUGIN, tabs.provider(name), name))
    with gr.Blocks(title="posecore", analytics_enabled=False) as app:
        gr.Markdown(f"## posecore\nServing {context.describe()}.")
        with gr.Tabs():
            for name in order:
                tab, provider = tabs.get(name), tabs.provider(name)
                with gr.Tab(tab.title, id=name):
                    try:
                        tab.resolve()(context)
                    except Exception as exc:
                        message = f"plugin {provider!r}: app tab {name!r} failed: {type(exc).__name__}: {exc}"
                        if host.strict:
                            raise PluginError(message) from exc
                        print(f"posecore app: {message}", file=sys.stderr)
                        gr.Markdown(f"**This tab could not be built.** {message}", elem_classes="tab-error")
    return app


def predict_tab(context: AppContext) -> None:
    """The core's tab: an image or a video in, its skeletons drawn and the COCO results out."""
    import gradio as gr

    from posecore._plugins import get_host
    from posecore._predict import IMAGE_SUFFIXES, VIDEO_SUFFIXES, predict_topdown

    if context.predictor is not predict_topdown:
        gr.Markdown("This model predicts from more than an image (its preset has a predictor of its own, "
                    f"`{getattr(context.predictor, '__module__', '?')}`): use its plugin's tab.")
        return
    with gr.Row():
        with gr.Column():
            upload = gr.File(label="Image or video", file_types=sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES),
                             elem_id="predict-input")
            threshold = gr.Slider(0.0, 1.0, value=0.3, step=0.05, label="Draw keypoints scoring above")
            flip = gr.Checkbox(value=True, label="Flip test (average with the mirrored image)")
            boxes = gr.Dropdown([WHOLE_IMAGE, *get_host().registries.detectors.names()],
                                value=context.detector or WHOLE_IMAGE, label="Boxes from", elem_id="predict-boxes")
            run = gr.Button("Predict", variant="primary", elem_id="predict-run")
        with gr.Column():
            image = gr.Image(label="Skeletons", interactive=False, elem_id="predict-image")
            video = gr.Video(label="Skeletons", interactive=False, visible=False, elem_id="predict-video")
            results = gr.File(label="COCO keypoint results (predictions.json)", elem_id="predict-results")
            status = gr.Markdown(elem_id="predict-status")
    run.click(functools.partial(_predict, context), [upload, threshold, flip, boxes], [image, video, results, status])


def _predict(context: AppContext, path: str | None, threshold: float, flip: bool,
             boxes: str | None = None) -> tuple[Any, Any, Any, str]:
    """One click of "Predict": the upload through the model's predictor, as ``posecore predict``,
    its instances found by the detector ``boxes`` names (default: the context's), or the whole image."""
    import json

    import gradio as gr

    from posecore._predict import VIDEO_SUFFIXES

    if not path:
        return None, gr.update(visible=False), None, "Upload an image or a video first."
    source = Path(path)
    try:
        chosen = context.detector if boxes is None else None if boxes == WHOLE_IMAGE else boxes
        request = context.request([source], "predict", keypoint_threshold=float(threshold), flip_test=bool(flip),
                                  detector=chosen)
        failed = context.predictor(request)
    except PosecoreError as exc:
        return None, gr.update(visible=False), None, f"**Error:** {exc}"
    is_video = source.suffix.lower() in VIDEO_SUFFIXES
    drawn = request.output / f"{source.stem}{'.mp4' if is_video else '.jpg'}"
    if failed or not drawn.is_file():
        return None, gr.update(visible=False), None, f"**Error:** {source.name} could not be predicted (see the terminal)."
    rows = json.loads((request.output / "predictions.json").read_text(encoding="utf-8"))
    found = f"boxes from detector {chosen}" if chosen else "the whole image is the one box"
    summary = f"{len(rows)} instance(s) in {source.name} ({found}); results and pictures in `{request.output}`"
    if is_video:
        return None, gr.update(value=str(drawn), visible=True), str(request.output / "predictions.json"), summary
    return str(drawn), gr.update(value=None, visible=False), str(request.output / "predictions.json"), summary

"""What plugins declare: components, presets, published results and converters.

These are plain frozen attrs classes so that a plugin can declare them at import time without
importing torch; factories may be given as ``"module:attribute"`` strings and are imported only
when something is built.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from posecore._errors import PluginError

if TYPE_CHECKING:
    from posecore.config import ExperimentConfig

__all__ = ["AppTab", "Component", "Converter", "Nested", "Preset", "PublishedResult", "resolve_reference"]

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.+\-]*$")


def _check_name(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            f"{type(instance).__name__}.{attribute.name} must be lower-case letters, digits and "
            f"'_.+-', starting with a letter or digit; got {value!r}"
        )


def _check_factory(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if isinstance(value, str):
        if ":" not in value:
            raise ValueError(
                f"{type(instance).__name__}.{attribute.name} as a string must be "
                f"'module:attribute'; got {value!r}"
            )
    elif not callable(value):
        raise TypeError(
            f"{type(instance).__name__}.{attribute.name} must be a callable or a "
            f"'module:attribute' string; got {type(value).__name__}"
        )


def resolve_reference(reference: Callable[..., Any] | str) -> Callable[..., Any]:
    """Import a ``"module:attribute"`` reference (dotted attributes allowed); pass callables through."""
    if not isinstance(reference, str):
        return reference
    module_name, _, qualname = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"cannot import {reference!r}: {exc}") from exc
    if not callable(target):
        raise PluginError(f"{reference!r} is not callable")
    return target


@attrs.frozen
class Component:
    """A buildable component of one kind (backbone, head, dataset, ...).

    Attributes:
        name: the registry name, unique per kind across all plugins (``"vit_moe"``).
        factory: a callable, or ``"module:attribute"``; its typed signature is the component's
            configuration schema, so configs are checked against it (names and types).
        description: one line shown by ``posecore plugins --verbose``.
        example: keyword arguments that build a *small* instance; the contract checks in
            :mod:`posecore.testing` build every registered component with them. A component
            that needs files (a dataset) gives instead a callable, or ``"module:attribute"``,
            that writes a tiny example into the directory it is passed and returns the kwargs.
    """

    name: str = attrs.field(validator=_check_name)
    factory: Callable[..., Any] | str = attrs.field(validator=_check_factory)
    description: str = ""
    example: Mapping[str, Any] | Callable[[Path], Mapping[str, Any]] | str = attrs.field(factory=dict)

    @example.validator
    def _check_example(self, attribute: attrs.Attribute, value: object) -> None:
        if not isinstance(value, Mapping):
            _check_factory(self, attribute, value)

    def resolve(self) -> Callable[..., Any]:
        """Return the factory callable, importing it if it was given as a string."""
        return resolve_reference(self.factory)

    def example_kwargs(self, workdir: Path) -> dict[str, Any]:
        """The example's keyword arguments, writing its files into ``workdir`` if it has any."""
        if isinstance(self.example, Mapping):
            return dict(self.example)
        return dict(resolve_reference(self.example)(workdir))


@attrs.frozen
class PublishedResult:
    """A figure a paper publishes for a configuration, e.g. COCO val AP 75.8."""

    dataset: str
    split: str
    metric: str
    value: float
    source: str = ""

    def __str__(self) -> str:
        return f"{self.dataset} {self.split} {self.metric} {self.value:g}"


@attrs.frozen
class Preset:
    """A complete, named experiment: model, data, codec, schedule and evaluation.

    Attributes:
        name: registry name (``"posebh-b-coco-256x192"``).
        config: the :class:`~posecore.config.ExperimentConfig`, or a zero-argument callable /
            ``"module:attribute"`` returning it (keeps plugin loading cheap).
        description: one line for listings.
        published: the figures this preset should reach, as published.
        default: whether ``posecore run --plugin NAME`` uses this preset when none is given.
        predictor: for methods whose prediction is more than "images in, keypoints out" (a
            support set, a text prompt): a :class:`~posecore.Predictor`, a callable or
            ``"module:attribute"`` that takes over ``posecore predict`` for this preset. It is
            called with a :class:`~posecore.PredictRequest` (the options the plugin added through
            ``posecore_cli_arguments`` are in its ``options``) and returns the exit status.
            ``None``: the generic top-down prediction.
    """

    name: str = attrs.field(validator=_check_name)
    config: Any = attrs.field()
    description: str = ""
    published: tuple[PublishedResult, ...] = attrs.field(default=(), converter=tuple)
    default: bool = False
    predictor: Callable[..., Any] | str | None = attrs.field(default=None)

    @predictor.validator
    def _check_predictor(self, attribute: attrs.Attribute, value: object) -> None:
        if value is not None:
            _check_factory(self, attribute, value)

    def load(self) -> ExperimentConfig:
        """Return the preset's experiment config, building it if it was given lazily."""
        from posecore.config import ExperimentConfig

        config = self.config
        if isinstance(config, str) or callable(config):
            config = resolve_reference(config)()
        if not isinstance(config, ExperimentConfig):
            raise PluginError(
                f"preset {self.name!r} must give an ExperimentConfig; got {type(config).__name__}"
            )
        return config


@attrs.frozen
class Converter:
    """Turns a foreign checkpoint's ``state_dict`` into posecore's key layout.

    The function returns a plain dict, or a :class:`posecore._checkpoint.ConvertedStateDict` when
    it drops foreign keys on purpose (each with its reason, so key reports show them instead of
    calling them unexpected). Give the function a ``matches(state_dict) -> bool`` attribute to take
    part in recognition: ``posecore convert`` without ``--converter``, and loading a foreign file,
    try every converter that says yes and keep the best fit.

    Attributes:
        name: registry name, e.g. ``"vitpose-mmpose0x"``.
        function: ``(state_dict) -> state_dict`` or ``"module:attribute"``.
        description: which checkpoints it reads (``"ViTPose / mmpose 0.x: backbone.*, keypoint_head.*"``).
    """

    name: str = attrs.field(validator=_check_name)
    function: Callable[..., Any] | str = attrs.field(validator=_check_factory)
    description: str = ""

    def resolve(self) -> Callable[..., Any]:
        return resolve_reference(self.function)


@attrs.frozen
class Nested:
    """Marks a factory parameter as a nested component built from its own config.

    Use it in ``typing.Annotated``::

        def topdown_heatmap(backbone: Annotated[nn.Module, Nested("backbones")], ...):

    The config then holds ``backbone: {type: vit, depth: 12}``; posecore validates that spec
    against the ``vit`` factory and passes the built module. A tuple or list annotation
    (``Annotated[tuple[nn.Module, ...], Nested("heads")]``) builds each element.
    """

    kind: str


@attrs.frozen
class AppTab:
    """A tab of ``posecore app``, the browser app (``pip install 'posecore[app]'``).

    Declared, not built, at plugin loading, so listing plugins imports neither Gradio nor torch.

    Attributes:
        name: registry name, unique across plugins (``"poseanything"``).
        title: the tab's label in the app.
        build: a callable, or ``"module:attribute"``, called once as ``build(context)`` while the
            app is assembled, inside the tab (a ``gradio.Tab``): it adds the tab's Gradio
            components and events. ``context`` is a :class:`posecore.AppContext`: the model the
            app serves, the device and the folder results go to.
        description: one line for ``posecore plugins -v``.
    """

    name: str = attrs.field(validator=_check_name)
    title: str = attrs.field()
    build: Callable[..., Any] | str = attrs.field(validator=_check_factory)
    description: str = ""

    def resolve(self) -> Callable[..., Any]:
        return resolve_reference(self.build)

"""Pose Anything's tab of ``posecore app``: define a category by clicks, then find it on queries.

Upload a support image and click its keypoints in order; switch to joining and click two
keypoints at a time to link them into the skeleton; name the category and save it. The saved file
is a category file (:func:`~posecore_poseanything.category.save_category`), the one ``posecore
predict --plugin poseanything --category FILE`` takes. "Find the keypoints" saves the definition
the same way and runs the plugin's own predictor on the query images with that file, so the tab
shows and writes exactly what the command would.

Gradio is imported only inside :func:`build_tab`, which the app calls. (No ``from __future__ import
annotations`` here: Gradio recognises the click handler's ``gr.SelectData`` parameter by its
evaluated annotation.)
"""

import functools
from typing import Any

import numpy as np

import posecore
from posecore import PosecoreError
from posecore_poseanything.category import Category, SupportShot, save_category
from posecore_poseanything.predictor import predict_command

__all__ = ["build_tab"]

ADD, JOIN = "Add keypoints", "Join two keypoints"


def _empty(image: np.ndarray | None = None) -> dict[str, Any]:
    """The definition being clicked: the support image, its keypoints, the links, and the first
    keypoint of a link waiting for its second."""
    return {"image": image, "points": [], "links": [], "pending": None}


def build_tab(context: posecore.AppContext) -> None:
    import gradio as gr

    if context.predictor is not predict_command:
        gr.Markdown("This tab needs a Pose Anything model: `posecore app --plugin poseanything "
                    "--checkpoint W.pth` (a released file or a posecore best.pth).")
        return
    gr.Markdown("1. Upload a **support** image and click its keypoints in order.\n"
                "2. Choose *Join two keypoints* and click pairs of keypoints to link them into the skeleton.\n"
                "3. Name and save the category: the file is what `posecore predict --plugin poseanything "
                "--category FILE` takes.\n"
                "4. Upload **query** images of the same kind of object and find the keypoints.")
    state = gr.State(_empty())
    with gr.Row():
        with gr.Column():
            support = gr.Image(label="Support image: click its keypoints", type="numpy", sources=["upload"],
                               elem_id="pa-support")
            mode = gr.Radio([ADD, JOIN], value=ADD, label="A click on the support", elem_id="pa-mode")
            with gr.Row():
                undo = gr.Button("Undo", elem_id="pa-undo")
                clear = gr.Button("Clear keypoints", elem_id="pa-clear")
            summary = gr.Markdown("No keypoint yet.", elem_id="pa-definition")
            name = gr.Textbox("my-category", label="Category name", elem_id="pa-name")
            save = gr.Button("Save category", elem_id="pa-save")
            saved = gr.File(label="Category file and its support image", file_count="multiple", elem_id="pa-saved")
        with gr.Column():
            queries = gr.File(label="Query images", file_count="multiple", file_types=["image"], elem_id="pa-queries")
            run = gr.Button("Find the keypoints", variant="primary", elem_id="pa-run")
            gallery = gr.Gallery(label="Keypoints found", columns=2, object_fit="contain", elem_id="pa-gallery")
            results = gr.File(label="predictions.json", elem_id="pa-results")
            status = gr.Markdown(elem_id="pa-status")
    shown = [state, support, summary]
    support.upload(lambda image: _view(_empty(image)), support, shown)
    support.clear(lambda: (_empty(), None, "No keypoint yet."), None, shown)

    def clicked(definition: dict[str, Any], mode: str, event: gr.SelectData) -> tuple[dict[str, Any], Any, str]:
        return _click(definition, mode, event.index)

    support.select(clicked, [state, mode], shown)
    undo.click(_undo, state, shown)
    clear.click(lambda definition: _view(_empty(definition["image"])), state, shown)
    save.click(functools.partial(_save, context), [state, name], [saved, status])
    run.click(functools.partial(_run, context), [state, name, queries], [gallery, results, status])


def _click(definition: dict[str, Any], mode: str, index: Any) -> tuple[dict[str, Any], Any, str]:
    """A click on the support: a new keypoint there, or one end of a link (the nearest keypoint)."""
    if definition["image"] is None:
        return definition, None, "Upload a support image first."
    x, y = (float(v) for v in index)
    points = definition["points"]
    if mode == ADD:
        points.append([x, y])
        definition["pending"] = None
    elif points:
        nearest = int(np.argmin([np.hypot(px - x, py - y) for px, py in points]))
        first = definition["pending"]
        if first is None:
            definition["pending"] = nearest
        else:
            link = [min(first, nearest), max(first, nearest)]
            if first != nearest and link not in definition["links"]:
                definition["links"].append(link)
            definition["pending"] = None
    return _view(definition)


def _undo(definition: dict[str, Any]) -> tuple[dict[str, Any], Any, str]:
    """Forget the half-made link, else the last link, else the last keypoint."""
    if definition["pending"] is not None:
        definition["pending"] = None
    elif definition["links"]:
        definition["links"].pop()
    elif definition["points"]:
        definition["points"].pop()
    return _view(definition)


def _category(definition: dict[str, Any], name: str) -> Category:
    if definition["image"] is None or not definition["points"]:
        raise posecore.ConfigError("upload a support image and click at least one keypoint on it")
    image = definition["image"]
    height, width = image.shape[:2]
    points = np.asarray(definition["points"], np.float32)
    shot = SupportShot(image, points, np.ones(len(points), np.float32),
                       np.array([0.0, 0.0, width - 1.0, height - 1.0], np.float32), "support")
    return Category(name.strip() or "my-category", (shot,), tuple((a, b) for a, b in definition["links"]))


def _view(definition: dict[str, Any]) -> tuple[dict[str, Any], Any, str]:
    """The state, the support drawn with its numbered keypoints and links, and a summary."""
    image = definition["image"]
    if image is None:
        return definition, None, "No keypoint yet."
    points, links, pending = definition["points"], definition["links"], definition["pending"]
    if not points:
        return definition, image, "No keypoint yet: click the support image."
    drawn = _numbered(posecore.draw_pose(image, np.asarray(points), skeleton=[tuple(link) for link in links]),
                      points, pending)
    text = (f"{len(points)} keypoint(s): " + ", ".join(f"{i} ({x:.0f}, {y:.0f})" for i, (x, y) in enumerate(points))
            + f". Skeleton: {', '.join(f'{a}-{b}' for a, b in links) or 'no link yet'}.")
    if pending is not None:
        text += f" Linking from keypoint {pending}: click the other end."
    return definition, drawn, text


def _numbered(image: np.ndarray, points: list[list[float]], pending: int | None) -> np.ndarray:
    """Each keypoint's index beside it (the order the category keeps), and a ring on a link's
    first end."""
    import cv2

    scale = max(image.shape[:2]) / 500
    for index, (x, y) in enumerate(points):
        anchor = (int(x + 6 * scale), int(y - 6 * scale))
        for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(image, str(index), anchor, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, colour,
                        max(1, int(thickness * scale)), cv2.LINE_AA)
    if pending is not None:
        x, y = points[pending]
        cv2.circle(image, (int(x), int(y)), int(12 * scale) + 4, (255, 255, 0), max(1, int(2 * scale)), cv2.LINE_AA)
    return image


def _save(context: posecore.AppContext, definition: dict[str, Any], name: str) -> tuple[Any, str]:
    try:
        path = save_category(_category(definition, name), context.output / "categories")
    except PosecoreError as exc:
        return None, f"**Error:** {exc}"
    images = sorted(path.parent.glob(f"{path.stem}-support*.png"))
    return [str(path), *map(str, images)], (f"Saved `{path}`: `posecore predict --plugin poseanything "
                                            f"--checkpoint W.pth --category {path} QUERY...` finds it too.")


def _run(context: posecore.AppContext, definition: dict[str, Any], name: str,
         queries: list[str] | None) -> tuple[Any, Any, str]:
    """Save the definition, then the plugin's predictor on the queries with that category file."""
    if not queries:
        return None, None, "Upload one or more query images first."
    try:
        category = save_category(_category(definition, name), context.output / "categories")
        options = {"category": str(category), "support": [], "support_keypoints": [], "skeleton": None}
        request = context.request(queries, "poseanything", flip_test=False, options=options)
        predict_command(request)
    except PosecoreError as exc:
        return None, None, f"**Error:** {exc}"
    drawn = [(str(request.output / f"{path.stem}.jpg"), path.name) for path in request.images]
    rows = len(request.images)
    return drawn, str(request.output / "predictions.json"), (
        f"Found the {len(definition['points'])} keypoint(s) of `{category.stem}` on {rows} query image(s); "
        f"results and pictures in `{request.output}`")

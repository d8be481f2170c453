"""``posecore app``: serve the browser app on this machine (``pip install 'posecore[app]'``).

    posecore app --checkpoint runs/x/checkpoints/best.pth           # http://127.0.0.1:7860
    posecore app --plugin poseanything --checkpoint pa.pth --port 8000
    posecore app --checkpoint best.pth --whole-image    # no detector: each upload is one instance

The app serves one model, chosen as ``posecore predict`` chooses it (``--checkpoint``,
``--preset``, ``--plugin``); its tabs are the registered :class:`~posecore.AppTab` s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["add_app_arguments", "app_command"]


def add_app_arguments(parser: argparse.ArgumentParser) -> None:
    from posecore._detect import DEFAULT_DETECTOR

    parser.add_argument("--checkpoint", help="model weights (a posecore best.pth carries its own config)")
    parser.add_argument("--preset", help="preset name (default: the checkpoint's own config, or the plugin's default)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--port", type=int, default=7860, help="port on 127.0.0.1 (default: 7860; 0: the first free one from 7860)")
    parser.add_argument("--output", help="folder the predictions are written into (default: runs/app-<time>)")
    boxes = parser.add_mutually_exclusive_group()
    boxes.add_argument("--detector", default=DEFAULT_DETECTOR,
                       help=f"the Predict tab's default detector, as in posecore predict (default: {DEFAULT_DETECTOR})")
    boxes.add_argument("--whole-image", action="store_true", help="the Predict tab's default: each upload is one instance")


def app_command(args: argparse.Namespace) -> int:
    from posecore._app import HOST, AppContext, build_app, import_gradio
    from posecore._cli.common import host_from_args, selected_plugin
    from posecore._cli.predict import resolve_predictor

    import_gradio()  # before loading any model: a missing extra is the first thing to say
    host = host_from_args(args)
    output = Path(args.output or Path("runs") / f"app-{time.strftime('%Y%m%d-%H%M%S')}")
    context = AppContext(checkpoint=args.checkpoint, preset=args.preset, plugin=selected_plugin(args),
                         device=args.device, output=output.resolve(), predictor=resolve_predictor(args),
                         detector=None if args.whole_image else args.detector)
    app = build_app(context, host)
    app.launch(server_name=HOST, server_port=args.port or None, prevent_thread_lock=True, quiet=True,
               share=False, show_error=True)
    print(f"posecore app: serving {context.describe()} at {app.local_url} (Ctrl+C stops); results in {output}",
          flush=True)
    try:
        app.block_thread()
    finally:
        app.close()
    return 0

"""`streamo-live gui`: the desktop app. Importing this module is cheap; Qt loads in the command."""

from __future__ import annotations

import argparse

from model.device import KERNEL_MODES  # torch-free: importing this module stays cheap


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="the desktop app (the default with no arguments)")
    p.add_argument(
        "--demo", action="store_true", help="load the tiny offline demo shapes model (a toy that knows three shapes)"
    )
    p.add_argument("--model", default=None, help="Hugging Face id or local folder (default: the saved choice)")
    p.add_argument("--precision", default=None, help="auto | 4bit | 8bit | bf16 | fp16 | fp32")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--adapter", default=None, help="a PEFT LoRA adapter folder")
    p.add_argument(
        "--kernels",
        default=None,
        choices=KERNEL_MODES,
        help="Triton kernels (CUDA, 4-bit): auto = where they apply; triton = same, warns when they can't; off = never",
    )
    p.add_argument("--source", default=None, help="preselect a source: FILE, webcam[:N][@WxH] or screen[:N][@x,y,w,h]")
    p.add_argument("--start", action="store_true", help="start the live session once the model is loaded")
    p.add_argument("--overlay", action="store_true", help="show the subtitle overlay")
    p.add_argument(
        "--quit-after", type=float, default=None, metavar="SECONDS", help="close after this long (smoke tests)"
    )
    p.set_defaults(func=run)


def check_display(environ: dict[str, str] | None = None, platform: str | None = None) -> None:
    """Fail with advice instead of Qt's abort when a Linux machine has no screen."""
    import os
    import sys

    from app.errors import CliError

    env = os.environ if environ is None else environ
    if (platform or sys.platform).startswith("linux") and not any(
        env.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    ):
        raise CliError(
            "no display: the desktop app needs an X11 or Wayland session (DISPLAY and WAYLAND_DISPLAY are unset). "
            "Narrate in the terminal instead: streamo-live narrate --source assets/sample.mp4 --model demo "
            "(or `make demo`), or set QT_QPA_PLATFORM=offscreen for a headless run."
        )


def run(args: argparse.Namespace) -> int:
    from ui.app import run as run_gui

    check_display()

    return run_gui(args)

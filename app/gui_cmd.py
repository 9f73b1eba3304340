"""`streamo-live gui`: the desktop app. Importing this module is cheap; Qt loads in the command."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="the desktop app (the default with no arguments)")
    p.add_argument("--demo", action="store_true", help="load the tiny offline demo model (its words are meaningless)")
    p.add_argument("--model", default=None, help="Hugging Face id or local folder (default: the saved choice)")
    p.add_argument("--precision", default=None, help="auto | 4bit | 8bit | bf16 | fp16 | fp32")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--adapter", default=None, help="a PEFT LoRA adapter folder")
    p.add_argument("--kernels", default=None, choices=("auto", "triton", "off"), help="Triton kernels (CUDA 4-bit)")
    p.add_argument("--source", default=None, help="preselect a source: FILE, webcam[:N] or screen[:N][@x,y,w,h]")
    p.add_argument("--start", action="store_true", help="start the live session once the model is loaded")
    p.add_argument("--overlay", action="store_true", help="show the subtitle overlay")
    p.add_argument(
        "--quit-after", type=float, default=None, metavar="SECONDS", help="close after this long (smoke tests)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ui.app import run as run_gui

    return run_gui(args)

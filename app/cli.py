"""`streamo-live` command line: gui | narrate | data | train | evaluate | voice | benchmark.

Subcommands import their heavy dependencies lazily so `streamo-live data ...` starts fast.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from app.errors import CliError


def _check_fps(fps: float) -> None:
    """--fps of the data commands: a positive, finite number of turns a second (0 divided by zero; NaN, a
    negative or infinite rate gave a traceback or a nonsense conversion)."""
    if not math.isfinite(fps) or fps <= 0:
        raise CliError(
            f"--fps must be a positive number of turns per second of video (1 or 2 as Live runs), got {fps:g}"
        )


def _cmd_to_stream(args: argparse.Namespace) -> int:
    from model import protocol
    from model.outputs import OutputRefused, check_output

    _check_fps(args.fps)
    samples = protocol.load_raw_annotations(args.input)  # a folder, Latin-1, bad JSON: one line naming it
    try:  # before any video is probed: not the input, not a folder, a device or a weights file
        output = check_output(args.output, "--output", inputs=[args.input])
    except OutputRefused as e:
        raise CliError(str(e)) from None
    skipped: list[str] = []  # a malformed sample is that sample's error: the others are converted
    out = protocol.to_stream(samples, video_prefix=args.video_prefix, fps=args.fps, skipped=skipped)
    for error in skipped:
        print(f"warning: {args.input}: {error}; skipped", file=sys.stderr)
    from model.atomic import write_text_atomic

    write_text_atomic(output, protocol.dump_stream(out))  # an interrupted run never leaves half a file
    print(f"converted {len(out)} of {len(samples)} samples -> {args.output}")
    return 1 if skipped else 0


def _cmd_shapes(args: argparse.Namespace) -> int:
    from model.outputs import OutputRefused, check_output
    from model.train.synthetic import make_dataset

    try:
        w, h = (int(x) for x in args.size.lower().split("x"))
    except ValueError:
        raise CliError(f"--size must be WIDTHxHEIGHT, e.g. 320x240; got {args.size!r}") from None
    if args.clips < 1 or w < 16 or h < 16:
        raise CliError("--clips must be >= 1 and --size at least 16x16")
    try:  # the one output guard: a folder, writable, with room; not a file, a device or a model's folder
        check_output(args.out, "--out", folder=True)
    except OutputRefused as e:
        raise CliError(str(e)) from None
    try:
        out = make_dataset(args.out, args.clips, seed=args.seed, size=(w, h), max_events=args.max_events,
                           counters=not args.no_counters)  # fmt: skip
    except OSError as e:  # a read-only or full disk found while writing: one line, not a traceback
        raise CliError(f"--out {args.out}: cannot write the clips ({e.strerror or e}); choose another folder") from None
    print(f"wrote {args.clips} clips under {Path(args.out) / 'videos'} and their raw annotations to {out}")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("streamo-live")
    except PackageNotFoundError:
        return "development"


def _missing(parser: argparse.ArgumentParser, message: str) -> int:
    parser.print_help(sys.stderr)
    raise CliError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamo-live", description="Streamo Live: a local streaming video assistant")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command")

    data = sub.add_parser(
        "data",
        help="dataset tools: to-stream (convert raw annotations), shapes (a toy set), prepare (the frame "
        "cache, in parallel), rehearsal (a set in the release's layout)",
    )
    data_sub = data.add_subparsers(dest="data_command", metavar="{to-stream,shapes,prepare,rehearsal}")
    data.set_defaults(
        func=lambda args: _missing(data, "choose a data command: to-stream, shapes, prepare or rehearsal")
    )
    ts = data_sub.add_parser("to-stream", help="convert raw Streamo annotations to the stream (multi-turn) format")
    ts.add_argument("--input", required=True, help="raw annotation JSON (a list of samples or one sample)")
    ts.add_argument("--output", required=True, help="output JSON in the stream format")
    ts.add_argument(
        "--video-prefix",
        default=None,
        help="folder joined in front of each video_path; the output holds the joined paths, as the release "
        "writes them (train it without --video-prefix)",
    )
    ts.add_argument("--fps", type=float, default=1, help="turns per second of video (default 1)")
    ts.set_defaults(func=_cmd_to_stream)
    sh = data_sub.add_parser(
        "shapes",
        help="write a toy training set: synthetic clips of coloured shapes with raw annotations",
        description="Synthetic clips where a red ball, a blue square or a green triangle appears, moves and "
        "leaves, with raw Streamo annotations (the demo adapter and the learning test are trained on these).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sh.add_argument("--out", required=True, help="folder for videos/ and annotations.json")
    sh.add_argument("--clips", type=int, default=12)
    sh.add_argument("--seed", type=int, default=0)
    sh.add_argument("--size", default="320x240", help="frame size WIDTHxHEIGHT")
    sh.add_argument("--max-events", type=int, default=2, help="shapes per clip, at most")
    sh.add_argument("--no-counters", action="store_true", help="leave out the frame and time counters")
    sh.set_defaults(func=_cmd_shapes)
    from app import prepare_cmd

    prepare_cmd.register(data_sub)  # data prepare, data rehearsal

    from app import benchmark_cmd, gui_cmd, narrate, train_cmd, voice_cmd  # each adds its subcommand(s), lazily

    narrate.register(sub)
    gui_cmd.register(sub)
    train_cmd.register(sub)
    voice_cmd.register(sub)
    benchmark_cmd.register(sub)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; no subcommand means the desktop app."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args = parser.parse_args([*argv, "gui"]) if args.command is None else args
    args.argv = argv  # the command as typed, for records such as an adapter's card
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    from app.signals import stop_signals_as_interrupt
    from model.errors import ModelLoadError
    from model.protocol import AnnotationError

    try:
        if args.command == "gui":  # the window handles its own ending (Qt)
            return int(args.func(args) or 0)
        with stop_signals_as_interrupt():  # SIGTERM and SIGHUP end a command as Ctrl-C does: nothing lost
            return int(args.func(args) or 0)
    except (CliError, AnnotationError, ModelLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

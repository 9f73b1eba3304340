"""`streamo-live narrate`: the headless live assistant.

Reads a video file, a webcam or the screen, runs the streaming engine once per sampled
frame, prints subtitles as they stream in and writes SRT / WebVTT / JSONL as it goes, so
Ctrl-C (or a crash) keeps everything up to the last finished second.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

SUBTITLE_SECONDS = 4.0  # how long a response stays up when no newer one replaces it


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("narrate", help="narrate a video file, webcam or screen in the terminal")
    p.add_argument("--source", required=True, help="FILE, webcam[:N], screen[:N] or screen:N@x,y,w,h")
    p.add_argument("--model", default="demo", help="Hugging Face id, local folder, or 'demo' (the tiny offline model)")
    p.add_argument("--adapter", default=None, help="a PEFT LoRA adapter folder")
    p.add_argument("--precision", default="auto", help="auto | 4bit | 8bit | bf16 | fp16 | fp32")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--kernels", default="auto", choices=("auto", "triton", "off"), help="Triton kernels (CUDA 4-bit)")
    p.add_argument("--question", action="append", default=[], help="a question (repeatable, pairs with --at)")
    p.add_argument("--at", action="append", type=float, default=[], help="stream second at which to ask it")
    p.add_argument("--task", default="narrate", help="task preset: narrate, actions, events, grounding, question")
    p.add_argument("--target", default=None, help="what to watch for, with --task grounding")
    p.add_argument("--fps", type=float, default=1.0, choices=(1.0, 2.0), help="model steps per second")
    p.add_argument("--threshold", type=float, default=None, help="answer when P(Response) >= this (talkativeness)")
    p.add_argument("--max-answer-tokens", type=int, default=64)
    p.add_argument("--max-turns", type=int, default=120, help="context window in turns")
    p.add_argument("--sample", action="store_true", help="sample answers instead of greedy decoding")
    p.add_argument("--seconds", type=float, default=None, help="stop after this many stream seconds")
    p.add_argument("--realtime", action="store_true", help="play files at real speed (default: as fast as possible)")
    p.add_argument("--srt", default=None, help="write subtitles to this .srt file")
    p.add_argument("--vtt", default=None, help="write subtitles to this .vtt file")
    p.add_argument("--jsonl", default=None, help="one JSON record per step: t, state, probs, text, latencies")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run)


def schedule_questions(questions: list[str], at: list[float]) -> list[tuple[float, str]]:
    """Pair --question with --at; a lone question without --at is asked at 0 s."""
    from app.errors import CliError

    if len(at) > len(questions) or (at and len(at) != len(questions)) or (not at and len(questions) > 1):
        raise CliError("give one --at SECONDS for each --question (a single --question alone is asked at 0 s)")
    times = at or [0.0] * len(questions)
    return sorted(zip(times, questions, strict=True), key=lambda x: x[0])


@dataclass
class SubtitleLog:
    """Subtitles of the responses so far, rewritten atomically after each response."""

    srt: Path | None = None
    vtt: Path | None = None
    items: list = field(default_factory=list)

    def add(self, start: float, text: str) -> None:
        from app.exports import Subtitle

        if self.items and self.items[-1].end > start:  # a newer response replaces the old one
            prev = self.items[-1]
            self.items[-1] = Subtitle(prev.start, start, prev.text)
        self.items.append(Subtitle(start, start + SUBTITLE_SECONDS, text))
        self.flush()

    def flush(self) -> None:
        from app.exports import to_srt, to_vtt, write_text_atomic

        if self.srt:
            write_text_atomic(self.srt, to_srt(self.items))
        if self.vtt:
            write_text_atomic(self.vtt, to_vtt(self.items))


def step_record(result, wall_time: float) -> dict:
    return {
        "t": result.t,
        "end": result.end,
        "state": result.state,
        "probs": {k: round(v, 6) for k, v in result.probs.items()},
        "text": result.text,
        "question": result.question,
        "latency_ms": {k: round(v, 3) for k, v in result.timings.items()},
        "context_turns": result.context_turns,
        "context_tokens": result.context_tokens,
        "rebuilt": result.rebuilt,
        "wall_time": wall_time,
    }


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Printer:
    """Subtitles on stdout as they stream; a progress line on stderr when it is a terminal."""

    def __init__(self, out: TextIO, err: TextIO, total: float | None, quiet: bool) -> None:
        self.out, self.err, self.total, self.quiet = out, err, total, quiet
        self.open_line = False
        self.progress_shown = False

    def _clear_progress(self) -> None:
        if self.progress_shown:
            self.err.write("\r\033[K")
            self.progress_shown = False

    def token(self, t: float, piece: str) -> None:
        if not self.open_line:
            self._clear_progress()
            self.out.write(f"[{_clock(t)}] ")
            self.open_line = True
        self.out.write(piece)
        self.out.flush()

    def end_line(self) -> None:
        if self.open_line:
            self.out.write("\n")
            self.out.flush()
            self.open_line = False

    def progress(self, result, fps_eff: float) -> None:
        if self.quiet or not self.err.isatty():
            return
        done = f"{_clock(result.end)}" + (f" / {_clock(self.total)}" if self.total else "")
        mark = {"</Silence>": ".", "</Standby>": "~", "</Response>": "!"}.get(result.state, "?")
        self.err.write(
            f"\r\033[K{done}  {mark} {result.timings.get('total', 0):.0f} ms/step  {fps_eff:.1f} steps/s"
            f"  context {result.context_turns} turns"
        )
        self.err.flush()
        self.progress_shown = True


def _demo_build_progress(done: int, total: int, what: str) -> None:
    """The demo adapter's first-use training, on one terminal line."""
    end = "\n" if done >= total else ""
    if sys.stderr.isatty() or done in (0, total) or done % 100 == 0:
        print(f"\r{what}: step {done}/{total}", end=end, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from app.errors import CliError
    from app.sources import SourceError, parse_source
    from model.engine import EngineOptions, StreamEngine
    from model.loading import load_model
    from model.presets import TASK_PRESETS
    from model.train.demo import demo_adapter_for

    if args.task not in TASK_PRESETS:
        raise CliError(f"unknown task '{args.task}'; choose one of {', '.join(TASK_PRESETS)}")
    asks = schedule_questions(args.question, args.at)
    try:
        source = parse_source(args.source, realtime=args.realtime).open()
    except SourceError as e:
        raise CliError(str(e)) from None
    try:
        print(f"loading {args.model} ...", file=sys.stderr)
        adapter = demo_adapter_for(args.model, args.adapter, _demo_build_progress)
        loaded = load_model(
            args.model, precision=args.precision, device=args.device, adapter=adapter, kernels=args.kernels
        )
        if loaded.is_demo and loaded.adapter:
            print(
                "demo shapes model: a toy trained on synthetic clips; it narrates a red ball, a blue square and a "
                "green triangle, and knows nothing else",
                file=sys.stderr,
            )
        elif loaded.is_demo:
            print("demo model: a tiny random network; its words are meaningless (pipeline demo)", file=sys.stderr)
        options = EngineOptions(
            fps=args.fps,
            threshold=args.threshold,
            max_answer_tokens=args.max_answer_tokens,
            do_sample=args.sample,
            max_turns=args.max_turns,
            task=args.task,
            task_target=args.target,
        )
        engine = StreamEngine(loaded, options)
        print(
            f"{loaded.source} on {loaded.device} ({loaded.precision}, kernels: {engine.kernel_path}); "
            f"source: {source.info.name}",
            file=sys.stderr,
        )
        return _loop(args, source, engine, asks)
    except SourceError as e:
        raise CliError(str(e)) from None
    finally:
        source.close()


def _loop(args, source, engine, asks: list[tuple[float, str]]) -> int:
    from app.exports import JsonlWriter
    from model.interrupt import StopOnInterrupt
    from model.protocol import RESPONSE

    subs = SubtitleLog(Path(args.srt) if args.srt else None, Path(args.vtt) if args.vtt else None)
    jsonl = JsonlWriter(args.jsonl) if args.jsonl else None
    total = source.info.duration if source.info.kind == "file" else None
    if args.seconds is not None:
        total = min(total, args.seconds) if total else args.seconds
    printer = Printer(sys.stdout, sys.stderr, total, args.quiet)
    pending = list(asks)
    steps, started, last_t = 0, time.perf_counter(), 0.0
    streamed = False

    def on_token(piece: str, t: float) -> None:
        nonlocal streamed
        streamed = True
        printer.token(t, piece)

    stop = StopOnInterrupt()
    try:
        for frame in source.frames(fps=args.fps):
            if stop.requested or (args.seconds is not None and frame.t >= args.seconds):
                break
            while pending and pending[0][0] <= frame.t:
                _, question = pending.pop(0)
                engine.ask(question)
                printer.end_line()
                print(f"[{_clock(frame.t)}] Q: {question}", flush=True)
            streamed = False
            result = engine.step(frame.image, t=frame.t, on_token=lambda piece, t=frame.t: on_token(piece, t))
            printer.end_line()
            if result.state == RESPONSE and result.text:
                if not streamed:
                    print(f"[{_clock(result.t)}] {result.text}", flush=True)
                subs.add(result.end, result.text)
            if jsonl:
                jsonl.write(step_record(result, frame.wall_time))
            steps, last_t = steps + 1, result.end
            printer.progress(result, steps / max(1e-9, time.perf_counter() - started))
            if stop.requested:
                break
    except KeyboardInterrupt:
        stop.requested = True
    finally:
        stop.restore()
        printer._clear_progress()
        if jsonl:
            jsonl.close()
        subs.flush()
    if stop.requested:
        printer.end_line()
        print(f"\ninterrupted at {_clock(last_t)}; kept {steps} steps", file=sys.stderr)
        return 130
    written = [p for p in (args.srt, args.vtt, args.jsonl) if p]
    print(
        f"done: {steps} steps, {len(subs.items)} responses" + (f"; wrote {', '.join(written)}" if written else ""),
        file=sys.stderr,
    )
    return 0

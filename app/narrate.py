"""`streamo-live narrate`: the terminal front end of the one live runtime (``app/live``).

The desktop app and this command run the same ``LiveRunner``: the same step records (the session
lands in the same store, so File > Open session lists terminal runs), the same subtitle rule
(the same clip gives byte-identical SRT from here and from the window's export). Subtitles print
as they stream; SRT / WebVTT are rewritten after each response and JSONL gets every record as it
happens, so Ctrl-C (or a crash) keeps everything up to the last finished second. A file that cannot be
written mid-run (a full disk) is one warning and the narration goes on; the end names it
(``app/narrate_outputs.py``).

Asked questions (``--question``, ``--ask-audio``; not the task's own instruction) are part of the
record: the terminal prints ``Q: ...`` before the answer of the same second, and SRT / WebVTT carry
each as its own ``Q: ...`` cue from the start of the second it entered (see ``app.live.subtitles.transcript_cues``).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from model.catalog import active_model_label  # torch-free
from model.device import KERNEL_MODES  # torch-free

if TYPE_CHECKING:  # imported where they are used: the command's --help must stay fast
    from app.live.records import Question, StepRecord
    from app.live.runner import LiveError
    from app.sources import FrameSource, SourceSpec
    from app.voice.tts import Speaker
    from model.engine_types import EngineOptions
    from model.loading import LoadedModel

DESCRIPTION = (
    "Narrate a video file, a webcam or the screen in the terminal: every second (or half second) the "
    "model decides to stay silent, stand by or respond, and responses print as subtitles. The run is "
    "saved in the session store (File > Open session in the app) and, on request, as SRT, WebVTT "
    "and JSON Lines."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "narrate",
        help="narrate a video file, webcam or screen in the terminal",
        description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--source", required=True, help="FILE, webcam[:N][@WxH] or screen[:N][@x,y,w,h]")
    p.add_argument("--model", default="demo", help="Hugging Face id, local folder, or 'demo' (the offline toy)")
    p.add_argument("--adapter", default=None, help="a PEFT LoRA adapter folder")
    p.add_argument("--precision", default="auto", help="auto | 4bit | 8bit | bf16 | fp16 | fp32")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--kernels",
        default="auto",
        choices=KERNEL_MODES,
        help="Triton kernels (CUDA, 4-bit): auto = where they apply; triton = same, warns when they can't; off = never",
    )
    p.add_argument(
        "--question", action=_Asked, kind="typed", default=[], dest="asks", help="a question (repeatable, with --at)"
    )
    p.add_argument(
        "--ask-audio",
        action=_Asked,
        kind="audio",
        dest="asks",
        metavar="FILE.wav",
        help="a recorded question (repeatable, with --at: its speech starts there), through voice activity and recognition",
    )
    p.add_argument("--at", action=_At, dest="asks", metavar="SECONDS", help="stream second of the question before it")
    p.add_argument(
        "--asr-model", default=None, help="speech recognition: Whisper id, folder or 'demo' (default: by memory)"
    )
    p.add_argument("--language", default=None, help="language of spoken questions (default: detected)")
    p.add_argument("--speak", action="store_true", help="speak the responses aloud on the default output device")
    p.add_argument(
        "--speak-to", default=None, metavar="FILE.wav", help="write the spoken responses at their times to one track"
    )
    p.add_argument("--task", default="narrate", help="task preset: narrate, actions, events, grounding, question")
    p.add_argument("--target", default=None, help="what to watch for, with --task grounding")
    p.add_argument("--fps", type=float, default=1.0, choices=(1.0, 2.0), help="model steps per second")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="answer when P(Response) >= this, 0..1 (default: the model decides)",
    )
    p.add_argument("--max-answer-tokens", type=int, default=64, help="longest answer, in tokens")
    p.add_argument("--max-turns", type=int, default=120, help="context window in turns")
    p.add_argument("--sample", action="store_true", help="sample answers instead of greedy decoding")
    p.add_argument("--seconds", type=float, default=None, help="stop after this many stream seconds")
    p.add_argument("--realtime", action="store_true", help="play files at real speed (default: as fast as possible)")
    p.add_argument("--subtitle-seconds", type=float, default=None, help="how long a subtitle stays (default 6)")
    p.add_argument("--srt", default=None, help="write subtitles to this .srt file")
    p.add_argument("--vtt", default=None, help="write subtitles to this .vtt file")
    p.add_argument("--jsonl", default=None, help="also write the session's records (one JSON object per step) here")
    p.add_argument(
        "--save-frames",
        default=None,
        metavar="DIR",
        help="write every frame exactly as the model got it (RGB, before its processor) as DIR/<stream second>.png",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run)


class _Asked(argparse.Action):
    """--question / --ask-audio: one entry [kind, value, time] in the order given; the --at next to it
    (after it, or just before it) gives its time."""

    def __init__(self, *args: Any, kind: str = "typed", **kwargs: Any) -> None:
        self.kind = kind
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        items = list(getattr(namespace, self.dest, None) or [])
        early = [item for item in items if item[0] == "at"]  # an --at that came first
        if early:
            items.remove(early[0])
        items.append([self.kind, values, early[0][2] if early else None])
        setattr(namespace, self.dest, items)


class _At(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        items = list(getattr(namespace, self.dest, None) or [])
        try:
            t = float(values)
        except ValueError:
            raise argparse.ArgumentError(self, f"takes a stream second, got {values!r}") from None
        open_ = [item for item in items if item[0] != "at" and item[2] is None]
        if open_:
            open_[0][2] = t
        else:
            items.append(["at", None, t])  # for the --question / --ask-audio that follows
        setattr(namespace, self.dest, items)


def _questions(args: argparse.Namespace) -> tuple[list[Question], list[tuple[Path, float]]]:
    """--question/--ask-audio with their --at: (typed Questions, (recording, second) pairs). A lone
    --question without --at is asked at 0 s."""
    from app.errors import CliError
    from app.live.records import Question

    asks = args.asks or []
    if any(item[0] == "at" for item in asks):
        raise CliError("an --at has no --question or --ask-audio to go with")
    untimed = [item for item in asks if item[2] is None]
    if untimed and not (len(asks) == 1 and asks[0][0] == "typed"):
        raise CliError(
            "give one --at SECONDS after each --question and --ask-audio (a single --question alone is asked at 0 s)"
        )
    if any(item[2] is not None and item[2] < 0 for item in asks):
        raise CliError("--at must be a stream second >= 0")
    typed = [Question(v, float(t or 0.0), "typed") for kind, v, t in asks if kind == "typed"]
    audio = [(Path(v), float(t)) for kind, v, t in asks if kind == "audio"]
    for path, _ in audio:
        if not path.is_file():
            raise CliError(f"--ask-audio {path}: no such file")
    return sorted(typed, key=lambda q: q.t), audio


def check_args(
    args: argparse.Namespace,
) -> tuple[SourceSpec, list[Question], list[tuple[Path, float]], EngineOptions]:
    """Every bad value as a one-line error before anything loads: (SourceSpec, typed questions,
    --ask-audio recordings with their seconds, EngineOptions)."""
    from app.errors import CliError
    from app.sources import SourceError, SourceSpec
    from model.engine_types import EngineOptions

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise CliError(f"--threshold must be between 0 and 1 (P(Response) to answer at), got {args.threshold:g}")
    if args.max_answer_tokens < 0:
        raise CliError(f"--max-answer-tokens must be >= 0, got {args.max_answer_tokens}")
    if args.max_turns < 1:
        raise CliError(f"--max-turns must be >= 1, got {args.max_turns}")
    if args.seconds is not None and args.seconds <= 0:
        raise CliError(f"--seconds must be positive, got {args.seconds:g}")
    if args.subtitle_seconds is not None and args.subtitle_seconds <= 0:
        raise CliError(f"--subtitle-seconds must be positive, got {args.subtitle_seconds:g}")
    options = EngineOptions(
        fps=args.fps,
        threshold=args.threshold,
        max_answer_tokens=args.max_answer_tokens,
        do_sample=args.sample,
        max_turns=args.max_turns,
        task=args.task,
        task_target=args.target,
    )
    try:
        options.validate()
    except ValueError as e:
        raise CliError(str(e)) from None
    try:
        spec = SourceSpec.parse(args.source)
    except SourceError as e:
        raise CliError(str(e)) from None
    typed, audio = _questions(args)
    _check_outputs(args, spec, [path for path, _ in audio])
    return spec, typed, audio, options


def _check_outputs(args: argparse.Namespace, spec: SourceSpec, recordings: list[Path]) -> None:
    """Every file the run writes, through the one output guard (model/outputs.py), before the model loads:
    never an input of the run, a model's file, a device; writable, with room. A symlink's target is written."""
    from app.errors import CliError
    from model.outputs import OutputRefused, check_output

    inputs = [*recordings, *(p for p in (args.model, getattr(args, "adapter", None)) if p)]
    if spec.kind == "file" and spec.path:
        inputs.append(spec.path)
    try:
        for name in ("srt", "vtt", "jsonl", "speak_to"):
            if getattr(args, name, None):
                label = "--" + name.replace("_", "-")
                setattr(args, name, str(check_output(getattr(args, name), label, inputs)))
        if args.save_frames:
            args.save_frames = str(check_output(args.save_frames, "--save-frames", inputs, folder=True))
    except OutputRefused as e:
        raise CliError(str(e)) from None


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Printer:
    """Subtitles on stdout as they stream; a progress line on stderr when it is a terminal.

    Which question entered on a step is only known when the step returns, after its answer has
    streamed. So when ``question_due(t)`` says a question may enter on the step at ``t``, that
    step's answer is not streamed: it prints whole once the step is done, after its ``Q:`` line.
    """

    def __init__(
        self,
        out: TextIO,
        err: TextIO,
        total: float | None,
        quiet: bool,
        question_due: Callable[[float], bool] | None = None,
    ) -> None:
        self.out, self.err, self.total, self.quiet = out, err, total, quiet
        self.question_due = question_due
        self.open_line = False
        self.progress_shown = False
        self.streamed = False
        self.holding: bool | None = None  # this step's answer waits for its question (None: not decided yet)

    def clear_progress(self) -> None:
        if self.progress_shown:
            self.err.write("\r\033[K")
            self.progress_shown = False

    def token(self, t: float, piece: str) -> None:
        from app.live.records import clean_text

        if self.holding is None:
            self.holding = bool(self.question_due and self.question_due(t))
        if self.holding:
            return
        if not self.open_line:
            self.clear_progress()
            self.out.write(f"[{_clock(t)}] ")
            self.open_line = True
        self.out.write(clean_text(piece))
        self.out.flush()
        self.streamed = True

    def step_done(self) -> None:
        self.streamed = False
        self.holding = None

    def end_line(self) -> None:
        if self.open_line:
            self.out.write("\n")
            self.out.flush()
            self.open_line = False

    def line(self, t: float, text: str) -> None:
        from app.live.records import clean_text

        self.end_line()
        self.clear_progress()
        print(f"[{_clock(t)}] {clean_text(text)}", file=self.out, flush=True)

    def progress(self, record: StepRecord, steps_per_s: float) -> None:
        if self.quiet or not self.err.isatty():
            return
        done = _clock(record.end) + (f" / {_clock(self.total)}" if self.total else "")
        mark = {"</Silence>": ".", "</Standby>": "~", "</Response>": "!"}.get(record.state, "?")
        self.err.write(
            f"\r\033[K{done}  {mark} {record.total_ms:.0f} ms/step  {steps_per_s:.1f} steps/s"
            f"  context {record.context_turns} turns"
        )
        self.err.flush()
        self.progress_shown = True


def run(args: argparse.Namespace) -> int:
    from app.errors import CliError
    from app.sources import SourceError

    spec, questions, recordings, options = check_args(args)
    try:
        source = spec.build(realtime=args.realtime).open()  # fails fast, before the model loads
    except SourceError as e:
        raise CliError(str(e)) from None
    try:
        questions = sorted(questions + _recorded_questions(args, recordings), key=lambda q: q.t)
        return _run(args, spec, source, questions, options)
    finally:
        source.close()


def _recorded_questions(args: argparse.Namespace, recordings: list[tuple[Path, float]]) -> list[Question]:
    """--ask-audio recordings through voice activity and recognition, as voice Questions."""
    if not recordings:
        return []
    from app.errors import CliError
    from app.voice import VoiceError
    from app.voice.asr import Recognizer, default_asr_model
    from app.voice.input import questions_from_file

    recognizer = Recognizer(args.asr_model or default_asr_model(), device=args.device, language=args.language)
    out = []
    try:
        for path, at in recordings:
            heard = questions_from_file(recognizer, path, at)
            for q in heard:
                print(f"heard in {path.name} at {q.span[0]:g}-{q.span[1]:g} s: {q.text}", file=sys.stderr)
            out += heard
    except VoiceError as e:
        raise CliError(str(e)) from None
    return out


def _speaker(args: argparse.Namespace) -> Speaker | None:
    """The default output device's speaker for --speak, or None (with a warning: narration goes on)."""
    if not args.speak:
        return None
    from app.voice import VoiceError
    from app.voice.tts import Speaker

    try:
        speaker = Speaker(on_error=lambda message: print(f"warning: {message}", file=sys.stderr))
        speaker.check_output()
        return speaker
    except VoiceError as e:
        print(f"warning: {e} (--speak is off; subtitles go on)", file=sys.stderr)
        return None


def _write_spoken_track(path: str, items: list[tuple[float, str]], duration: float) -> str | None:
    """Write the --speak-to track. None once the file is on disk and holds every sample; otherwise why
    it is not, so the run never reports a track it did not write."""
    import soundfile

    from app.voice import VoiceError
    from app.voice.synth import TRACK_RATE, synthesize_track
    from app.voice.wav import write_wav

    try:
        track = synthesize_track(items, duration)
        out = write_wav(Path(path), track, TRACK_RATE)
    except (VoiceError, OSError) as e:
        return str(e)
    try:
        frames = soundfile.info(str(out)).frames
    except (OSError, RuntimeError) as e:  # soundfile.LibsndfileError is a RuntimeError
        return f"the file written is not readable ({e})"
    if frames != track.size:
        return f"the file holds {frames} of its {track.size} samples"
    return None


def _run(
    args: argparse.Namespace, spec: SourceSpec, source: FrameSource, questions: list[Question], options: EngineOptions
) -> int:
    from app.errors import CliError
    from app.live.capture import Capture
    from app.live.frames import FrameSaver
    from app.live.runner import LiveRunner, RunEvents, make_engine
    from app.live.subtitles import HOLD_SECONDS, asked_by_someone
    from app.narrate_outputs import Exports, account, open_session_log
    from app.session import SessionMeta
    from app.voice import VoiceError
    from model.interrupt import StopOnInterrupt

    total = source.info.duration if source.info.kind == "file" else None
    for q in questions:
        if total is not None and q.t >= total:
            print(f"warning: --at {q.t:g} is past the end of {source.info.name} ({total:.1f} s): "
                  f"'{q.text}' will not be asked", file=sys.stderr)  # fmt: skip
    if args.seconds is not None:
        total = min(total, args.seconds) if total else args.seconds

    from model.train.demo import demo_check_note

    loaded = load_cli_model(args)
    label = active_model_label(args.model, str(loaded.adapter) if loaded.adapter else None, card=True)
    if label == "demo shapes model":
        print("demo shapes model: a toy trained on synthetic clips; it narrates a red ball, a blue square and a "
              "green triangle, and knows nothing else", file=sys.stderr)  # fmt: skip
        if note := demo_check_note(loaded.adapter):
            print(f"warning: {note}", file=sys.stderr)
    elif loaded.is_demo and not loaded.adapter:
        print("demo model: a tiny random network; its words are meaningless (pipeline demo)", file=sys.stderr)
    else:
        print(f"model: {label}", file=sys.stderr)
    engine = make_engine(loaded, options)
    saver = FrameSaver(Path(args.save_frames)) if args.save_frames else None
    if saver is not None:
        saver.wrap(engine)
    hold = args.subtitle_seconds or HOLD_SECONDS

    def question_due(t: float) -> bool:  # may one of ours enter on the step at t?
        return any(q.t is None or q.t < t + 1.0 / args.fps for q in runner.pending_questions)

    printer = Printer(sys.stdout, sys.stderr, total, args.quiet, question_due)

    def warn(text: str) -> None:  # a file that cannot be written: said once, the narration goes on
        printer.end_line()
        printer.clear_progress()
        print(f"warning: {text}", file=sys.stderr)

    meta = SessionMeta(source=str(spec), model=label, task=args.task, fps=args.fps)
    session = open_session_log(meta, args.jsonl, warn)  # a store that cannot be written: a warning
    exports = Exports(args.srt, args.vtt, warn)
    stop = StopOnInterrupt(external=threading.Event())  # external: --seconds reached
    started = time.perf_counter()
    speaker = _speaker(args)
    track_problem: str | None = None  # why --speak-to was not written
    spoken: list[tuple[float, str]] = []  # (stream second, answer) for --speak-to

    def write_subtitles() -> None:
        exports.write(runner.subtitles.transcript)

    def on_step(record: StepRecord) -> None:
        printer.end_line()
        if record.text.strip() and not printer.streamed:
            printer.line(record.t, record.text)
        printer.step_done()
        q = record.question
        if (q is not None and asked_by_someone(q.origin) and q.text.strip()) or record.text.strip():
            write_subtitles()
        if record.text.strip():
            spoken.append((record.t, record.text.strip()))
            if speaker is not None:
                try:
                    speaker.say(record.text.strip())
                except VoiceError as e:
                    print(f"warning: {e}", file=sys.stderr)
        printer.progress(record, runner.steps / max(1e-9, time.perf_counter() - started))
        if args.seconds is not None and record.end >= args.seconds:
            stop.external.set()

    def on_question(q: Question) -> None:
        if q.origin != "preset":
            printer.line(q.t if q.t is not None else 0.0, f"Q: {q.text}")

    def on_error(error: LiveError) -> None:
        printer.end_line()
        printer.clear_progress()
        print(f"{'error' if error.fatal else 'warning'}: {error.message}", file=sys.stderr)

    events = RunEvents(step=on_step, token=printer.token, question=on_question, error=on_error)
    runner = LiveRunner(engine, session, events, hold)
    for q in questions:
        runner.ask(q)
    print(f"{loaded.source} on {loaded.device} ({loaded.precision}, kernels: {engine.kernel_path}); "
          f"source: {source.info.name}", file=sys.stderr)  # fmt: skip
    capture = Capture(str(spec), args.fps, realtime=args.realtime, opener=lambda *a, **k: source)
    try:
        reason = runner.run(capture, stop)
    except KeyboardInterrupt:
        reason = "stopped"
    finally:
        stop.restore()
        printer.end_line()
        printer.clear_progress()
        runner.close()
        write_subtitles()
        if speaker is not None:
            speaker.wait(timeout=30)  # the last answer finishes speaking
            speaker.close()
        if args.speak_to:
            track_problem = _write_spoken_track(args.speak_to, spoken, runner.subtitles.stream_end)
        if saver is not None:
            saver.close()
    if reason == "stopped" and not stop.requested:  # --seconds reached, not Ctrl-C
        reason = "ended"
    for q in runner.pending_questions:
        print(f"warning: '{q.text}' (at {q.t:g} s) was never asked: the stream ended first", file=sys.stderr)
    last = runner.subtitles.stream_end
    written, lost, notes = account(args, session, exports, track_problem)
    if saver is not None:
        written.append(f"{saver.saved} frames in {args.save_frames}")
    files = ", ".join(written) or "no file"
    for line in notes + (lost if reason != "ended" else []):
        print(f"warning: {line}", file=sys.stderr)
    if reason == "stopped":
        print(f"\ninterrupted at {_clock(last)}; kept {runner.steps} steps in {files}", file=sys.stderr)
        return 130
    if reason == "failed":
        error = capture.error or "the model failed (the message above says why)"
        raise CliError(f"{error}; kept {runner.steps} steps in {files}")
    print(f"done: {runner.steps} steps, {len(runner.subtitles.cues)} responses; wrote {files}", file=sys.stderr)
    if lost:  # everything else is kept; a requested file that is missing fails the command
        raise CliError("; ".join(lost))
    return 0


def load_cli_model(args: argparse.Namespace) -> LoadedModel:
    """The model a terminal command asked for (--model, --adapter, --precision, --device, --kernels),
    the demo's shapes adapter trained first on its first use, with progress on stderr."""
    from model.loading import load_model
    from model.train.demo import demo_adapter_for

    print(f"loading {args.model} ...", file=sys.stderr)
    adapter = demo_adapter_for(args.model, args.adapter, _demo_build_progress)
    return load_model(args.model, precision=args.precision, device=args.device, adapter=adapter, kernels=args.kernels)


def _demo_build_progress(done: int, total: int, what: str) -> None:
    """The demo adapter's first-use training, on one terminal line."""
    end = "\n" if done >= total else ""
    if sys.stderr.isatty() or done in (0, total) or done % 100 == 0:
        print(f"\r{what}: step {done}/{total}", end=end, file=sys.stderr, flush=True)

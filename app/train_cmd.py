"""`streamo-live train` and `streamo-live evaluate`: the training core from the terminal.

train: a progress bar with ETA, loss and learning rate; held-out state accuracy as it is measured;
Ctrl-C saves a checkpoint and exits (130); out of memory keeps the last checkpoint and names the
settings to lower. Runs under `accelerate launch` unchanged (one process per GPU).
evaluate: the live engine over labelled clips (``model.train.evaluate``; with --compare, the base
against the adapter through ``compare_models``, as the Training tab): a table, the cautions in plain
words, per clip the labelled and predicted state strips and the answers side by side, and the JSON
report with --json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from app.errors import CliError


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="FILE",
        help="raw or stream-format annotations (.json/.jsonl), or a folder of them; repeatable",
    )
    p.add_argument("--video-prefix", default=None, metavar="DIR", help="folder that relative video paths start from")
    p.add_argument("--model", required=True, help="Hugging Face id, local folder, or 'demo' (the tiny offline model)")
    p.add_argument("--fps", type=float, default=1.0, choices=(1.0, 2.0), help="turns per second of video (default 1)")
    p.add_argument("--live-instructions", action="store_true",
                   help="first turns carry the instruction Live sends for each sample's task (the Training tab's "
                        "choice), not the released converter's first question")  # fmt: skip
    p.add_argument("--skip-unannotated", action="store_true",
                   help="leave out raw samples with no question and no answer (they teach 'say nothing')")  # fmt: skip
    p.add_argument("--max-turns", type=int, default=120, help="context window in turns (default 120)")
    p.add_argument("--precision", default="auto", help="auto (4-bit on CUDA, fp32 on CPU) | 4bit | bf16 | fp32")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--max-pixels", type=int, default=None, help="pixel budget per frame (default: the model's, 100352; demo 15680)"
    )
    p.add_argument("--cache-dir", default=None, help="frame cache folder (default: the app's data folder)")


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    t = sub.add_parser(
        "train",
        help="fine-tune a LoRA adapter on Streamo-format data",
        description="Fine-tune a LoRA adapter (QLoRA on CUDA) on raw or stream-format Streamo annotations, "
        "or the whole language model with --recipe release. What is not given scales with the data and the "
        "process count: the batch (--accum: about 900 steps an epoch, up to the release's 512 windows a step), "
        "the budget (one epoch; a set under 800 windows at least 800 steps), the held-out split (at most 200 "
        "videos, scored in full); the choices are printed at start with their reasons. Runs data-parallel "
        "under `accelerate launch`.",
        formatter_class=fmt,
    )
    _add_data_args(t)
    t.add_argument("--out", required=True,
                   help="adapter folder to write (checkpoints and metrics go inside); not a folder holding an "
                        "adapter or model this app's training did not make; one run at a time")  # fmt: skip
    t.add_argument("--epochs", type=float, default=None, help="passes over the data (default: automatic budget)")
    t.add_argument("--steps", type=int, default=None, help="optimiser steps in all (overrides --epochs)")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate (default: 2e-4 scaled by model width)")
    t.add_argument("--rank", type=int, default=16, help="LoRA rank")
    t.add_argument("--alpha", type=int, default=32, help="LoRA alpha")
    t.add_argument("--dropout", type=float, default=0.05, help="LoRA dropout")
    t.add_argument("--keep-last", action="store_true",
                   help="write the last step's adapter (default: the step with the lowest held-out loss)")  # fmt: skip
    t.add_argument("--no-lora-merger", dest="lora_merger", action="store_false",
                   help="LoRA on the language model only (default: on the vision merger too, the projector the "
                        "release fine-tunes)")  # fmt: skip
    t.add_argument("--lora-merger", dest="lora_merger", action="store_true", default=True,
                   help=argparse.SUPPRESS)  # the default now; kept so older command lines run  # fmt: skip
    t.add_argument("--recipe", default="lora", choices=("lora", "release"),
                   help="release: the release's full fine-tuning of the language model and the merger, vision "
                        "tower frozen (lr 1e-5, weight decay 0.1, betas 0.9/0.95, one epoch; bf16 autocast over "
                        "fp32 weights, needs about 16 bytes a parameter); its output is a whole model folder")  # fmt: skip
    t.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay (default: LoRA 0, release 0.1)")
    t.add_argument("--beta2", type=float, default=None, help="AdamW beta2 (default: LoRA 0.999, release 0.95)")
    t.add_argument("--warmup", type=float, default=0.05, help="share of steps with linear warm-up")
    t.add_argument("--accum", type=int, default=None,
                   help="windows per optimiser step and process (default: from the data size and process count)")  # fmt: skip
    t.add_argument("--loss", default="focal", choices=("focal", "ce"), help="stream focal loss or plain CE")
    t.add_argument("--holdout", type=float, default=0.1, help="share of videos held out (0: train on all)")
    t.add_argument("--heldout", action="append", default=[], metavar="NAME",
                   help="a video to hold out (its path as in the data, its full path or its file name), instead of "
                        "an automatic choice; repeatable")  # fmt: skip
    t.add_argument("--min-heldout", type=int, default=1,
                   help="hold out at least this many videos when that leaves three to train on")  # fmt: skip
    t.add_argument("--max-heldout", type=int, default=200,
                   help="hold out at most this many videos (every window of them is scored at each evaluation)")  # fmt: skip
    t.add_argument("--early-stop", type=int, default=0, metavar="N",
                   help="stop after N held-out evaluations without a new lowest held-out loss (0: off)")  # fmt: skip
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint in --out (a run stopped before its first checkpoint "
                        "starts afresh with its saved settings)")  # fmt: skip
    t.add_argument("--save-every", type=int, default=None, help="checkpoint interval in steps (default: ~10 a run)")
    t.add_argument("--save-minutes", type=float, default=30.0,
                   help="also a checkpoint after this many minutes of training since the last (0: off)")  # fmt: skip
    t.add_argument("--eval-every", type=int, default=None, help="held-out evaluation interval (default: ~10 a run)")
    gc = t.add_mutually_exclusive_group()
    gc.add_argument("--gradient-checkpointing", dest="gradient_checkpointing", action="store_true", default=None,
                    help="default: on for models of 100M parameters or more")  # fmt: skip
    gc.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false")
    t.set_defaults(func=run_train)

    e = sub.add_parser(
        "evaluate",
        help="run the live engine over labelled clips and score its states and answers",
        description="Stream each labelled clip through the live engine (its own earlier states in context, "
        "questions asked at their seconds) and report per-class state precision/recall/F1, macro-F1, "
        "state accuracy, response timing error and answer token F1; then per clip the labelled and predicted "
        "state strips and the answers side by side.",
        formatter_class=fmt,
    )
    _add_data_args(e)
    e.add_argument("--adapter", default=None, metavar="DIR", help="a LoRA adapter folder")
    e.add_argument("--compare", action="store_true", help="with --adapter: also evaluate the base model, side by side")
    e.add_argument("--threshold", type=float, default=None, help="answer when P(Response) >= this (default: argmax)")
    e.add_argument("--max-answer-tokens", type=int, default=64)
    e.add_argument("--json", default=None, metavar="OUT", help="write the report (and the base's, with --compare)")
    e.set_defaults(func=run_evaluate)


def _command_line(args: argparse.Namespace) -> str:
    argv = getattr(args, "argv", None)
    return " ".join(["streamo-live", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])


def run_train(args: argparse.Namespace) -> int:
    from model.train.config import ConfigError, TrainConfig
    from model.train.data import DataError
    from model.train.trainer import OutOfMemory, TrainingError, train

    # The flags carry the TrainConfig field names; what the command line does not set keeps its default.
    given = {
        f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name) and f.name != "command"
    }
    config = TrainConfig(**given, command=_command_line(args))
    try:
        result = train(config, on_event=_TerminalEvents(), progress_bar=sys.stderr.isatty())
    except (ConfigError, DataError, TrainingError) as e:
        if isinstance(e, OutOfMemory):
            print(f"error: {e}", file=sys.stderr)
            return 3
        raise CliError(str(e)) from None
    if not result.main_process:  # the main process reports for the run
        return 130 if result.status == "stopped" else 0
    if result.status == "stopped":
        where = f"; checkpoint {result.checkpoint}" if result.checkpoint else ""
        print(f"stopped at step {result.step}/{result.total_steps}{where}. Continue with --resume.", file=sys.stderr)
        return 130
    print(f"adapter written to {result.out} ({result.step} steps)", file=sys.stderr)
    return 0


class _TerminalEvents:
    """Training events as lines on stderr (the bar shows steps; without a terminal, every tenth)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def _say(self, text: str) -> None:
        from tqdm.auto import tqdm

        tqdm.write(text, file=sys.stderr)

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "start":
            self._say(
                f"training {event['train_windows']} windows ({event['train_turns']} turns) from "
                f"{event['train_clips']} clips, {event['heldout_clips']} held out; {event['total_steps']} steps "
                f"from step {event['start_step']}, lr {event['lr']:.3g}, {event['processes']} process(es) on "
                f"{event['device']} ({event['precision']}), {event['trainable_parameters']:,} trainable parameters"
            )
            for line in event.get("plan", []):
                self._say("  " + line)
            if event.get("heldout_videos"):
                self._say("held out: " + ", ".join(event["heldout_videos"]))
            if event.get("heldout_warning"):
                self._say(f"warning: {event['heldout_warning']}")
        elif kind == "step" and not self.tty and (event["step"] % 10 == 0 or event["step"] == event["total_steps"]):
            self._say(
                f"step {event['step']}/{event['total_steps']}  loss {event['loss']:.4f}  lr {event['lr']:.2e}"
                f"  eta {event['eta_s']:.0f} s"
            )
        elif kind == "issue":
            self._say(f"warning: {event['message']}")
        elif kind == "eval":
            acc = ", ".join(f"{s.strip('</>')} {v:.0%}" for s, v in event["state_accuracy"].items() if v is not None)
            loss = "n/a" if event.get("loss") is None else f"{event['loss']:.4f}"
            self._say(f"step {event['step']}: {event['split']} state accuracy {acc}; loss {loss}")
        elif kind == "done":
            if stopped := event.get("early_stopped"):
                self._say(
                    f"stopped early at step {stopped['step']}: the held-out loss has not been lower than step "
                    f"{stopped['best_step']}'s since (--early-stop)"
                )
            if sel := event.get("selected"):
                self._say(
                    f"held-out loss was lowest at step {sel['step']} ({sel['heldout_loss']:.4f}; step "
                    f"{sel['last_step']}: {sel['last_heldout_loss']:.4f}): the adapter is step {sel['step']}'s "
                    "(--keep-last keeps the last)"
                )


def run_evaluate(args: argparse.Namespace) -> int:
    from model.train.data import load_clips
    from model.train.evaluate import EvaluationError, compare_models, evaluate_clips
    from model.train.metrics import compare_reports, format_clip_detail, format_report
    from model.train.trainer import default_cache_dir

    if args.compare and not args.adapter:
        raise CliError("--compare needs --adapter (it compares the base model with the adapter)")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise CliError(f"--threshold must be between 0 and 1, got {args.threshold}")
    report_path = _check_report_path(args)
    clips, issues = load_clips(args.data, args.video_prefix, args.fps, live_instructions=args.live_instructions,
                               skip_unannotated=args.skip_unannotated)  # fmt: skip
    settings = {"fps": args.fps, "max_turns": args.max_turns, "threshold": args.threshold,
                "max_answer_tokens": args.max_answer_tokens}  # fmt: skip
    cache_dir = args.cache_dir or default_cache_dir()
    if args.compare:
        try:
            result = compare_models(args.model, args.adapter, clips, cache_dir=cache_dir, precision=args.precision,
                                    device=args.device, max_pixels=args.max_pixels, issues=issues,
                                    progress=lambda done, total, what: print(f"  {what}", file=sys.stderr),
                                    **settings)  # fmt: skip
        except EvaluationError as e:
            raise CliError(f"{e} (in {', '.join(args.data)})") from None
        _warn(result["issues"])
        base, adapter = result["base"], result["adapter"]
        print(compare_reports(base, adapter))  # the cautions in plain words come with the table
        for b, a in zip(base["clips"], adapter["clips"], strict=True):
            print("\n" + format_clip_detail(a, {"base": b, "adapter": a}))
        payload = {**adapter, "base": base, "cautions": result["cautions"], "issues": result["issues"]}
    else:
        payload = _evaluate_one(args, clips, issues, cache_dir, settings, evaluate_clips)
        print(format_report(payload))
        for entry in payload["clips"]:
            print("\n" + format_clip_detail(entry))
    if report_path is not None:
        from model.atomic import write_text_atomic

        try:  # the disk may have filled or the folder become read-only since the start: one line, not a traceback
            write_text_atomic(report_path, json.dumps(payload, indent=2))
        except OSError as e:
            raise CliError(f"--json {args.json} could not be written ({e.strerror or e}); the report is printed "
                           "above") from None  # fmt: skip
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _check_report_path(args: argparse.Namespace) -> Path | None:
    """--json through the one output guard, before a model loads (a read-only place or a folder was a traceback
    after the whole evaluation): never the data, the model or the adapter, writable, with room."""
    if not args.json:
        return None
    from model.outputs import OutputRefused, check_output

    inputs = [*args.data, *(p for p in (args.model, args.adapter) if p)]
    try:
        return check_output(args.json, "--json", inputs)
    except OutputRefused as e:
        raise CliError(str(e)) from None


def _warn(issues: list[Any]) -> None:
    for issue in issues:
        print(f"warning: {issue}", file=sys.stderr)


def _evaluate_one(args: argparse.Namespace, clips: list[Any], issues: list[Any], cache_dir: Any,
                  settings: dict[str, Any], evaluate_clips: Any) -> dict[str, Any]:  # fmt: skip
    """One model (the base, or the base with --adapter) over the clips: its report."""
    from model.loading import load_model
    from model.train.data import attach_frames
    from model.train.video import FrameCache

    loaded = load_model(args.model, precision=args.precision, device=args.device, adapter=args.adapter,
                        max_pixels=args.max_pixels)  # fmt: skip
    cache = FrameCache(cache_dir, loaded.processor, args.fps, loaded.min_pixels, loaded.max_pixels)
    clips = attach_frames(clips, cache, issues)
    _warn(issues)
    if not clips:
        raise CliError("no usable clips to evaluate in " + ", ".join(args.data))
    label = f"adapter {args.adapter}" if args.adapter else "base model"
    print(f"evaluating {label} on {len(clips)} clips ...", file=sys.stderr)
    report = evaluate_clips(loaded, clips, cache, on_clip=lambda k, n, o: print(f"  clip {k}/{n}: {o.video}",
                                                                                 file=sys.stderr), **settings)  # fmt: skip
    report["issues"] = [str(i) for i in issues]
    return report

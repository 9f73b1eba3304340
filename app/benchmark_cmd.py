"""`streamo-live benchmark ovo` and `streamo-live benchmark ovo-score`: OVO-Bench from the terminal.

ovo: every bad value (the annotation file entry by entry, tasks, folders, a results file that
exists, a resume with other settings) is a one-line error before the model loads; then one line
per finished query with the ETA, warnings for unusable videos, and at the end the score table
beside the paper's rows, saved beside the results folder (DIR.RESULTS.scores.json). Ctrl-C stops after the query in progress
(a second Ctrl-C at once); everything finished is on disk and --resume continues.
ovo-score: the same scorer on any results file in OVO-Bench's layout.

Under ``accelerate launch`` with several processes, each process runs its share of the videos and
records into its own part file; once all are done (the waits are one at start, before the model
loads, and one after the work: none while a video decodes) the main process merges the parts into the files a single process writes and
prints the scores (docs/benchmark.md, "Many GPUs").
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from app.errors import CliError
from model import json_text
from model.device import KERNEL_MODES  # torch-free

OVO_DESCRIPTION = (
    "Run OVO-Bench (its official annotation file, all twelve tasks) through the live engine and write the "
    "results in OVO-Bench's own layout, so its official scorer reads them unchanged; then score them with the "
    "same rules and compare with the paper's Streamo rows. Protocols: offline (OVO-Bench's: the stream up to "
    "each query's time, the prompt on the last second, an answer demanded there) and streaming (the Streamo "
    "release's: the question enters at its time, the model decides each second, its first response answers; "
    "REC runs to the end and its latest answer at each probe counts). The window slides one turn at a time over "
    "121 turns by default, as the release's. See docs/benchmark.md."
)


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("benchmark", help="benchmarks people compare against: OVO-Bench")
    b_sub = b.add_subparsers(dest="benchmark_command", metavar="{ovo,ovo-score}")
    b.set_defaults(func=lambda args: _missing(b))
    fmt = argparse.ArgumentDefaultsHelpFormatter
    o = b_sub.add_parser("ovo", help="run OVO-Bench and score it", description=OVO_DESCRIPTION, formatter_class=fmt)
    o.add_argument("--anno", required=True, metavar="FILE", help="OVO-Bench's annotation file (ovo_bench_new.json)")
    o.add_argument("--videos", required=True, metavar="DIR", help="the folder the entries' video paths start from")
    o.add_argument("--model", required=True, help="Hugging Face id, local folder, or 'demo' (the offline toy)")
    o.add_argument("--adapter", default=None, metavar="DIR", help="a LoRA adapter folder")
    o.add_argument("--out", required=True, metavar="RESULTS.json", help="results file (OVO-Bench's layout)")
    o.add_argument("--tasks", default=None, help="comma-separated tasks (EPM,REC,...) or categories (default: all 12)")
    o.add_argument("--limit", type=int, default=None, metavar="N", help="at most N entries of each task")
    o.add_argument("--protocol", default="offline", choices=("offline", "streaming"))
    o.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished query")
    o.add_argument("--fps", type=float, default=1.0, choices=(1.0, 2.0), help="turns per second of video")
    o.add_argument(
        "--max-turns",
        type=_turns,
        default=121,
        help="context window in turns: the release keeps 121 frames (120 rounds plus the new one); 'all' keeps the "
        "whole stream up to the query (OVO-Bench's offline cut uncut by a window; long videos need the memory)",
    )
    o.add_argument(
        "--keep-turns",
        type=int,
        default=None,
        help="turns kept when the window is full, the new one included (default: --max-turns, so the window "
        "slides one turn at a time as the release's does; fewer drops a chunk at once, as the live app does)",
    )
    o.add_argument(
        "--answer-limit",
        default="end",
        metavar="SPEC",
        help="streaming: how long after its question's turn an answer may come, per task: 'end' (until the video "
        "ends, as the release's script), seconds ('30') or per task or category ('backward=10,REC=end')",
    )
    o.add_argument("--max-answer-tokens", type=int, default=64, help="longest answer, in tokens")
    o.add_argument(
        "--threshold", type=float, default=None, help="streaming: respond when P(Response) >= this (default: argmax)"
    )
    o.add_argument("--precision", default="auto", help="auto (4-bit on CUDA, fp32 on CPU) | 4bit | 8bit | bf16 | fp32")
    o.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    o.add_argument("--kernels", default="auto", choices=KERNEL_MODES, help="Triton kernels (CUDA, 4-bit)")
    o.add_argument(
        "--no-shared-pass",
        dest="shared",
        action="store_false",
        help="re-run each video from its start for every query instead of one pass with engine snapshots "
        "(same results, slower; for checking)",
    )
    o.set_defaults(func=run_ovo)
    s = b_sub.add_parser(
        "ovo-score",
        help="score a results file in OVO-Bench's layout",
        description="Score a results file in OVO-Bench's layout ({backward, realtime, forward}) with the official "
        "rules: per task, per category, total; compared with the paper's rows; saved beside the file's folder as FOLDER.NAME.scores.json.",
    )
    s.add_argument("results", metavar="RESULTS.json")
    s.set_defaults(func=run_score)


ALL_TURNS = 10**9  # --max-turns all: a window no video fills


def _turns(text: str) -> int:
    if text.strip().lower() == "all":
        return ALL_TURNS
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of turns or 'all', got {text!r}") from None


def _missing(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    raise CliError("choose a benchmark command: ovo or ovo-score")


# The long collective of a multi-process run is the wait after every process's share: it lasts as
# long as the slowest process takes beyond the fastest (up to one long video's queries plus the
# spread of speeds), far past NCCL's 10-minute default on a real run.
WAIT_TIMEOUT = timedelta(hours=6)


def launched_share() -> tuple[int, int]:
    """(this process, processes) as ``accelerate launch`` (torchrun's variables, or MPI's for a
    multi-CPU launch) set them; (0, 1) when run directly. Read before torch is imported."""

    def first(names: tuple[str, ...], default: int) -> int:
        return next((int(os.environ[n]) for n in names if os.environ.get(n)), default)

    processes = first(("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"), 1)
    process = first(("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"), 0)
    return process, processes


def _process_group(args: argparse.Namespace, share: tuple[int, int]) -> Any:
    """accelerate's PartialState over the launched processes (no Accelerator: nothing is trained),
    and each process's device: its own GPU (``--device auto``/``cuda``) or the CPU."""
    from accelerate import PartialState

    if args.device.startswith("cuda:"):
        raise CliError(f"--device {args.device} with {share[1]} processes: each process takes its own GPU; "
                       "give --device auto (or cuda), or --device cpu")  # fmt: skip
    state = PartialState(cpu=args.device == "cpu", timeout=WAIT_TIMEOUT)
    if (state.process_index, state.num_processes) != share:
        raise CliError(f"accelerate sees process {state.process_index} of {state.num_processes}, the launcher's "
                       f"variables say {share[0]} of {share[1]}; launch with accelerate launch")  # fmt: skip
    if state.device.type == "cuda":
        args.device = str(state.device)  # cuda:LOCAL_RANK
    return state


def check_args(args: argparse.Namespace, part: str | None = None) -> tuple[list[dict[str, Any]], list[Any], Any]:
    """Everything the command line can get wrong, before a model loads: (entries, queries, store).
    ``part``: this process's part tag when several share the run (``RunStore``)."""
    from app.benchmark.ovo_data import (
        OvoDataError,
        file_digest,
        load_annotations,
        parse_answer_limits,
        parse_tasks,
        queries_for,
        select,
    )
    from app.benchmark.ovo_store import RunStore, StoreError

    if args.limit is not None and args.limit < 1:
        raise CliError(f"--limit must be >= 1, got {args.limit}")
    if args.max_turns < 1:
        raise CliError(f"--max-turns must be >= 1, got {args.max_turns}")
    if args.keep_turns is not None and not 1 <= args.keep_turns <= args.max_turns:
        raise CliError(f"--keep-turns must be between 1 and --max-turns ({_turns_text(args.max_turns)}), "
                       f"got {args.keep_turns}")  # fmt: skip
    if args.max_answer_tokens < 1:
        raise CliError(f"--max-answer-tokens must be >= 1, got {args.max_answer_tokens}")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise CliError(f"--threshold must be between 0 and 1, got {args.threshold:g}")
    try:
        tasks = parse_tasks(args.tasks) if args.tasks else None
    except ValueError as e:
        raise CliError(f"--tasks: {e}") from None
    try:
        args.limits = parse_answer_limits(args.answer_limit)
    except ValueError as e:
        raise CliError(f"--answer-limit: {e}") from None
    if not Path(args.videos).is_dir():
        raise CliError(f"--videos {args.videos}: no such folder")
    try:
        entries = load_annotations(args.anno)
    except OvoDataError as e:
        raise CliError(str(e)) from None
    chosen = select(entries, tasks, args.limit)
    if not chosen:
        raise CliError(f"{args.anno} has no entries of the chosen tasks ({args.tasks})")
    queries = [q for i in chosen for q in queries_for(entries[i], i)]
    settings = {
        "annotations_sha256": file_digest(args.anno),
        "protocol": args.protocol,
        "fps": args.fps,
        "model": args.model,
        "adapter": str(Path(args.adapter).resolve()) if args.adapter else None,
        "max_turns": _turns_text(args.max_turns),
        "keep_turns": _turns_text(args.keep_turns or args.max_turns),
        "answer_limit_s": args.limits if args.protocol == "streaming" else None,
        "max_answer_tokens": args.max_answer_tokens,
        "threshold": args.threshold,
    }
    try:
        store = RunStore(args.out, entries, settings, resume=args.resume, part=part)
    except StoreError as e:
        raise CliError(str(e)) from None
    return entries, queries, store


def _turns_text(turns: int) -> int | str:
    return "all" if turns >= ALL_TURNS else turns


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _Progress:
    """One line per finished query on stderr: count, key, response, seconds, ETA; warnings between."""

    def __init__(self, share: tuple[int, int] = (0, 1)) -> None:
        self.tag = f"process {share[0]}/{share[1]}: " if share[1] > 1 else ""  # whose line, with several

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "start":
            skipped = event["finished"]
            resumed = f"; {skipped} finished before, skipped" if skipped else ""
            share = f" (its share of {event['processes']})" if event["processes"] > 1 else ""
            print(f"{self.tag}{event['todo']} queries on {event['videos']} videos to run{share}{resumed}",
                  file=sys.stderr)  # fmt: skip
        elif kind == "warning":
            print(f"{self.tag}warning: {event['message']}", file=sys.stderr)
        elif kind == "query":
            response = "null" if event["response"] is None else repr(_short(event["response"]))
            print(f"{self.tag}[{event['done']}/{event['todo']}] {event['key']}: {response}  {event['seconds']:.2f} s  "
                  f"ETA {_clock(event['eta_s'])}", file=sys.stderr, flush=True)  # fmt: skip


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def run_ovo(args: argparse.Namespace) -> int:
    share = launched_share()
    part = f"{share[0]}of{share[1]}-{secrets.token_hex(4)}" if share[1] > 1 else None
    entries, queries, store = check_args(args, part)  # before anything imports torch: a bad file fails at once

    from app.benchmark.ovo_run import run_benchmark
    from app.benchmark.ovo_store import StoreError
    from app.narrate import load_cli_model
    from model.engine_types import EngineOptions
    from model.interrupt import StopOnInterrupt

    state = None
    if share[1] > 1:
        state = _process_group(args, share)
        state.wait_for_everyone()  # every process has read the run's files before any writes its part
    main = share[0] == 0
    loaded = load_cli_model(args)
    store.info.update({"device": str(loaded.device), "precision": loaded.precision, "kernels": loaded.kernel_path})
    options = EngineOptions(
        fps=args.fps,
        threshold=args.threshold,
        max_answer_tokens=args.max_answer_tokens,
        max_turns=args.max_turns,
        keep_turns=args.keep_turns or args.max_turns,
        task="question",  # no standing instruction: the benchmark's prompts are the only questions
    )
    keep = args.keep_turns or args.max_turns
    window = (
        "the whole stream"
        if args.max_turns >= ALL_TURNS
        else f"{args.max_turns} turns, "
        + ("sliding one turn at a time" if keep == args.max_turns else f"dropping to {keep} when full")
    )
    processes = f", {share[1]} processes, each its share of the videos" if share[1] > 1 else ""
    if main:
        print(f"OVO-Bench, {args.protocol} protocol, {args.fps:g} fps, window {window}: {loaded.source} on "
              f"{loaded.device} ({loaded.precision}){processes}; results -> {store.out}, run file -> {store.run_path}",
              file=sys.stderr)  # fmt: skip
    progress = _Progress(share)
    stop = StopOnInterrupt(notice="stopping after the query in progress (Ctrl-C again to stop at once)")
    try:
        status = run_benchmark(loaded, queries, store, Path(args.videos), args.protocol, options, args.shared,
                               progress, stop, args.limits if args.protocol == "streaming" else None,
                               share)  # fmt: skip
    except StoreError as e:
        raise CliError(str(e)) from None
    finally:
        stop.restore()
    if state is not None:
        state.wait_for_everyone()  # after each process's share: no process waits while another decodes
        if not main:
            return 130 if status == "stopped" else 0
        try:
            store.merge_parts()
        except StoreError as e:
            raise CliError(f"{e}; the parts stay beside the run file and --resume merges them") from None
        status = "done" if all(q.key in store.responses for q in queries) else "stopped"
    unfinished = sum(not store.finished(q.key) for q in queries)
    if status == "stopped":
        print(f"stopped: {len(queries) - unfinished} of {len(queries)} queries finished and kept in {store.out}; "
              "continue with --resume", file=sys.stderr)  # fmt: skip
        return 130
    _print_scores(store.results(), store.scores_path)
    failed = [k for k in store.errors if k in {q.key for q in queries}]
    if failed:
        print(f"warning: {len(failed)} queries failed and scored 0 (listed under 'errors' in {store.run_path}); "
              "--resume retries them", file=sys.stderr)  # fmt: skip
    print(f"wrote {store.out}, {store.scores_path} and {store.run_path}", file=sys.stderr)
    return 0


def _print_scores(results: dict[str, Any], scores_path: Path) -> dict[str, Any]:
    from app.benchmark.ovo_score import format_scores, score_results
    from app.exports import write_text_atomic

    report = score_results(results)
    print(format_scores(report))
    write_text_atomic(scores_path, json.dumps(report, indent=1))
    return report


def run_score(args: argparse.Namespace) -> int:
    from app.benchmark.ovo_store import StoreError, outside

    path = Path(args.results)
    try:
        scores_path = outside(path, ".scores.json")
    except StoreError as e:
        raise CliError(str(e)) from None
    try:
        results = json_text.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CliError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(results, dict) or not any(k in results for k in ("backward", "realtime", "forward")):
        raise CliError(f"{path}: not an OVO-Bench results file (expected backward, realtime and forward lists)")
    from app.benchmark.ovo_score import ScoreError

    try:
        _print_scores(results, scores_path)
    except ScoreError as e:
        raise CliError(f"{path}: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise CliError(f"{path}: an item lacks a field the scorer reads ({type(e).__name__}: {e})") from None
    print(f"wrote {scores_path}", file=sys.stderr)
    return 0

"""Running OVO-Bench through the live engine, in either protocol (docs/benchmark.md).

Every query is an *ask*: a prompt that enters the stream on one turn of its video. A video's asks
share ONE pass over its frames: the pass steps the turns with no question on them (each a forced
</Silence>, as the release does before a question's second), and at each ask's turn it takes a
``snapshot()`` of the engine, asks, steps on until the ask is answered, and ``restore()``s the
snapshot before going on. The engine's restore is exact, so each answer is the one a run from the
start of the video with only that question would give (``shared=False`` does exactly that, for
checks and for the speed-up measurement), at the cost of one pass instead of one per query.

offline (OVO-Bench's protocol): the video up to ``ceil(realtime)`` seconds (clipped to the video),
the benchmark's prompt on the last turn and a </Response> demanded there; the answer is the
response. Forward tasks: one such query per probe.
streaming (the Streamo release's): the prompt enters the turn covering ``realtime`` (clipped to the
last turn); from there the model decides each turn and its first </Response> answers (null if it
never answers within its task's time limit, by default the end of the video). REC is one ask per
entry, entering at 0 s, running to the end of the video; at each probe the latest answer given on a
turn before ``ceil(probe realtime)`` seconds counts.

Window: the engine's (docs/engine.md), exact in both policies. With ``keep_turns == max_turns`` it
slides one turn at a time as the release does (121 frames, the question put back on the first kept
turn), and a rebuild re-renders the kept turns each step once full. The turns before an ask are all
a forced </Silence>, so the context at an ask's turn depends on the frames alone: the pass skips
the turns that a sliding window has dropped by then (it restarts the engine ``max_turns`` turns
before the ask, so the ask's own step is the same rebuild the slide would make there).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.benchmark.ovo_data import Query
from app.benchmark.ovo_store import RunStore
from model.engine_types import Engine, EngineOptions, StepResult  # torch-free
from model.protocol import RESPONSE, SILENCE, parse_user_content

if TYPE_CHECKING:
    import threading

    from model.interrupt import StopOnInterrupt
    from model.loading import LoadedModel

log = logging.getLogger(__name__)

PROTOCOLS = ("offline", "streaming")


class VideoUnavailable(Exception):
    """A query's video is missing or unreadable; the message names the file."""


class VideoFrames:
    """The sampled frames of one video file, taken by the app's file source (its inference rule:
    the frame nearest each turn's time, ``model/frame_times.py``), resized to the model's pixel
    budget as the engine's processor would (``resize``: exact, so the engine sees the same pixels)
    and kept in memory as they are decoded, so a pass can go back to any earlier turn."""

    def __init__(self, path: Path, fps: float, resize: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        from app.sources import SourceError, VideoFileSource

        self.path = path
        try:
            self._source = VideoFileSource(path).open()
        except SourceError as e:
            raise VideoUnavailable(str(e)) from None
        self._iter = self._source.frames(fps)
        self._resize = resize
        self._frames: list[np.ndarray] = []
        self._ended = False

    def available(self, n: int) -> int:
        """Decode up to ``n`` frames; how many of them the video has (fewer at its end)."""
        while len(self._frames) < n and not self._ended:
            frame = next(self._iter, None)
            if frame is None:
                self._ended = True
                break
            self._frames.append(self._resize(frame.image) if self._resize else frame.image)
        return min(n, len(self._frames))

    def __getitem__(self, k: int) -> np.ndarray:
        if self.available(k + 1) <= k:
            raise IndexError(f"{self.path} has {len(self._frames)} sampled frames, not {k + 1}")
        return self._frames[k]

    def close(self) -> None:
        self._frames = []
        self._source.close()


@dataclass
class Ask:
    """A prompt entering the stream on turn ``turn``; ``mode``: "forced" (a </Response> demanded on
    that turn), "first" (the model decides; its first </Response> answers) or "all" (every
    </Response> to the end of the video). ``queries`` are the queries its answers serve."""

    turn: int
    prompt: str
    mode: str
    queries: list[Query]
    last: int | None = None  # the last turn it may step ("first"/"all"); None: to the end of the video


@dataclass
class Answer:
    """A </Response> (or, with ``text`` None, the last turn of an ask that got none): its turn and
    the window the engine held there (``window_of``)."""

    turn: int
    text: str | None
    context: dict[str, Any]


@dataclass
class PassStats:
    steps: int = 0  # engine steps taken
    asks: int = 0  # asks answered
    rebuilds: int = 0  # steps that re-rendered the window (a slide or a drop)
    restarts: int = 0  # times the pass skipped turns a sliding window had dropped


def turns_until(seconds: float, fps: float) -> int:
    """Turns of a stream cut at ``ceil(seconds)`` (OVO-Bench cuts its clips there), at least one."""
    return max(1, round(math.ceil(seconds) * fps))


def past_end_message(frames: VideoFrames, turns: int, fps: float, q: Query) -> str:
    return (
        f"{frames.path}: the video ends at {turns / fps:g} s ({turns} sampled turns at {fps:g} fps), before the "
        f"query's time {q.time:g} s. Check that it is the benchmark's video"
    )


def plan_asks(
    protocol: str,
    queries: list[Query],
    frames: VideoFrames,
    fps: float,
    limits: dict[str, float | None] | None = None,
) -> tuple[list[Ask], dict[str, str]]:
    """The asks that answer ``queries`` (all of one video) in ``protocol``, and an error message for
    each query whose time lies past the end of the video (a per-query error: a question at the
    video's very end is clipped to its last turn, one beyond it is not answered on a shorter
    stream). ``limits``: streaming, per task, the seconds after the question's turn in which an
    answer may come (None or missing: to the end of the video)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if frames.available(1) == 0:
        raise VideoUnavailable(f"{frames.path}: no frames could be sampled")
    limits = limits or {}
    asks: list[Ask] = []
    errors: dict[str, str] = {}
    rec: dict[str, list[Query]] = {}

    def last_turn(q: Query, turn: int) -> int | None:
        limit = limits.get(q.task)
        return None if limit is None else turn + max(0, round(limit * fps))

    for q in sorted(queries, key=lambda q: q.time):
        turn = int(math.floor(q.time * fps + 1e-9))  # streaming: the turn covering the query's time
        have = frames.available(turns_until(q.time, fps) if protocol == "offline" else turn + 1)
        if have / fps < q.time - 1e-6:  # the turns cover [0, have / fps): the query's second is not in them
            errors[q.key] = past_end_message(frames, have, fps, q)
        elif protocol == "offline":
            asks.append(Ask(have - 1, q.prompt, "forced", [q]))
        elif q.task == "REC":
            rec.setdefault(q.entry, []).append(q)
        else:
            turn = min(turn, have - 1)  # a query at the video's very end: its last turn
            asks.append(Ask(turn, q.prompt, "first", [q], last_turn(q, turn)))
    asks += [Ask(0, probes[0].prompt, "all", probes, last_turn(probes[0], 0)) for probes in rec.values()]
    return asks, errors


def responses_of(ask: Ask, answers: list[Answer], fps: float) -> dict[str, dict[str, Any]]:
    """Each query's response and how it came from its ask's answers: {key: {"response", "turn",
    "answered_at_s" (the end of the answering turn), "delay_s" (that minus the query's time),
    "context" (the window the engine held on that turn; with no answer, on the ask's last turn, or
    None for a REC probe before the first answer)}}."""
    given = [a for a in answers if a.text is not None]
    last = next((a.context for a in answers if a.text is None), None)  # the window of an ask never answered
    out = {}
    for q in ask.queries:
        if ask.mode != "all":
            answer = given[0] if given else None
        else:
            cut = turns_until(q.time, fps)  # the answers given within the stream the probe sees
            within = [a for a in given if a.turn < cut]
            answer = within[-1] if within else None
        if answer is None:
            out[q.key] = {"response": None, "turn": None, "answered_at_s": None, "delay_s": None, "context": last}
            continue
        at = (answer.turn + 1) / fps
        out[q.key] = {"response": answer.text, "turn": answer.turn, "answered_at_s": at,
                      "delay_s": round(at - q.time, 6), "context": answer.context}  # fmt: skip
    return out


def window_of(engine: Engine) -> dict[str, Any]:
    """The window the engine holds now: its user turns, the seconds they cover, and whether the
    first kept turn carries a question (the release puts the question back there once it slides)."""
    users = [m["content"] for m in engine.messages() if m["role"] == "user"]
    first_q, start, _ = parse_user_content(users[0])
    _, _, end = parse_user_content(users[-1])
    return {"turns": len(users), "from_s": start, "to_s": end, "seconds": round(end - start, 6),
            "question_on_first_turn": first_q is not None}  # fmt: skip


def _step(engine: Engine, frame: np.ndarray, t: float, stats: PassStats, force: str | None = None) -> StepResult:
    stats.steps += 1
    result = engine.step(frame, t=t, force=force)
    stats.rebuilds += bool(result.rebuilt)
    return result


def _continue(engine: Engine, frames: VideoFrames, ask: Ask, fps: float, stats: PassStats) -> list[Answer]:
    """Step from the ask's turn (its prompt already asked) until it is answered, or to its last
    turn; every </Response> with its turn and window, then (none given) the last turn's window."""
    if ask.mode == "forced":
        result = _step(engine, frames[ask.turn], ask.turn / fps, stats, force=RESPONSE)
        return [Answer(ask.turn, result.text, window_of(engine))]
    answers = []
    k = ask.turn
    while frames.available(k + 1) > k and (ask.last is None or k <= ask.last):
        result = _step(engine, frames[k], k / fps, stats)
        if result.state == RESPONSE:
            answers.append(Answer(k, result.text, window_of(engine)))
            if ask.mode == "first":
                return answers
        k += 1
    if k > ask.turn and not answers:
        answers.append(Answer(k - 1, None, window_of(engine)))
    return answers


def _ask(engine: Engine, ask: Ask, fps: float) -> None:
    engine.ask(ask.prompt, t=(ask.turn + 0.5) / fps)  # mid-turn: inside the turn whatever the rounding


def sliding_window(engine: Engine) -> int | None:
    """``max_turns`` when the engine's window slides one turn at a time (and only turns bound it),
    else None: then which turns an ask sees depends on where the drops fell, and nothing is skipped."""
    opts = engine.opts
    return opts.max_turns if opts.kept_turns == opts.max_turns and opts.max_tokens is None else None


def run_asks(
    engine: Engine,
    frames: VideoFrames,
    asks: list[Ask],
    fps: float,
    shared: bool = True,
    stats: PassStats | None = None,
    skip_dropped: bool = True,
) -> Iterator[tuple[Ask, list[Answer]]]:
    """Answer ``asks`` on one video: (ask, answers) as each is answered.

    shared: one pass, a snapshot at each ask's turn, restored after its answer. Not shared: for
    each ask a fresh run from the start of the video, the prompt asked before the first frame.
    skip_dropped (sliding window of W turns): turns more than W before an ask's turn are not
    stepped; the engine restarts W turns before it instead. The ask's step then overflows the
    window and rebuilds it from the same turns as a run that stepped every turn (the same forward,
    the question on the first kept turn), so the results are those of stepping every turn."""
    stats = stats if stats is not None else PassStats()
    window = sliding_window(engine) if skip_dropped else None
    if not shared:
        for ask in asks:
            engine.reset()
            _ask(engine, ask, fps)
            first = 0 if window is None else max(0, ask.turn - window)
            stats.restarts += first > 0
            for k in range(first, ask.turn):
                _step(engine, frames[k], k / fps, stats, force=SILENCE)
            stats.asks += 1
            yield ask, _continue(engine, frames, ask, fps, stats)
        return
    engine.reset()
    k = 0
    pending = sorted(asks, key=lambda a: a.turn)  # stable: asks on one turn keep their order
    while pending:
        turn = pending[0].turn
        if window is not None and turn - window > k:  # turns k..turn-window-1 leave the window unseen
            engine.reset()
            k = turn - window
            stats.restarts += 1
        while k < turn:
            _step(engine, frames[k], k / fps, stats, force=SILENCE)
            k += 1
        group = [a for a in pending if a.turn == turn]
        pending = pending[len(group) :]
        snap = engine.snapshot()
        for ask in group:
            _ask(engine, ask, fps)
            stats.asks += 1
            answers = _continue(engine, frames, ask, fps, stats)
            engine.restore(snap)
            yield ask, answers


def estimated_work(queries: list[Query]) -> dict[str, float]:
    """Stream seconds each query adds to its video's pass (for the ETA): the distance from the
    previous query of the video in time order, plus its own turn."""
    by_video: dict[str, list[Query]] = {}
    for q in queries:
        by_video.setdefault(q.video, []).append(q)
    work = {}
    for qs in by_video.values():
        last = 0.0
        for q in sorted(qs, key=lambda q: q.time):
            work[q.key] = max(0.0, q.time - last) + 1.0
            last = max(last, q.time)
    return work


def share_of(queries: list[Query], process: int, processes: int) -> list[Query]:
    """The queries process ``process`` of ``processes`` runs: whole videos (each decoded by one
    process), balanced by number of queries (the most queried video first, to the least loaded
    process). Every process computes the same split from the same list, so none needs to be told."""
    if not 0 <= process < processes:
        raise ValueError(f"process {process} of {processes}: expected 0 <= process < processes")
    by_video: dict[str, int] = {}
    for q in queries:
        by_video[q.video] = by_video.get(q.video, 0) + 1
    load = [0] * processes
    owner: dict[str, int] = {}
    for video in sorted(by_video, key=lambda v: (-by_video[v], v)):
        r = min(range(processes), key=lambda i: (load[i], i))
        owner[video] = r
        load[r] += by_video[video]
    return [q for q in queries if owner[q.video] == process]


def run_benchmark(
    loaded: LoadedModel,
    queries: list[Query],
    store: RunStore,
    videos: Path,
    protocol: str = "offline",
    options: EngineOptions | None = None,
    shared: bool = True,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    stop: threading.Event | StopOnInterrupt | None = None,
    limits: dict[str, float | None] | None = None,
    share: tuple[int, int] = (0, 1),
) -> str:
    """Run the ``queries`` the store has not finished, video by video, recording each as it is
    answered (with its turn, delay and the window it saw). A missing or unreadable video, a query
    past the end of its video, or a failure inside a pass gives the queries concerned a null
    response and a warning, and the run goes on. Returns "done", or "stopped" when ``stop.is_set()``
    between two queries. ``limits``: streaming answer limits per task (``plan_asks``). ``share``:
    (process, processes): this process runs its ``share_of`` the unfinished queries. Events
    (dicts): start, query (with the ETA), warning."""
    return _Run(loaded, queries, store, videos, protocol, options, shared, on_event, stop, limits, share).run()


class _Run:
    def __init__(
        self,
        loaded,
        queries,
        store,
        videos,
        protocol,
        options,
        shared,
        on_event,
        stop,
        limits,
        share,  # noqa: ANN001
    ) -> None:
        from app.live.runner import make_engine
        from model.frames import resize_to_budget

        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.store, self.videos, self.protocol, self.shared, self.stop = store, Path(videos), protocol, shared, stop
        self.emit = on_event or (lambda event: None)
        options = options or EngineOptions(task="question")
        self.fps = options.fps
        self.engine = make_engine(loaded, options)
        self.resize = lambda image: resize_to_budget(loaded.processor, image)  # what the engine's processor does
        self.queries = queries
        unfinished = [q for q in queries if not store.finished(q.key)]
        self.finished_before = len(queries) - len(unfinished)
        self.share = share
        self.todo = share_of(unfinished, *share)
        self.work = estimated_work(queries)
        self.total_work = sum(self.work[q.key] for q in self.todo) or 1.0
        self.done, self.done_work = 0, 0.0
        self.stats = PassStats()
        self.limits = limits or {}

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def run(self) -> str:
        by_video: dict[str, list[Query]] = {}
        for q in self.todo:
            by_video.setdefault(q.video, []).append(q)
        self.emit({"event": "start", "queries": len(self.queries), "todo": len(self.todo), "videos": len(by_video),
                   "finished": self.finished_before, "process": self.share[0], "processes": self.share[1]})  # fmt: skip
        self.started = time.perf_counter()
        status = "interrupted"
        try:
            for video, qs in by_video.items():
                if self.stopped() or not self.video(self.videos / video, qs):
                    status = "stopped"
                    break
            else:
                status = "done"
        finally:
            self.store.info.setdefault("runs", []).append(
                {"protocol": self.protocol, "shared_pass": self.shared, "status": status, "queries": self.done,
                 "process": self.share[0], "processes": self.share[1],
                 "engine_steps": self.stats.steps, "window_rebuilds": self.stats.rebuilds,
                 "restarts": self.stats.restarts, "seconds": round(time.perf_counter() - self.started, 3)}
            )  # fmt: skip
            self.store.save()
        return status

    def finish(
        self, q: Query, response: str | None, seconds: float, error: str | None = None, detail: dict | None = None
    ) -> None:
        self.store.record(q, response, seconds, error, detail)
        self.done += 1
        self.done_work += self.work[q.key]
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.done_work * (self.total_work - self.done_work)
        self.emit({"event": "query", "done": self.done, "todo": len(self.todo), "key": q.key, "video": q.video,
                   "response": response, "error": error, "seconds": seconds, "eta_s": eta})  # fmt: skip

    def fail(self, qs: list[Query], message: str) -> None:
        gets = f"{len(qs)} quer{'y gets' if len(qs) == 1 else 'ies get'} a null response"
        self.emit({"event": "warning", "message": f"{message.rstrip('.')}. {gets}."})
        for q in qs:
            self.finish(q, None, 0.0, message)

    def video(self, path: Path, qs: list[Query]) -> bool:
        """One video's queries in one pass; False when stopped between two of them."""
        from model.device import free_cuda_memory, is_out_of_memory

        try:
            frames = VideoFrames(path, self.fps, self.resize)
        except VideoUnavailable as e:
            self.fail(qs, str(e))
            return True
        left = {q.key: q for q in qs}
        try:
            asks, past_end = plan_asks(self.protocol, qs, frames, self.fps, self.limits)
            for key, message in past_end.items():
                self.fail([left.pop(key)], message)
            mark = time.perf_counter()
            for ask, answers in run_asks(self.engine, frames, asks, self.fps, self.shared, self.stats):
                now = time.perf_counter()
                per_query = (now - mark) / len(ask.queries)  # the pass's time since the previous answer
                mark = now
                for key, got in responses_of(ask, answers, self.fps).items():
                    self.finish(left.pop(key), got.pop("response"), per_query, detail=got)
                if self.stopped():
                    return False
        except VideoUnavailable as e:
            self.fail(list(left.values()), str(e))
        except Exception as e:  # noqa: BLE001 - one video's failure must not end a run of thousands
            if is_out_of_memory(e):
                free_cuda_memory()
            log.debug("pass over %s failed", path, exc_info=True)
            self.fail(list(left.values()), f"{path}: the model failed ({type(e).__name__}: {e})")
            self.engine.reset()
        finally:
            frames.close()
        return True

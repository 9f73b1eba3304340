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
never answers before the video ends). REC is one ask per entry, entering at 0 s, running to the end
of the video; at each probe the latest answer given on a turn before ``ceil(probe realtime)``
seconds counts.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.benchmark.ovo_data import Query
from app.benchmark.ovo_store import RunStore
from model.protocol import RESPONSE, SILENCE

log = logging.getLogger(__name__)

PROTOCOLS = ("offline", "streaming")


class VideoUnavailable(Exception):
    """A query's video is missing or unreadable; the message names the file."""


class VideoFrames:
    """The sampled frames of one video file, taken by the app's file source (the first frame of each
    ``int(video_fps / fps)`` block, as the training data were made), resized to the model's pixel
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


@dataclass
class PassStats:
    steps: int = 0  # engine steps taken
    asks: int = 0  # asks answered


def turns_until(seconds: float, fps: float) -> int:
    """Turns of a stream cut at ``ceil(seconds)`` (OVO-Bench cuts its clips there), at least one."""
    return max(1, round(math.ceil(seconds) * fps))


def plan_asks(protocol: str, queries: list[Query], frames: VideoFrames, fps: float) -> list[Ask]:
    """The asks that answer ``queries`` (all of one video) in ``protocol``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if frames.available(1) == 0:
        raise VideoUnavailable(f"{frames.path}: no frames could be sampled")
    asks: list[Ask] = []
    rec: dict[str, list[Query]] = {}
    for q in queries:
        if protocol == "offline":
            asks.append(Ask(frames.available(turns_until(q.time, fps)) - 1, q.prompt, "forced", [q]))
        elif q.task == "REC":
            rec.setdefault(q.entry, []).append(q)
        else:
            turn = int(math.floor(q.time * fps + 1e-9))
            asks.append(Ask(frames.available(turn + 1) - 1, q.prompt, "first", [q]))
    asks += [Ask(0, probes[0].prompt, "all", probes) for probes in rec.values()]
    return asks


def responses_of(ask: Ask, answers: list[tuple[int, str]], fps: float) -> dict[str, str | None]:
    """Each query's response from its ask's answers [(turn, text)]."""
    if ask.mode != "all":
        return {q.key: answers[0][1] if answers else None for q in ask.queries}
    out = {}
    for q in ask.queries:
        cut = turns_until(q.time, fps)  # the answers given within the stream the probe sees
        given = [text for turn, text in answers if turn < cut]
        out[q.key] = given[-1] if given else None
    return out


def _continue(engine: Any, frames: VideoFrames, ask: Ask, fps: float, stats: PassStats) -> list[tuple[int, str]]:
    """Step from the ask's turn (its prompt already asked) until it is answered."""
    if ask.mode == "forced":
        stats.steps += 1
        result = engine.step(frames[ask.turn], t=ask.turn / fps, force=RESPONSE)
        return [(ask.turn, result.text)]
    answers = []
    k = ask.turn
    while frames.available(k + 1) > k:
        stats.steps += 1
        result = engine.step(frames[k], t=k / fps)
        if result.state == RESPONSE:
            answers.append((k, result.text))
            if ask.mode == "first":
                break
        k += 1
    return answers


def _ask(engine: Any, ask: Ask, fps: float) -> None:
    engine.ask(ask.prompt, t=(ask.turn + 0.5) / fps)  # mid-turn: inside the turn whatever the rounding


def run_asks(
    engine: Any, frames: VideoFrames, asks: list[Ask], fps: float, shared: bool = True, stats: PassStats | None = None
) -> Iterator[tuple[Ask, list[tuple[int, str]]]]:
    """Answer ``asks`` on one video: (ask, [(turn, answer text)]) as each is answered.

    shared: one pass, a snapshot at each ask's turn, restored after its answer. Not shared: for
    each ask a fresh run from the start of the video, the prompt asked before the first frame."""
    stats = stats if stats is not None else PassStats()
    if not shared:
        for ask in asks:
            engine.reset()
            _ask(engine, ask, fps)
            for k in range(ask.turn):
                stats.steps += 1
                engine.step(frames[k], t=k / fps, force=SILENCE)
            stats.asks += 1
            yield ask, _continue(engine, frames, ask, fps, stats)
        return
    engine.reset()
    k = 0
    pending = sorted(asks, key=lambda a: a.turn)  # stable: asks on one turn keep their order
    while pending:
        turn = pending[0].turn
        while k < turn:
            stats.steps += 1
            engine.step(frames[k], t=k / fps, force=SILENCE)
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


def run_benchmark(
    loaded: Any,
    queries: list[Query],
    store: RunStore,
    videos: Path,
    protocol: str = "offline",
    options: Any = None,
    shared: bool = True,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    stop: Any = None,
) -> str:
    """Run the ``queries`` the store has not finished, video by video, recording each as it is
    answered. A missing or unreadable video, or a failure inside a pass, gives its queries a null
    response and a warning, and the run goes on. Returns "done", or "stopped" when ``stop.is_set()``
    between two queries. Events (dicts): start, query (with the ETA), warning."""
    return _Run(loaded, queries, store, videos, protocol, options, shared, on_event, stop).run()


class _Run:
    def __init__(self, loaded, queries, store, videos, protocol, options, shared, on_event, stop) -> None:  # noqa: ANN001
        from app.live.runner import make_engine
        from model.engine import EngineOptions
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
        self.todo = [q for q in queries if not store.finished(q.key)]
        self.work = estimated_work(queries)
        self.total_work = sum(self.work[q.key] for q in self.todo) or 1.0
        self.done, self.done_work = 0, 0.0
        self.stats = PassStats()

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def run(self) -> str:
        by_video: dict[str, list[Query]] = {}
        for q in self.todo:
            by_video.setdefault(q.video, []).append(q)
        self.emit({"event": "start", "queries": len(self.queries), "todo": len(self.todo), "videos": len(by_video)})
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
                 "engine_steps": self.stats.steps, "seconds": round(time.perf_counter() - self.started, 3)}
            )  # fmt: skip
            self.store.save()
        return status

    def finish(self, q: Query, response: str | None, seconds: float, error: str | None = None) -> None:
        self.store.record(q, response, seconds, error)
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
            asks = plan_asks(self.protocol, qs, frames, self.fps)
            mark = time.perf_counter()
            for ask, answers in run_asks(self.engine, frames, asks, self.fps, self.shared, self.stats):
                now = time.perf_counter()
                per_query = (now - mark) / len(ask.queries)  # the pass's time since the previous answer
                mark = now
                for key, response in responses_of(ask, answers, self.fps).items():
                    self.finish(left.pop(key), response, per_query)
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

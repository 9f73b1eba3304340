"""``evaluate``: the live streaming engine (not teacher forcing) over labelled clips.

Each clip's frames go through ``StreamEngine.step`` at the protocol's fps, taken as Live takes them
(``LiveFrameCache``: the frame nearest each second on the video's own timestamps, ``model.frame_times``;
the labels are the annotation's seconds, and that is the frame Live shows the model at that second),
not as training takes them (the release's index rule, 3 % early at 29.97 fps); the data's questions are asked at their turns, and the model's own earlier
states stay in its context, exactly as in a live run. A clip that teaches a Live task with a standing
instruction (``Clip.live_task``: narrate, actions, events) runs under that task, so its first turn is
what Live sends; other clips run under the "question" task with the data's turn-0 question asked at
turn 0. The emitted states and answers are scored against the labels by ``model.train.metrics``.

``compare_models`` is the one base-vs-adapter evaluation: ``streamo-live evaluate --compare`` and the
Training tab's evaluation (``app.training.job.compare_on_heldout``) both run it.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model import protocol as P
from model.engine import EngineOptions, StreamEngine
from model.loading import LoadedModel
from model.presets import TASK_PRESETS, task_instruction
from model.train.data import Clip, DataIssue, attach_frames, clip_frames
from model.train.metrics import ClipOutcome, SecondLabel, cautions, evaluation_report
from model.train.video import FrameCache, VideoError

log = logging.getLogger(__name__)


class EvaluationError(ValueError):
    """Nothing to evaluate; the message says why."""


class LiveFrameCache(FrameCache):
    """The frames Live sees of a file, by time (``model.frame_times``; ``app.sources.file`` applies the
    same rule), resized to the budget and cached on disk beside the training frames under keys of
    their own. Built from a training ``FrameCache`` by :meth:`like` (same folder, processor, fps, budget)."""

    @classmethod
    def like(cls, cache: FrameCache) -> LiveFrameCache:
        if isinstance(cache, LiveFrameCache):
            return cache
        return cls(cache.root, cache.processor, cache.fps, cache.min_pixels, cache.max_pixels)

    def key(self, path: Path) -> str:
        return "live-" + super().key(path)

    def _decode(self, path: Path) -> tuple[np.ndarray, float, int]:
        from model.frames import resize_to_budget

        return decode_by_time(
            path, self.fps, lambda f: resize_to_budget(self.processor, f, self.min_pixels, self.max_pixels)
        )


def decode_by_time(
    path: Path, fps: float, resize: Callable[[np.ndarray], np.ndarray] | None = None
) -> tuple[np.ndarray, float, int]:
    """(frames [n, h, w, 3] RGB uint8, video fps, reported frame count) sampled by time, as Live
    samples the file: ``floor(duration * fps)`` samples, each the frame nearest its second."""
    import cv2

    from model.frame_times import TimePicker, sample_times_count
    from model.video_probe import inspect_video

    facts = inspect_video(path)
    if not facts.ok:
        raise VideoError(f"{path}: {facts.reason}")
    picker: TimePicker[np.ndarray] = TimePicker(fps, sample_times_count(facts.frames / facts.fps, fps), facts.fps)
    kept: list[np.ndarray] = []
    cap = cv2.VideoCapture(str(path))
    try:
        while not picker.done:
            ok, bgr = cap.read()
            samples = picker.push(bgr, cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0) if ok else picker.finish()
            for sample in samples:
                rgb = np.ascontiguousarray(sample.item[:, :, ::-1])
                kept.append(resize(rgb) if resize else rgb)
            if not ok:
                break
    finally:
        cap.release()
    if not kept:
        raise VideoError(f"{path}: no decodable frames (corrupt or truncated?)")
    return np.stack(kept), facts.fps, facts.frames


def live_task(clip: Clip) -> str | None:
    """The Live task a clip is evaluated under: its own (``Clip.live_task``) when that task has a
    standing instruction; None: the "question" task, the data's questions only."""
    task = getattr(clip, "live_task", None)
    preset = TASK_PRESETS.get(task) if task else None
    return task if preset is not None and preset.instruction is not None and not preset.needs_target else None


def run_clip(engine: StreamEngine, clip: Clip, cache: FrameCache, fps: float) -> ClipOutcome:
    """One clip through the engine from a fresh context, under the clip's Live task (its instruction
    on turn 0, as Live sends it; the data's turn-0 instruction, possibly another wording, is not asked
    again) or, without one, under the "question" task with the data's turn-0 question."""
    task = live_task(clip)
    engine.set_options(task=task or "question")
    engine.reset()
    instruction = task_instruction(task) if task else None
    frames = clip_frames(clip, LiveFrameCache.like(cache))  # a missing last second repeats the one before
    labels, emitted = [], []
    for i in range(clip.turns):
        user, assistant = clip.turn(i)
        question, start, _ = P.parse_user_content(user["content"])
        if i == 0 and task is None:
            instruction = question or None
        if question and not (i == 0 and task):
            engine.ask(question)
        result = engine.step(frames[i], t=start)
        labels.append(SecondLabel(*P.parse_assistant_content(assistant["content"])))
        emitted.append(SecondLabel(result.state, result.text))
    return ClipOutcome(clip.name or clip.video.name, fps, labels, emitted, instruction)


def evaluate_clips(
    loaded: LoadedModel,
    clips: Sequence[Clip],
    cache: FrameCache,
    fps: float = 1.0,
    max_turns: int = 120,
    threshold: float | None = None,
    max_answer_tokens: int = 64,
    on_clip: Callable[[int, int, ClipOutcome], None] | None = None,
) -> dict[str, Any]:
    """The report of ``model.train.metrics.evaluation_report`` over ``clips``. Greedy answers; each
    clip under its Live task's instruction, or only the data's questions (see :func:`run_clip`)."""
    options = EngineOptions(
        fps=fps, threshold=threshold, max_answer_tokens=max_answer_tokens, max_turns=max_turns, task="question"
    )
    engine = StreamEngine(loaded, options)
    cache = LiveFrameCache.like(cache)  # one in-memory copy of each clip's frames for all its clips
    outcomes = []
    for k, clip in enumerate(clips):
        outcomes.append(run_clip(engine, clip, cache, fps))
        if on_clip is not None:
            on_clip(k + 1, len(clips), outcomes[-1])
    report = evaluation_report(outcomes)
    report["model"] = loaded.source
    report["adapter"] = str(loaded.adapter) if loaded.adapter else None
    return report


ProgressFn = Callable[[int, int, str], None]  # (done, total, what)


def compare_models(
    source: str,
    adapter: str | Path,
    clips: Sequence[Clip],
    *,
    cache_dir: str | Path,
    fps: float = 1.0,
    max_turns: int = 120,
    threshold: float | None = None,
    max_answer_tokens: int = 64,
    precision: str = "auto",
    device: str = "auto",
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    issues: list[DataIssue] | None = None,
    select: Callable[[list[Clip]], tuple[list[Clip], str]] | None = None,
    progress: ProgressFn | None = None,
    loader: Callable[..., LoadedModel] | None = None,
) -> dict[str, Any]:
    """The base model ``source``, then the base with ``adapter``, through the live engine over ``clips``:
    ``{"base": report, "adapter": report, "cautions": [plain words], "split", "clips": [names],
    "issues": [...], "model": source, "adapter_path"}``; each report's ``clips`` entries carry the
    per-clip strips and answers (``metrics.evaluation_report``).

    ``clips`` get their frames with the first model's processor (a clip whose video fails becomes an
    issue, appended to ``issues``); ``select`` then picks the clips to score from the usable ones and
    names the split (the Training tab: the run's held-out clips, "heldout"); by default all, "given".
    One model is in memory at a time. ``loader`` is ``model.loading.load_model`` (tests pass another)."""
    from model.frames import MIN_PIXELS

    if loader is None:
        from model.loading import load_model as loader
    say = progress or (lambda done, total, what: None)
    issues = issues if issues is not None else []
    runs = (("base", None), ("adapter", Path(adapter)))
    reports: dict[str, Any] = {}
    chosen: list[Clip] = []
    split = "given"
    cache: FrameCache | None = None
    for n, (name, adapter_path) in enumerate(runs):
        say(n, len(runs), f"Loading the {'base model' if adapter_path is None else 'model with the adapter'}")
        loaded = loader(source, precision=precision, device=device, adapter=adapter_path,
                        min_pixels=min_pixels or MIN_PIXELS, max_pixels=max_pixels)  # fmt: skip
        if cache is None:  # the same frames for both models
            cache = FrameCache(cache_dir, loaded.processor, fps, loaded.min_pixels, loaded.max_pixels)
            usable = attach_frames(clips, cache, issues)
            chosen, split = select(usable) if select is not None else (usable, "given")
            if not chosen:
                raise EvaluationError("no usable clips to evaluate" + (
                    ": " + "; ".join(map(str, issues[:5])) if issues else ""))  # fmt: skip

        def on_clip(k: int, total: int, outcome: ClipOutcome, name: str = name, n: int = n) -> None:
            say(n * total + k, len(runs) * total, f"{name}: clip {k}/{total} ({outcome.video})")

        reports[name] = evaluate_clips(loaded, chosen, cache, fps=fps, max_turns=max_turns, threshold=threshold,
                                       max_answer_tokens=max_answer_tokens, on_clip=on_clip)  # fmt: skip
        del loaded
        _free_memory()
    return {
        **reports,
        "cautions": cautions(reports["base"], reports["adapter"]),
        "split": split,
        "clips": [c.name or c.video.name for c in chosen],  # one per clip, as the reports' entries
        "issues": [str(i) for i in issues],
        "model": source,
        "adapter_path": str(adapter),
    }


def _free_memory() -> None:
    """Hand the last model's memory back before the next one loads."""
    gc.collect()
    from model.device import free_cuda_memory

    free_cuda_memory()

"""``evaluate``: the live streaming engine (not teacher forcing) over labelled clips.

Each clip's frames (the training sampler's, from the same cache) go through ``StreamEngine.step``
at the protocol's fps, the data's questions are asked at their turns, and the model's own earlier
states stay in its context, exactly as in a live run. The emitted states and answers are scored
against the labels by ``model.train.metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from model import protocol as P
from model.engine import EngineOptions, StreamEngine
from model.loading import LoadedModel
from model.train.data import Clip, clip_frames
from model.train.metrics import ClipOutcome, SecondLabel, evaluation_report
from model.train.video import FrameCache

log = logging.getLogger(__name__)


def run_clip(engine: StreamEngine, clip: Clip, cache: FrameCache, fps: float) -> ClipOutcome:
    """One clip through the engine from a fresh context."""
    engine.reset()
    frames = clip_frames(clip, cache)
    labels, emitted = [], []
    for i in range(clip.turns):
        user, assistant = clip.turn(i)
        question, start, _ = P.parse_user_content(user["content"])
        if question:
            engine.ask(question)
        result = engine.step(frames[i], t=start)
        labels.append(SecondLabel(*P.parse_assistant_content(assistant["content"])))
        emitted.append(SecondLabel(result.state, result.text))
    return ClipOutcome(clip.name or clip.video.name, fps, labels, emitted)


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
    """The report of ``model.train.metrics.evaluation_report`` over ``clips``. Greedy answers; the
    engine asks only the data's questions (task "question": no standing instruction of its own)."""
    options = EngineOptions(
        fps=fps, threshold=threshold, max_answer_tokens=max_answer_tokens, max_turns=max_turns, task="question"
    )
    engine = StreamEngine(loaded, options)
    outcomes = []
    for k, clip in enumerate(clips):
        outcomes.append(run_clip(engine, clip, cache, fps))
        if on_clip is not None:
            on_clip(k + 1, len(clips), outcomes[-1])
    report = evaluation_report(outcomes)
    report["model"] = loaded.source
    report["adapter"] = str(loaded.adapter) if loaded.adapter else None
    return report

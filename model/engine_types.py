"""What callers of the streaming engine see, without torch: its options, the result of a step, and
the ``Engine`` protocol (the calls the app makes). ``model/engine.py`` implements it
(``StreamEngine``, and re-exports these names); ``tests/fakes.py``'s ``FakeEngine`` implements it
too, and ``tests/model/test_engine_types.py`` checks both against it, signature by signature.

``app/`` is typed against this module, so it can name the engine's types at import time and still
load torch only when a run starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from model.presets import task_instruction

if TYPE_CHECKING:
    import numpy as np

    from model.engine import EngineSnapshot

WINDOW_MODES = ("rebuild", "evict")
# The options ``Engine.update`` applies between steps. Every other field (``fps``: the time labels
# would jump) is fixed for a run: make a new engine to change it.
MID_RUN_OPTIONS: tuple[str, ...] = (
    "threshold",
    "max_answer_tokens",
    "do_sample",
    "temperature",
    "top_p",
    "seed",
    "task",
    "task_target",
    "max_turns",
    "max_tokens",
    "keep_turns",
    "window_mode",
    "full_vocab_head",
)


@dataclass
class EngineOptions:
    fps: float = 1.0
    # Talkativeness: when set, respond iff P(Response) >= threshold (else the likelier of
    # Silence/Standby); None = argmax over the three states.
    threshold: float | None = None
    max_answer_tokens: int = 64
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int | None = None
    max_turns: int = 120  # window budget in turns (the official OVO-Bench setting; the demo used 300)
    max_tokens: int | None = None  # ... and/or in cached tokens
    keep_turns: int | None = None  # turns in context right after a window drop, the new one included
    window_mode: str = "rebuild"  # "rebuild" (exact) | "evict" (approximate, no recompute)
    task: str = "narrate"
    task_target: str | None = None
    full_vocab_head: bool = False  # benchmark variant (c): full LM head over every position of the turn

    def validate(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1] or None, got {self.threshold}")
        if self.max_answer_tokens < 0:
            raise ValueError("max_answer_tokens must be >= 0")
        if self.max_turns < 1:
            raise ValueError("max_turns must be >= 1")
        if self.keep_turns is not None and not 1 <= self.keep_turns <= self.max_turns:
            raise ValueError(f"keep_turns must be in 1..max_turns ({self.max_turns}), got {self.keep_turns}")
        if self.window_mode not in WINDOW_MODES:
            raise ValueError(f"window_mode must be one of {WINDOW_MODES}, got {self.window_mode!r}")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be > 0 and top_p in (0, 1]")
        task_instruction(self.task, self.task_target)  # raises on an unknown task or a missing target

    @property
    def kept_turns(self) -> int:
        return self.keep_turns if self.keep_turns is not None else max(1, self.max_turns // 2)


@dataclass
class StepResult:
    t: float
    end: float  # the interval <t s-end s>
    state: str  # one of protocol.STATE_TOKENS
    probs: dict[str, float]  # the three state probabilities
    text: str  # answer text, "" unless state is </Response>
    question: str | None  # the question/instruction rendered into this turn, if any
    timings: dict[str, float]  # milliseconds: vision, prefill, decision, decode, rebuild, total
    context_turns: int
    context_tokens: int
    rebuilt: bool
    n_answer_tokens: int
    truncated: bool = False  # the answer hit max_answer_tokens; the turn was closed there
    token_ids: list[int] = field(default_factory=list)  # the answer tokens as generated
    approximate: bool = False  # the context went through an evict-mode drop (not exact)
    question_tag: Any = None  # the ``tag`` of the asked question that entered (the caller's own object)


@runtime_checkable
class Engine(Protocol):
    """The streaming engine as the app uses it (``model.engine.StreamEngine``; docs/engine.md).
    Used from one thread. Every method here is checked against ``StreamEngine`` and the test fake."""

    opts: EngineOptions  # the options in force (``update`` changes them)

    @property
    def kernel_path(self) -> str:
        """Which kernels the steps run on, for the status bar ("torch", "triton+triton-state-head")."""
        ...

    def reset(self) -> None:
        """Forget the conversation (the task's instruction waits for the next turn again)."""
        ...

    def ask(self, question: str, t: float | None = None, tag: Any = None) -> str:
        """Queue ``question`` for the turn covering stream second ``t`` (None: the next turn); its
        ``tag`` comes back as ``StepResult.question_tag``. Returns the text as it will be rendered."""
        ...

    def update(self, options: EngineOptions) -> list[str]:
        """Apply ``options`` between steps; returns the changed names that wait for a new engine."""
        ...

    def set_options(self, **changes: Any) -> list[str]:
        """``update`` with keyword changes to the current options."""
        ...

    def step(
        self,
        frame: np.ndarray,
        t: float | None = None,
        on_token: Callable[[str], None] | None = None,
        force: str | None = None,
    ) -> StepResult:
        """One HxWx3 uint8 RGB frame for the interval <t s-(t + 1/fps) s>; answer pieces go to
        ``on_token`` as they are decoded; ``force`` overrides the state decision."""
        ...

    def messages(self) -> list[dict]:
        """The kept conversation in stream format, system first."""
        ...

    def snapshot(self) -> EngineSnapshot:
        """The whole conversation state now (opaque), for ``restore``."""
        ...

    def restore(self, snap: EngineSnapshot) -> None:
        """Return to ``snap`` exactly: questions asked and steps taken since are forgotten."""
        ...

"""Task presets: standing instructions rendered like any question (PROTOCOL.md section 2).

A preset's instruction goes on the stream's first user turn, as the training data carries its
question there, and is the "active question" a window rebuild puts back into the first kept
turn. Switching task mid-stream puts the new instruction on the next user turn (ahead of any
question waiting there).
"""

from __future__ import annotations

from dataclasses import dataclass

from model import protocol as P
from model.protocol import DEFAULT_QUESTION, neutralize_user_text


@dataclass(frozen=True)
class TaskPreset:
    key: str
    label: str
    instruction: str | None  # None: no standing instruction; the user's questions are the task
    needs_target: bool = False  # the instruction has a {target} slot (grounding)


TASK_PRESETS: dict[str, TaskPreset] = {
    p.key: p
    for p in (
        TaskPreset("narrate", "Narrate everything", DEFAULT_QUESTION),
        TaskPreset(
            "actions",
            "Caption actions",
            "Describe each action the person performs, as soon as the action is completed.",
        ),
        TaskPreset(
            "events",
            "Caption events",
            "Describe each event in the video as soon as it ends.",
        ),
        TaskPreset("grounding", "Tell me when ...", "Tell me when {target}.", needs_target=True),
        TaskPreset("question", "Answer my questions", None),
    )
}


def task_instruction(key: str, target: str | None = None) -> str | None:
    """The instruction text of preset ``key``; ``target`` (user text, neutralised by
    ``protocol.neutralize_user_text``) fills the grounding preset's slot."""
    try:
        preset = TASK_PRESETS[key]
    except KeyError:
        raise ValueError(f"unknown task {key!r}; choose one of {', '.join(TASK_PRESETS)}") from None
    if preset.instruction is None:
        return None
    if preset.needs_target:
        target = neutralize_user_text(target or "")  # user text: data, never chat structure
        if not target:
            raise ValueError(f"task {key!r} needs a target, e.g. 'the kettle boils'")
        return preset.instruction.format(target=target.rstrip(".?!"))
    return preset.instruction


# What each annotation task type teaches, as the Live task that asks it (library.TASK_TYPES; case and
# spacing ignored). "Event Grounding" is absent: its question IS the instruction ("tell me when ..."),
# which is what the released converter already puts on the first turn.
LIVE_TASK_OF_TYPE = {"narration": "narrate", "event caption": "events", "action caption": "actions", "qa": "question"}


def live_task_of(task_type: str | None) -> str | None:
    """The Live task a sample of ``task_type`` teaches (no type: narration, the Training tab's default)."""
    return LIVE_TASK_OF_TYPE.get(" ".join((task_type or "Narration").lower().replace("_", " ").split()))


def convert_for_live(sample: dict, n_turns: int, fps: float = 1, index: int = 0) -> dict:
    """``protocol.convert_sample``, with the first turn carrying the instruction Live sends for the
    sample's task (what you train is what Live asks).

    The released converter (rule 7) puts a sample's first question on turn 0 when none was asked
    there, so a question added to a narration clip at 5 s replaced "Find all significant events ..."
    from second 0: an adapter trained so stayed silent under Live's narrate task. Here turn 0 gets
    the Live task's instruction (none for QA: Live's question task has none), and each question stays
    on its own second, where the engine puts a question asked during the stream. A question asked at
    second 0, and grounding samples, keep the converter's turn 0. Everything else is the converter's."""
    out = P.convert_sample(sample, n_turns, fps, index)
    task = live_task_of(sample.get("task_type"))
    if task is None or n_turns == 0:
        return out
    for q in P.raw_entries(sample, "question", index):  # the schema was checked by convert_sample
        if q.get("content") and (t := P.parse_time(q.get("time"), fps)) is not None:
            if P.time_to_turn(t) == 0:
                return out  # asked at second 0: the converter's turn 0 is what a user asking then sees
    first = out["messages"][1]
    first["content"] = P.user_turn_content(0, 1, task_instruction(task), P.STREAM_PLACEHOLDER)
    return out


def has_annotations(sample: dict) -> bool:
    """A raw sample with at least one question or response (an unannotated clip trains only Silence).
    A malformed one counts as annotated: the converter then names what is wrong with it."""
    try:
        entries = [e for key in ("question", "response") for e in P.raw_entries(sample, key, 0)]
    except P.AnnotationError:
        return True
    return any(str(e.get("content") or "").strip() for e in entries)

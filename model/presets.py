"""Task presets: standing instructions rendered like any question (PROTOCOL.md section 2).

A preset's instruction goes on the stream's first user turn, as the training data carries its
question there, and is the "active question" a window rebuild puts back into the first kept
turn. Switching task mid-stream puts the new instruction on the next user turn (ahead of any
question waiting there).
"""

from __future__ import annotations

from dataclasses import dataclass

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

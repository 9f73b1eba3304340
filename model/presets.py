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
    # Other wordings of the instruction, for training only (Live sends ``instruction``): an adapter
    # trained on one sentence learns that sentence, not the task.
    phrasings: tuple[str, ...] = ()


TASK_PRESETS: dict[str, TaskPreset] = {
    p.key: p
    for p in (
        TaskPreset(
            "narrate",
            "Narrate everything",
            DEFAULT_QUESTION,
            phrasings=(
                "Describe each significant event in the video as it happens.",
                "Narrate what happens in the video, one event at a time.",
                "Watch the video and describe every important event.",
            ),
        ),
        TaskPreset(
            "actions",
            "Caption actions",
            "Describe each action the person performs, as soon as the action is completed.",
            phrasings=(
                "Caption every action the person does, once it is finished.",
                "Tell me each action the person completes, right after it ends.",
            ),
        ),
        TaskPreset(
            "events",
            "Caption events",
            "Describe each event in the video as soon as it ends.",
            phrasings=(
                "Caption every event in the video once it is over.",
                "When an event in the video ends, describe it.",
            ),
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


# The raw-sample key that chooses a clip's first-turn instruction (the annotator's choice, kept in
# the annotation file among the keys the format does not know): "task" (absent: the Live task's
# instruction on turn 0, questions at their seconds) or "first_question" (the released converter's
# rule 7: the clip's first question is its instruction from second 0).
INSTRUCTION_FROM_KEY = "instruction_from"
INSTRUCTION_FROM = ("task", "first_question")


def training_instruction(key: str, phrasing: int = 0) -> str | None:
    """The instruction a training sample of task ``key`` carries: phrasing 0 is what Live sends;
    odd ones take the other wordings in turn (``phrasing_of``)."""
    preset = TASK_PRESETS[key]
    if preset.instruction is None or preset.needs_target or phrasing % 2 == 0 or not preset.phrasings:
        return task_instruction(key)
    return preset.phrasings[(phrasing // 2) % len(preset.phrasings)]


def _question_seconds(sample: dict, fps: float, index: int = 0) -> list[tuple[int, str]]:
    out = []
    for q in P.raw_entries(sample, "question", index):
        content = str(q.get("content") or "")
        if content.strip() and (t := P.parse_time(q.get("time"), fps)) is not None:
            out.append((P.time_to_turn(t), content))
    return out


def live_task_applied(sample: dict, n_turns: int, fps: float = 1, index: int = 0) -> str | None:
    """The Live task whose instruction ``convert_for_live`` puts on the sample's first turn (none for
    "question": Live's question task has no standing instruction); None when the first turn is the released converter's (grounding, QA, no type it knows, a question asked
    at second 0, an empty clip, or the clip's choice ``instruction_from: first_question``)."""
    task = live_task_of(sample.get("task_type"))
    if task is None or n_turns == 0:
        return None
    if sample.get(INSTRUCTION_FROM_KEY) == "first_question":
        return None
    if any(second == 0 for second, _ in _question_seconds(sample, fps, index)):
        return None  # asked at second 0: the converter's turn 0 is what a user asking then sees
    return task


def convert_for_live(sample: dict, n_turns: int, fps: float = 1, index: int = 0, phrasing: int = 0) -> dict:
    """``protocol.convert_sample``, with the first turn carrying the instruction Live sends for the
    sample's task (what you train is what Live asks), in wording ``phrasing`` (``training_instruction``).

    The released converter (rule 7) puts a sample's first question on turn 0 when none was asked
    there, so a question added to a narration clip at 5 s replaced "Find all significant events ..."
    from second 0: an adapter trained so stayed silent under Live's narrate task. Here turn 0 gets
    the Live task's instruction (none for QA: Live's question task has none), and each question stays
    on its own second, where the engine puts a question asked during the stream. A question asked at
    second 0, grounding samples, and a clip whose annotator chose ``instruction_from:
    first_question`` keep the converter's turn 0. Everything else is the converter's."""
    out = P.convert_sample(sample, n_turns, fps, index)
    task = live_task_applied(sample, n_turns, fps, index)  # the schema was checked by convert_sample
    if task is not None:
        first = out["messages"][1]
        first["content"] = P.user_turn_content(0, 1, training_instruction(task, phrasing), P.STREAM_PLACEHOLDER)
    return out


def instruction_trap(sample: dict, n_turns: int, fps: float = 1) -> str | None:
    """In plain words, where the released converter's rule would replace the clip's Live instruction
    with one of its questions (the annotator shows it and lets the user choose); None elsewhere."""
    task = live_task_of(sample.get("task_type"))
    if task is None or n_turns == 0 or TASK_PRESETS[task].instruction is None:
        return None
    try:
        asked = sorted(_question_seconds(sample, fps))
    except P.AnnotationError:
        return None
    if not asked or asked[0][0] == 0:
        return None
    second, question = asked[0]
    clock = f"{second // 60}:{second % 60:02d}"
    return (
        f"The released Streamo converter makes this clip's first question (\u201c{question}\u201d, asked at "
        f"{clock}) its instruction from 0:00, in place of the instruction Live's "
        f"\u201c{TASK_PRESETS[task].label}\u201d task sends (\u201c{task_instruction(task)}\u201d). Trained "
        "that way, the adapter waits for that question and stays silent in Live. By default this app trains "
        f"the clip as Live asks it: the task's instruction from 0:00 and the question at {clock}."
    )


UNASKED = "no question asked"  # how a clip's unasked variant is named (``live_variants``)


def live_variants(sample: dict, fps: float = 1, index: int = 0) -> list[tuple[str, dict]]:
    """The conversations a raw sample trains as under Live's tasks, as (label, sample): the sample
    itself ("") and, for a clip of a task with a standing instruction (narrate, events, actions) that
    also holds questions, the same clip with nobody asking (``UNASKED``): its questions left out, and
    with them the instant answers given from the first question's second on. Live narrating that
    footage unasked must narrate it, not answer a question nobody asked (trained only with the question,
    the demo model answered "It is red." at 5 s and 6 s of an unasked narration). The unasked variant
    is added only where an answer remains (an event or an earlier instant answer)."""
    task = live_task_of(sample.get("task_type"))
    if task is None or TASK_PRESETS[task].instruction is None or sample.get(INSTRUCTION_FROM_KEY) == "first_question":
        return [("", sample)]
    try:
        asked = _question_seconds(sample, fps, index)
        responses = P.raw_entries(sample, "response", index)
    except P.AnnotationError:
        return [("", sample)]  # the converter names what is wrong with it
    if not asked:
        return [("", sample)]
    first = min(second for second, _ in asked)
    kept = []
    for r in responses:
        is_event = P.parse_time(r.get("st_time"), fps) is not None and P.parse_time(r.get("end_time"), fps) is not None
        t = P.parse_time(r.get("time"), fps)
        if is_event or (t is not None and P.time_to_turn(t) < first):
            kept.append(r)
    if not any(str(r.get("content") or "").strip() for r in kept):
        return [("", sample)]
    return [("", sample), (UNASKED, {**sample, "question": [], "response": kept})]


def phrasing_of(counts: dict[str, int], sample: dict) -> int:
    """The wording index of the next training sample of ``sample``'s task, counting per task in
    ``counts`` (updated): annotated samples take 0, 1, 0, 2, 0, 3 ... (every other one carries Live's
    own sentence); an unannotated one (an example of nothing happening) always Live's sentence."""
    task = live_task_of(sample.get("task_type"))
    if task is None or not has_annotations(sample):
        return 0
    k = counts.get(task, 0)
    counts[task] = k + 1
    return k


def has_annotations(sample: dict) -> bool:
    """A raw sample with at least one question or response (an unannotated clip trains only Silence).
    A malformed one counts as annotated: the converter then names what is wrong with it."""
    try:
        entries = [e for key in ("question", "response") for e in P.raw_entries(sample, key, 0)]
    except P.AnnotationError:
        return True
    return any(str(e.get("content") or "").strip() for e in entries)

"""What you train is what Live asks (issue 18): a clip's first turn carries the instruction of the Live
task it teaches, its questions enter at their own seconds, exactly as the engine renders a stream of
that task with the same question asked at the same second; unannotated clips are left out on request."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fakes import write_video

from model import protocol as P
from model.presets import UNASKED, convert_for_live, has_annotations, live_task_of, task_instruction
from model.train.data import UNANNOTATED, load_clips

QUESTION = "What colour was the box?"
# A narration clip of 8 s: an event from 3 s to 7 s, and a question asked at 5 s (the library writes
# second i as time i + 1).
CLIP = {
    "video_path": "clip.mp4",
    "task_type": "Narration",
    "question": [{"content": QUESTION, "time": "6"}],
    "response": [
        {"content": "A red box slides across the frame.", "st_time": 4.0, "end_time": 7.0, "time": ""},
        {"content": "It was red.", "time": "7"},
    ],  # fmt: skip
}


def users(sample: dict) -> list[str]:
    return [m["content"] for m in sample["messages"] if m["role"] == "user"]


def test_the_released_rule_puts_the_question_on_turn_0_live_keeps_the_instruction():
    released, live = P.convert_sample(CLIP, 8), convert_for_live(CLIP, 8)
    assert users(released)[0].startswith(QUESTION)  # the trap: narration trained under the question
    assert users(live)[0] == P.user_turn_content(0, 1, P.DEFAULT_QUESTION, P.STREAM_PLACEHOLDER)
    assert users(live)[5] == users(released)[5] == P.user_turn_content(5, 6, QUESTION, P.STREAM_PLACEHOLDER)
    assert users(live)[1:] == users(released)[1:]
    assert [m for m in live["messages"] if m["role"] != "user"] == [
        m for m in released["messages"] if m["role"] != "user"
    ]


@pytest.mark.parametrize(
    ("task_type", "first"),
    [
        ("Event Caption", task_instruction("events")),
        ("action_caption", task_instruction("actions")),
        ("QA", None),  # Live's question task has no standing instruction
        ("Event Grounding", QUESTION),  # grounding: the question is the instruction, as released
    ],
)
def test_each_task_type_gets_its_live_instruction(task_type, first):
    out = convert_for_live({**CLIP, "task_type": task_type}, 8)
    assert users(out)[0] == P.user_turn_content(0, 1, first, P.STREAM_PLACEHOLDER)
    assert (live_task_of(task_type) is None) == (task_type == "Event Grounding")


def test_a_question_asked_at_second_0_stays_the_first_turns():
    sample = {**CLIP, "question": [{"content": QUESTION, "time": "1"}]}
    assert convert_for_live(sample, 8) == P.convert_sample(sample, 8)


def test_training_turns_are_what_the_engine_renders_for_the_narrate_task(tiny_loaded):
    """The engine under Live's narrate task, the question asked at 5 s, the labelled states forced:
    every user turn it renders is the training sample's, word for word (placeholders aside)."""
    from model.engine import EngineOptions, StreamEngine

    live = convert_for_live(CLIP, 8)
    states = [P.parse_assistant_content(m["content"])[0] for m in live["messages"] if m["role"] == "assistant"]
    engine = StreamEngine(tiny_loaded, EngineOptions(task="narrate", max_answer_tokens=2))
    rng = np.random.default_rng(0)
    for k, state in enumerate(states):
        if k == 5:
            engine.ask(QUESTION, 5.0)
        engine.step(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8), float(k), force=state)
    rendered = [m for m in engine.messages() if m["role"] == "user"]
    as_images = [u.replace(P.STREAM_PLACEHOLDER, P.IMAGE_PLACEHOLDER) for u in users(live)]
    assert [m["content"] for m in rendered] == as_images


def test_unannotated_clips_are_left_out_and_named(tmp_path):
    for name in ("clip.mp4", "copy.mp4"):
        write_video(tmp_path / name, 8, 1)
    empty = {"video_path": "copy.mp4", "task_type": "Narration", "question": [], "response": []}
    data = tmp_path / "annotations.json"
    data.write_text(json.dumps([CLIP, empty]))
    assert has_annotations(CLIP) and not has_annotations(empty)

    clips, issues = load_clips([data], tmp_path)  # as released: both, the copy as all-Silence
    assert len(clips) == 2 and users({"messages": clips[0].messages})[0].startswith(QUESTION)

    clips, issues = load_clips([data], tmp_path, live_instructions=True, skip_unannotated=True)
    assert [c.index for c in clips] == [0, 0]  # the clip as asked, and unasked (live_variants)
    assert all(users({"messages": c.messages})[0].startswith(P.DEFAULT_QUESTION) for c in clips)
    assert [(i.index, UNANNOTATED in i.message) for i in issues] == [(1, True)]


def test_the_annotators_choice_first_question_keeps_the_released_rule():
    from model.presets import INSTRUCTION_FROM_KEY, live_task_applied

    chosen = {**CLIP, INSTRUCTION_FROM_KEY: "first_question"}
    assert convert_for_live(chosen, 8) == P.convert_sample(chosen, 8)
    assert live_task_applied(chosen, 8) is None and live_task_applied(CLIP, 8) == "narrate"


def test_the_trap_is_explained_where_the_released_rule_would_replace_the_instruction():
    from model.presets import instruction_trap

    text = instruction_trap(CLIP, 8)
    assert text is not None and QUESTION in text and P.DEFAULT_QUESTION in text and "0:05" in text
    assert instruction_trap({**CLIP, "question": []}, 8) is None  # no question: nothing replaced
    assert instruction_trap({**CLIP, "question": [{"content": QUESTION, "time": "1"}]}, 8) is None  # asked at 0
    assert instruction_trap({**CLIP, "task_type": "QA"}, 8) is None  # Live's question task has no instruction
    assert instruction_trap({**CLIP, "task_type": "Event Grounding"}, 8) is None


def test_annotated_samples_take_the_tasks_wordings_in_turn_every_other_one_lives(tmp_path):
    from model.presets import TASK_PRESETS

    names = [f"c{i}.mp4" for i in range(6)]
    for name in names:
        write_video(tmp_path / name, 8, 1)
    samples = [{**CLIP, "video_path": n} for n in names[:5]]
    samples.insert(2, {"video_path": names[5], "task_type": "Narration", "question": [], "response": []})
    data = tmp_path / "annotations.json"
    data.write_text(json.dumps(samples))
    clips, _ = load_clips([data], tmp_path, live_instructions=True)
    clips = [c for c in clips if not c.name.endswith(f"({UNASKED})")]  # a variant shares its sample's wording
    firsts = [P.parse_user_content(c.messages[1]["content"])[0] for c in clips]
    alt = TASK_PRESETS["narrate"].phrasings
    # annotated: Live's, wording 1, Live's, wording 2, Live's; the unannotated one (third) Live's
    assert firsts == [P.DEFAULT_QUESTION, alt[0], P.DEFAULT_QUESTION, P.DEFAULT_QUESTION, alt[1], P.DEFAULT_QUESTION]
    assert {c.live_task for c in clips} == {"narrate"}
    released, _ = load_clips([data], tmp_path)
    assert {c.live_task for c in released} == {None}


def test_a_narration_clip_with_a_question_also_trains_unasked(tmp_path):
    """Live narrating the footage with nobody asking must narrate it, not answer the question: the clip
    trains as asked (the question at 5 s, its answer at 6 s) and as unasked (no question, no answer
    from the question's second on; the events and earlier answers stay)."""
    from model.presets import live_variants

    early = {"content": "Grey so far.", "time": "3"}  # second 2: before the question, narration
    sample = {**CLIP, "response": [*CLIP["response"], early]}
    variants = live_variants(sample)
    assert [label for label, _ in variants] == ["", UNASKED]
    unasked = variants[1][1]
    assert unasked["question"] == [] and unasked["response"] == [CLIP["response"][0], early]
    states = [m["content"] for m in convert_for_live(unasked, 8)["messages"][2::2]]
    assert states == ["</Silence>", "</Silence>", "</Response> Grey so far.", "</Standby>", "</Standby>",
                      "</Standby>", "</Standby>", "</Response> A red box slides across the frame."]  # fmt: skip
    assert users(convert_for_live(unasked, 8))[0].startswith(P.DEFAULT_QUESTION)
    # Nothing to add: no question, only questions and their answers, QA, the released rule chosen.
    assert len(live_variants({**CLIP, "question": []})) == 1
    assert len(live_variants({**CLIP, "response": [CLIP["response"][1]]})) == 1
    assert len(live_variants({**CLIP, "task_type": "QA"})) == 1
    assert len(live_variants({**CLIP, "instruction_from": "first_question"})) == 1

    write_video(tmp_path / "clip.mp4", 8, 1)
    data = tmp_path / "annotations.json"
    data.write_text(json.dumps([CLIP]))
    clips, issues = load_clips([data], tmp_path, live_instructions=True)
    assert [c.name for c in clips] == ["clip.mp4", f"clip.mp4 ({UNASKED})"] and issues == []
    assert [c.live_task for c in clips] == ["narrate", "narrate"]
    assert QUESTION not in json.dumps(clips[1].messages) and "It was red." not in json.dumps(clips[1].messages)

"""The evaluation through the live engine (issue 18 item 3): a clip that teaches a Live task is scored
under that task's own instruction, exactly the prompt Live sends (and the adapter was trained on);
other clips under the data's own question; and the one base-vs-adapter comparison (``compare_models``)
that the command line and the Training tab share."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fakes import write_video

from model import protocol as P
from model.engine import EngineOptions, StreamEngine
from model.presets import training_instruction
from model.train.data import load_clips
from model.train.evaluate import EvaluationError, compare_models, live_task, run_clip
from model.train.video import FrameCache

QUESTION = "What colour was the box?"
# A narration clip of 8 s: an event from 3 s to 7 s, a question asked at 5 s (second i written as i + 1).
CLIP = {
    "video_path": "clip.mp4",
    "task_type": "Narration",
    "question": [{"content": QUESTION, "time": "6"}],
    "response": [
        {"content": "A red box slides across the frame.", "st_time": 4.0, "end_time": 7.0, "time": ""},
        {"content": "It was red.", "time": "7"},
    ],  # fmt: skip
}


@pytest.fixture
def narration(tmp_path):
    """Two narration samples of one 8 s video (the second takes another wording of the instruction),
    and a QA sample (no standing instruction in Live)."""
    write_video(tmp_path / "clip.mp4", 8, 1)
    data = tmp_path / "annotations.json"
    data.write_text(json.dumps([CLIP, CLIP, {**CLIP, "task_type": "QA"}]))
    return tmp_path, data


def _users(messages: list[dict]) -> list[str]:
    return [m["content"].replace(P.STREAM_PLACEHOLDER, P.IMAGE_PLACEHOLDER) for m in messages if m["role"] == "user"]


def _engine(tiny_loaded) -> StreamEngine:
    return StreamEngine(tiny_loaded, EngineOptions(task="question", max_answer_tokens=2))


def test_a_narrate_clip_is_evaluated_with_lives_narrate_prompt(narration, tiny_loaded):
    """The engine's turn 0 for a narration clip is the training conversation's turn 0 (the canonical
    instruction), and every later user turn too: the question enters at its own second."""
    folder, data = narration
    clips, issues = load_clips([data], folder, live_instructions=True)
    clips = [c for c in clips if c.name == "clip.mp4"]  # the samples as annotated (not their unasked variants)
    assert not issues and [live_task(c) for c in clips] == ["narrate", "narrate", None]
    cache = FrameCache(folder / "cache", tiny_loaded.processor, 1.0, tiny_loaded.min_pixels, tiny_loaded.max_pixels)
    engine = _engine(tiny_loaded)

    outcome = run_clip(engine, clips[0], cache, 1.0)
    assert _users(engine.messages()) == _users(clips[0].messages)
    assert _users(engine.messages())[0].startswith(P.DEFAULT_QUESTION)
    assert outcome.instruction == P.DEFAULT_QUESTION

    # The second sample was trained under another wording; Live (and so the evaluation) sends its own.
    other = training_instruction("narrate", 1)
    assert other != P.DEFAULT_QUESTION and _users(clips[1].messages)[0].startswith(other)
    outcome = run_clip(engine, clips[1], cache, 1.0)
    rendered = _users(engine.messages())
    assert rendered[0] == P.user_turn_content(0, 1, P.DEFAULT_QUESTION, P.IMAGE_PLACEHOLDER)
    assert rendered[1:] == _users(clips[1].messages)[1:]
    assert sum(QUESTION in u for u in rendered) == 1 and QUESTION in rendered[5]
    assert outcome.instruction == P.DEFAULT_QUESTION


def test_a_clip_without_a_live_task_keeps_the_datas_question(narration, tiny_loaded):
    """QA (and released-format data): the "question" task, the data's turn-0 question asked at turn 0."""
    folder, data = narration
    clips, _ = load_clips([data], folder)  # as released: no Live task on any clip
    cache = FrameCache(folder / "cache", tiny_loaded.processor, 1.0, tiny_loaded.min_pixels, tiny_loaded.max_pixels)
    engine = _engine(tiny_loaded)
    for clip in clips:
        assert live_task(clip) is None
        outcome = run_clip(engine, clip, cache, 1.0)
        assert _users(engine.messages()) == _users(clip.messages)
        assert outcome.instruction == QUESTION  # the released converter's rule 7: the question from 0:00


def _fake_loader(tiny_loaded, calls):
    def load(source, *, adapter=None, **kwargs):
        calls.append((source, adapter, kwargs))
        return tiny_loaded

    return load


def test_compare_models_scores_both_models_on_the_selected_clips(narration, tiny_loaded, tmp_path):
    folder, data = narration
    write_video(tmp_path / "other.mp4", 6, 1)
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps([{**CLIP, "video_path": "other.mp4", "response": []}, {**CLIP, "video_path": "x.mp4"}]))
    clips, issues = load_clips([data, extra], folder, live_instructions=True)
    assert len(issues) == 1 and clips[-1].name == "other.mp4"  # x.mp4 does not exist
    calls, said = [], []
    result = compare_models(
        "tiny", folder / "adapter", clips, cache_dir=tmp_path / "cache", device="cpu", max_answer_tokens=2,
        issues=issues, select=lambda usable: (usable[-1:], "heldout"), loader=_fake_loader(tiny_loaded, calls),
        progress=lambda done, total, what: said.append((done, total, what)),
    )  # fmt: skip
    assert [(c[0], c[1]) for c in calls] == [("tiny", None), ("tiny", folder / "adapter")]
    assert set(result) == {"base", "adapter", "cautions", "split", "clips", "issues", "model", "adapter_path"}
    assert result["split"] == "heldout" and result["clips"] == ["other.mp4"]
    assert result["model"] == "tiny" and result["adapter_path"] == str(folder / "adapter")
    assert any("x.mp4" in i for i in result["issues"])
    for name in ("base", "adapter"):
        (entry,) = result[name]["clips"]
        assert entry["video"] == "other.mp4" and len(entry["labelled_states"]) == 6
        assert entry["instruction"] == P.DEFAULT_QUESTION
    # One clip, no labelled answer: too few to trust, said in plain words.
    assert any(c.startswith("only 1 clip and 0 labelled answers") for c in result["cautions"])
    assert said[0] == (0, 2, "Loading the base model") and said[-1][:2] == (2, 2)
    assert "adapter: clip 1/1 (other.mp4)" in said[-1][2]

    with pytest.raises(EvaluationError, match="no usable clips"):
        compare_models("tiny", "a", clips[-1:] + clips[:0], cache_dir=tmp_path / "cache",
                       select=lambda usable: ([], "heldout"), loader=_fake_loader(tiny_loaded, []))  # fmt: skip


def test_evaluation_steps_the_engine_with_the_frames_live_sees(tmp_path, tiny_loaded):
    """``evaluate`` runs what Live does, so its frames are Live's (the file source's, by time), not the
    training cache's: at 29.97 fps the training rule's second 20 is frame 580 (19.35 s), Live's is 599."""
    from fakes import decode_all_rgb

    from app.sources import VideoFileSource
    from model.frames import resize_to_budget
    from model.train.evaluate import LiveFrameCache

    video = write_video(tmp_path / "ntsc.mp4", 660, 30000 / 1001)  # 22.02 s
    train = FrameCache(tmp_path / "cache", tiny_loaded.processor, 1.0, tiny_loaded.min_pixels, tiny_loaded.max_pixels)
    live = LiveFrameCache.like(train)
    with VideoFileSource(video) as src:
        indices = [f.index for f in src.frames(1.0)]
    assert len(indices) == 22 and indices[20] == 599
    ref = decode_all_rgb(video)

    def budget(i):
        return resize_to_budget(tiny_loaded.processor, ref[i], train.min_pixels, train.max_pixels)

    got = live.get(video).frames
    assert len(got) == 22 and all(np.array_equal(got[k], budget(i)) for k, i in enumerate(indices))
    assert np.array_equal(train.get(video).frames[20], budget(580))  # training keeps the release's rule
    again = LiveFrameCache.like(train)
    assert np.array_equal(again.get(video).frames, got) and live.key(video) != train.key(video)

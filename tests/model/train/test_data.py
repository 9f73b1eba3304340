"""Training data (model/train/data.py): annotation files -> clips -> windows -> ids and labels
(PROTOCOL.md sections 2-4), and the protocol helpers it is built on."""

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import write_video

from model import protocol as P
from model.frames import preprocess_frame
from model.train import data as D
from model.train.video import FrameCache

DATA = Path(__file__).resolve().parents[2] / "data" / "streamo"
ANSWER = "The person pours water into the glass."


def stream_messages(n_turns: int, questions=(), responses=()) -> list[dict[str, str]]:
    """A stream-format conversation made by the one converter."""
    raw = {"video_path": "v.mp4", "question": list(questions), "response": list(responses)}
    return P.convert_sample(raw, n_turns)["messages"]


def issues_for(issues: list[D.DataIssue], path: Path) -> list[D.DataIssue]:
    return [i for i in issues if i.file == str(path)]


def assert_issue(issue: D.DataIssue, path: Path, index: int | None, *words: str) -> None:
    text = str(issue)
    assert issue.file == str(path) and issue.index == index
    assert str(path) in text
    if index is not None:
        assert f"sample {index}" in text
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"


# ---------------------------------------------------------------------------------------------
# Token ids and labels


def three_turns() -> list[dict[str, str]]:
    return [
        {"role": "system", "content": P.SYSTEM_PROMPT},
        {"role": "user", "content": P.user_turn_content(0, 1, "What happens?", P.STREAM_PLACEHOLDER)},
        {"role": "assistant", "content": P.SILENCE},
        {"role": "user", "content": P.user_turn_content(1, 2, None, P.STREAM_PLACEHOLDER)},
        {"role": "assistant", "content": P.STANDBY},
        {"role": "user", "content": P.user_turn_content(2, 3, None, P.STREAM_PLACEHOLDER)},
        {"role": "assistant", "content": P.assistant_turn_content(P.RESPONSE, ANSWER)},
    ]


def odd_frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((37, 100), (90, 200), (300, 30))]


def runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    out, start = [], None
    for i, m in enumerate(mask.tolist() + [False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i))
            start = None
    return out


def test_encode_ids_and_labels(tiny_loaded):
    tok, processor = tiny_loaded.tokenizer, tiny_loaded.processor
    messages, frames = three_turns(), odd_frames()
    enc = D.Encoder(tok, processor).encode(messages, frames, key="k")

    singles = [preprocess_frame(processor, f) for f in frames]
    n_tokens = [s.n_tokens for s in singles]
    assert len(set(n_tokens)) == 3  # the odd sizes give different token counts
    image_id = tok.convert_tokens_to_ids(P.IMAGE_PAD)
    im_end = tok.convert_tokens_to_ids(P.IM_END)
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    assert len(newline) == 1

    # Per-segment tokenisation equals tokenising the whole text (last newline dropped), with each
    # image pad expanded to its frame's token count.
    text = P.render_conversation(messages)
    assert text.endswith(P.IM_END + "\n")
    whole = tok(text[:-1], add_special_tokens=False)["input_ids"]
    expected, images = [], iter(n_tokens)
    for t in whole:
        expected += [t] * next(images) if t == image_id else [t]
    assert enc.input_ids.dtype == torch.long and enc.input_ids.tolist() == expected
    assert enc.input_ids[-1].item() == im_end  # the last turn has no trailing newline
    assert (enc.input_ids == image_id).sum().item() == sum(n_tokens)

    # Labels, computed independently: after each "<|im_start|>assistant\n", up to and including
    # the next <|im_end|>.
    prefix = tok(P.ASSISTANT_PREFIX, add_special_tokens=False)["input_ids"]
    want = [D.IGNORE] * len(expected)
    i = 0
    while i < len(expected):
        if expected[i : i + len(prefix)] == prefix:
            j = i + len(prefix)
            while expected[j] != im_end:
                want[j] = expected[j]
                j += 1
            want[j] = im_end
            i = j
        i += 1
    assert enc.labels.tolist() == want

    labelled = enc.labels != D.IGNORE
    assert torch.equal(enc.labels[labelled], enc.input_ids[labelled])
    pieces = [tok.decode(enc.input_ids[a:b].tolist()) for a, b in runs(labelled)]
    assert pieces == [m["content"] + P.IM_END for m in messages if m["role"] == "assistant"]
    assert pieces[2] == f"{P.RESPONSE} {ANSWER}{P.IM_END}"

    ids = enc.input_ids.tolist()
    ends = [p for p, t in enumerate(ids) if t == im_end]
    assert len(ends) == 7  # system, 3 user, 3 assistant
    assert sum(labelled[p].item() for p in ends) == 3
    for p in ends[:-1]:
        assert ids[p + 1] == newline[0] and enc.labels[p + 1].item() == D.IGNORE
    for a, _ in runs(labelled):
        assert ids[a - len(prefix) : a] == prefix and not labelled[a - len(prefix) : a].any()
    assert not labelled[enc.input_ids == image_id].any()
    assert not labelled[: ends[1] + 2].any()  # the system turn and the first user turn

    assert torch.equal(enc.pixel_values, torch.cat([s.pixel_values for s in singles]))
    assert torch.equal(enc.image_grid_thw, torch.cat([s.image_grid_thw for s in singles]))
    assert enc.turns == 3 and enc.key == "k"


def test_encode_rejects_frames_that_do_not_match_the_streams(tiny_loaded):
    encoder = D.Encoder(tiny_loaded.tokenizer, tiny_loaded.processor)
    frames = odd_frames()
    with pytest.raises(ValueError, match="3 images in the messages but 2 frames"):
        encoder.encode(three_turns(), frames[:2], key="clip")
    with pytest.raises(ValueError, match="4 frames"):
        encoder.encode(three_turns(), frames + frames[:1])


# ---------------------------------------------------------------------------------------------
# Reading annotation files


@dataclass
class RawDataset:
    file: Path  # raw annotations (the official example's content, our own video)
    videos: Path  # the --video-prefix folder
    rel: str  # the samples' relative video path
    n_turns: int


@pytest.fixture
def raw_dataset(tmp_path) -> RawDataset:
    samples = json.loads((DATA / "example_raw.json").read_text())
    rel = "clips/ytb_test.mp4"
    for s in samples:
        s["video_path"] = rel
    n_turns = 8  # the example asks at 3 s and 5 s and answers after 6 s: 8 turns hold it all
    # 2 fps: the converter divides the frame count by int(video_fps / fps); the odd frame is dropped.
    write_video(tmp_path / "videos" / rel, n_frames=2 * n_turns + 1, fps=2)
    path = tmp_path / "raw.json"
    path.write_text(json.dumps(samples, indent=2))
    return RawDataset(path, tmp_path / "videos", rel, n_turns)


def test_raw_and_stream_inputs_give_the_same_clips(raw_dataset, tmp_path):
    expected = P.to_stream(P.load_raw_annotations(raw_dataset.file), video_prefix=raw_dataset.videos)
    assert len(expected) == 2 and (len(expected[0]["messages"]) - 1) // 2 == raw_dataset.n_turns
    video = raw_dataset.videos / raw_dataset.rel

    clips, issues = D.load_clips([raw_dataset.file], video_prefix=raw_dataset.videos)
    assert issues == []
    assert [c.messages for c in clips] == [s["messages"] for s in expected]
    assert [(c.file, c.index, c.video, c.name, c.turns) for c in clips] == [
        (str(raw_dataset.file), i, video, "ytb_ls8tmkfD7S0.mp4", raw_dataset.n_turns) for i in range(2)
    ]
    # The official example's answer lands after its Standby turns (st 5, end 6 -> turns 4-5, answer on 6).
    _, answer = clips[0].turn(6)
    assert answer["content"].startswith(P.RESPONSE + " The person is being interviewed")

    stream = tmp_path / "stream.json"
    stream.write_text(P.dump_stream(expected))
    again, issues = D.load_clips([stream], video_prefix=raw_dataset.videos)
    assert issues == [] and [c.messages for c in again] == [c.messages for c in clips]
    assert [c.video for c in again] == [video, video]

    jsonl = tmp_path / "stream.jsonl"
    jsonl.write_text("\n".join(json.dumps(s) for s in expected) + "\n\n")
    lines, issues = D.load_clips([jsonl], video_prefix=raw_dataset.videos)
    assert issues == [] and [c.messages for c in lines] == [c.messages for c in clips]
    assert [c.index for c in lines] == [0, 1]

    raw_jsonl = tmp_path / "raw.jsonl"
    raw_jsonl.write_text("\n".join(json.dumps(s) for s in P.load_raw_annotations(raw_dataset.file)))
    raw_lines, issues = D.load_clips([raw_jsonl], video_prefix=raw_dataset.videos)
    assert issues == [] and [c.messages for c in raw_lines] == [c.messages for c in clips]


def test_one_object_file_is_one_sample(raw_dataset, tmp_path):
    one = tmp_path / "one.json"
    one.write_text(json.dumps(P.load_raw_annotations(raw_dataset.file)[1]))
    clips, issues = D.load_clips([one], video_prefix=raw_dataset.videos)
    assert issues == [] and len(clips) == 1 and clips[0].index == 0
    assert clips[0].turn(0)[0]["content"].startswith("What is the interviewer holding")


def test_folder_stands_for_its_annotation_files(tmp_path):
    folder = tmp_path / "ann"
    folder.mkdir()
    sample = {"messages": stream_messages(2), "videos": ["v.mp4"]}
    (folder / "b.jsonl").write_text(json.dumps(sample) + "\n" + json.dumps(sample) + "\n")
    (folder / "a.json").write_text(json.dumps([sample]))
    (folder / "notes.txt").write_text("not data")
    (folder / "sub").mkdir()
    (folder / "sub" / "c.json").write_text(json.dumps([sample]))  # not recursive

    assert D.annotation_files([folder]) == [folder / "a.json", folder / "b.jsonl"]
    clips, issues = D.load_clips([folder])
    assert issues == []
    assert [(Path(c.file).name, c.index) for c in clips] == [("a.json", 0), ("b.jsonl", 0), ("b.jsonl", 1)]
    assert all(c.messages == sample["messages"] for c in clips)


def test_video_prefix_joins_relative_paths_only(tmp_path):
    absolute = tmp_path / "elsewhere" / "abs.mp4"
    stream = tmp_path / "s.json"
    stream.write_text(
        json.dumps(
            [
                {"messages": stream_messages(2), "videos": ["rel/a.mp4"]},
                {"messages": stream_messages(2), "videos": [str(absolute)]},
            ]
        )
    )
    raw = tmp_path / "r.json"
    raw.write_text(json.dumps([{"video_path": "rel/b.mp4"}, {"video_path": str(absolute)}]))
    probed: list[Path] = []

    def probe(path: Path) -> P.VideoMeta:
        probed.append(path)
        return P.VideoMeta(total_frames=30, fps=10.0)  # 3 turns

    prefix = tmp_path / "prefix"
    clips, issues = D.load_clips([stream, raw], video_prefix=prefix, probe=probe)
    assert issues == []
    assert [c.video for c in clips] == [prefix / "rel/a.mp4", absolute, prefix / "rel/b.mp4", absolute]
    assert probed == [prefix / "rel/b.mp4", absolute]
    assert [c.turns for c in clips] == [2, 2, 3, 3]

    unprefixed, _ = D.load_clips([stream], probe=probe)
    assert [c.video for c in unprefixed] == [Path("rel/a.mp4"), absolute]


# ---------------------------------------------------------------------------------------------
# Bad input: one issue naming the file and the sample, the rest loads


def good_stream_sample(video: str = "v.mp4") -> dict:
    return {"messages": stream_messages(3, [{"content": "Q?", "time": "1"}]), "videos": [video]}


def test_malformed_json_file_among_two(tmp_path):
    bad, good = tmp_path / "bad.json", tmp_path / "good.json"
    bad.write_text('[{"messages": [oops')
    good.write_text(json.dumps([good_stream_sample(), good_stream_sample("w.mp4")]))
    clips, issues = D.load_clips([bad, good])
    assert len(issues) == 1
    assert_issue(issues[0], bad, None, "not valid JSON")
    assert [(c.file, c.index) for c in clips] == [(str(good), 0), (str(good), 1)]


def test_missing_annotation_file_is_an_issue(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(good_stream_sample()))
    clips, issues = D.load_clips([tmp_path / "nope.json", good])
    assert len(clips) == 1 and len(issues) == 1
    assert_issue(issues[0], tmp_path / "nope.json", None, "no such file")


def test_jsonl_with_one_broken_line(tmp_path):
    path = tmp_path / "data.jsonl"
    lines = [json.dumps(good_stream_sample("a.mp4")), "{broken", "", json.dumps(good_stream_sample("c.mp4"))]
    path.write_text("\n".join(lines) + "\n")
    clips, issues = D.load_clips([path])
    assert len(issues) == 1
    assert_issue(issues[0], path, 1, "line 2", "not valid JSON")
    assert [(c.index, c.video.name) for c in clips] == [(0, "a.mp4"), (3, "c.mp4")]


def test_sample_that_is_not_an_object(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([good_stream_sample(), ["a", "list"], "text", good_stream_sample("w.mp4")]))
    clips, issues = D.load_clips([path])
    assert [c.index for c in clips] == [0, 3]
    assert len(issues) == 2
    assert_issue(issues[0], path, 1, "expected an object", "list")
    assert_issue(issues[1], path, 2, "expected an object", "str")


def test_raw_sample_whose_video_is_missing(raw_dataset):
    samples = P.load_raw_annotations(raw_dataset.file)
    samples[0]["video_path"] = "clips/missing.mp4"
    raw_dataset.file.write_text(json.dumps(samples))
    clips, issues = D.load_clips([raw_dataset.file], video_prefix=raw_dataset.videos)
    assert [c.index for c in clips] == [1]
    assert len(issues) == 1
    assert_issue(issues[0], raw_dataset.file, 0, str(raw_dataset.videos / "clips/missing.mp4"), "skipped")


def test_raw_sample_problems_are_warned_and_still_loaded(raw_dataset):
    samples = P.load_raw_annotations(raw_dataset.file)
    samples[1]["question"].append({"content": "Too late?", "time": "30"})
    samples[1]["response"] = [{"content": "", "st_time": 2, "end_time": 3}]
    raw_dataset.file.write_text(json.dumps(samples))
    clips, issues = D.load_clips([raw_dataset.file], video_prefix=raw_dataset.videos)
    assert [c.index for c in clips] == [0, 1]  # warned, still loaded as the converter leaves it
    assert len(issues) == 2
    assert_issue(issues[0], raw_dataset.file, 1, "question 1", "'30'", "past the clip's end")
    assert_issue(issues[1], raw_dataset.file, 1, "response 0: This event has no description")
    assert all("skipped" not in str(i) for i in issues)
    states = [clips[1].turn(i)[1]["content"] for i in range(clips[1].turns)]
    assert states == [P.SILENCE, P.STANDBY, P.STANDBY] + [P.SILENCE] * 5
    assert all("Too late?" not in m["content"] for m in clips[1].messages)


def test_stream_response_without_answer_is_skipped(tmp_path):
    broken = good_stream_sample()
    broken["messages"][4]["content"] = P.RESPONSE  # turn 1
    path = tmp_path / "s.json"
    path.write_text(json.dumps([good_stream_sample("a.mp4"), broken, good_stream_sample("c.mp4")]))
    clips, issues = D.load_clips([path])
    assert [c.index for c in clips] == [0, 2]
    assert len(issues) == 1
    assert_issue(issues[0], path, 1, "turn 1", P.RESPONSE, "without an answer", "skipped")


@pytest.mark.parametrize(
    "content",
    [
        "<1s-2s><stream>",  # no newline before the image
        "<1s-2s>\n<video>",  # not an image placeholder
        "Q? <1s-2s>\n<stream>",  # the question not on its own line
        "<1s>\n<stream>",  # not an interval
        "",
    ],
)
def test_stream_sample_with_malformed_user_turn_is_skipped(tmp_path, content):
    broken = good_stream_sample()
    broken["messages"][3]["content"] = content  # turn 1's user message
    path = tmp_path / "s.json"
    path.write_text(json.dumps([broken, good_stream_sample("b.mp4")]))
    clips, issues = D.load_clips([path])
    assert [c.index for c in clips] == [1]
    assert len(issues) == 1
    assert_issue(issues[0], path, 0, "turn 1", "skipped")


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda s: s.update(videos=[]), ["'videos'"]),
        (lambda s: s.update(videos="v.mp4"), ["'videos'"]),
        (lambda s: s["messages"].pop(0), ["system"]),
        (lambda s: s["messages"].pop(), ["pairs"]),
        (lambda s: s["messages"][2].update(role="user"), ["turn 0", "user then an assistant"]),
        (lambda s: s["messages"][2].update(content="Silence"), ["turn 0", "state token"]),
        (lambda s: s["messages"][1].update(content=None), ["'messages'"]),
    ],
)
def test_stream_sample_with_wrong_structure_is_skipped(tmp_path, mutate, words):
    broken = good_stream_sample()
    mutate(broken)
    path = tmp_path / "s.json"
    path.write_text(json.dumps([good_stream_sample("a.mp4"), broken]))
    clips, issues = D.load_clips([path])
    assert [c.index for c in clips] == [0]
    assert len(issues) == 1
    assert_issue(issues[0], path, 1, *words, "skipped")


def test_sample_that_is_neither_format(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps([{"video": "v.mp4", "turns": []}, good_stream_sample()]))
    clips, issues = D.load_clips([path])
    assert [c.index for c in clips] == [1]
    assert len(issues) == 1
    assert_issue(issues[0], path, 0, "neither a raw annotation", "nor a stream sample")


def test_raw_sample_with_a_wrong_schema_is_skipped(raw_dataset):
    samples = P.load_raw_annotations(raw_dataset.file)
    samples[0]["question"] = "what?"  # not a list of objects
    raw_dataset.file.write_text(json.dumps(samples))
    clips, issues = D.load_clips([raw_dataset.file], video_prefix=raw_dataset.videos)
    assert [c.index for c in clips] == [1]
    assert len(issues) == 1
    assert_issue(issues[0], raw_dataset.file, 0, "'question'", "skipped")


# ---------------------------------------------------------------------------------------------
# Frames against turns


def stream_clip(video: Path, n_turns: int, index: int, file: str = "s.json") -> D.Clip:
    return D.Clip(stream_messages(n_turns), video, file, index)


def test_attach_frames_drops_clips_off_by_more_than_one(raw_dataset, tiny_loaded, tmp_path):
    video = raw_dataset.videos / raw_dataset.rel  # 17 frames at 2 fps: 9 frames at 1 fps
    cache = FrameCache(tmp_path / "cache", tiny_loaded.processor)
    assert len(cache.get(video).frames) == 9
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(b"\x00not a video" * 100)
    clips = [stream_clip(video, n, i) for i, n in enumerate((8, 9, 10, 11, 7))]
    clips.append(stream_clip(noise, 3, 5))
    issues: list[D.DataIssue] = []
    kept = D.attach_frames(clips, cache, issues)

    assert [c.index for c in kept] == [0, 1, 2]
    assert [i.index for i in issues] == [3, 4, 5]
    assert_issue(issues[0], Path("s.json"), 3, str(video), "9 frames", "11 turns", "skipped")
    assert_issue(issues[1], Path("s.json"), 4, "9 frames", "7 turns", "skipped")
    assert_issue(issues[2], Path("s.json"), 5, str(noise), "skipped")
    assert cache.decoded == 1  # one video, decoded once

    frames = np.asarray(cache.get(video).frames)
    cut = D.clip_frames(kept[0], cache)  # 8 turns: the extra frame is cut
    assert cut.shape == (8, *frames.shape[1:]) and np.array_equal(cut, frames[:8])
    assert np.array_equal(D.clip_frames(kept[1], cache), frames)
    padded = D.clip_frames(kept[2], cache)  # 10 turns: the last frame repeats
    assert padded.shape == (10, *frames.shape[1:])
    assert np.array_equal(padded[:9], frames) and np.array_equal(padded[9], frames[8])


# ---------------------------------------------------------------------------------------------
# Windows


def seven_turn_clip() -> D.Clip:
    messages = stream_messages(
        7,
        questions=[{"content": "What is on the table?", "time": "1"}, {"content": "And now?", "time": "5"}],
        responses=[{"content": ANSWER, "time": "4"}],  # time 4: turn 3
    )
    return D.Clip(messages, Path("/videos/v.mp4"), "f.json", 4)


def test_cut_windows_puts_the_active_question_on_each_first_turn():
    clip = seven_turn_clip()
    before = copy.deepcopy(clip.messages)
    assert clip.turn(0)[0]["content"] == "What is on the table?\n<0s-1s>\n<stream>"
    assert clip.turn(4)[0]["content"] == "And now?\n<4s-5s>\n<stream>"

    windows = D.cut_windows(clip, max_turns=3)
    assert [(w.first, w.turns) for w in windows] == [(0, 3), (3, 3), (6, 1)]
    assert all(w.clip is clip and w.messages[0] == {"role": "system", "content": P.SYSTEM_PROMPT} for w in windows)
    assert windows[0].messages == clip.messages[:7]
    assert windows[1].messages[1]["content"] == "What is on the table?\n<3s-4s>\n<stream>"
    assert windows[1].messages[3]["content"] == "And now?\n<4s-5s>\n<stream>"  # its own question
    assert windows[1].messages[5]["content"] == "<5s-6s>\n<stream>"
    assert windows[2].messages[1:] == [
        {"role": "user", "content": "And now?\n<6s-7s>\n<stream>"},
        {"role": "assistant", "content": P.SILENCE},
    ]
    for w in windows:  # the original time labels and states
        for k in range(w.turns):
            _, start, end = P.parse_user_content(w.messages[1 + 2 * k]["content"])
            assert (start, end) == (w.first + k, w.first + k + 1)
            assert w.messages[2 + 2 * k] == clip.turn(w.first + k)[1]
    assert windows[1].messages[2]["content"] == f"{P.RESPONSE} {ANSWER}"  # turn 3 answers
    assert windows[1].key == "f.json sample 4 turns 3-5" and windows[2].key == "f.json sample 4 turns 6-6"
    assert clip.messages == before  # the clip itself is untouched


def test_cut_windows_keeps_a_turns_own_question():
    clip = seven_turn_clip()
    windows = D.cut_windows(clip, max_turns=2)
    assert [(w.first, w.turns) for w in windows] == [(0, 2), (2, 2), (4, 2), (6, 1)]
    firsts = [w.messages[1]["content"] for w in windows]
    assert firsts == [
        "What is on the table?\n<0s-1s>\n<stream>",
        "What is on the table?\n<2s-3s>\n<stream>",
        "And now?\n<4s-5s>\n<stream>",  # turn 4 asks its own question
        "And now?\n<6s-7s>\n<stream>",
    ]
    assert all(P.count_images(w.messages) == w.turns for w in windows)
    (whole,) = D.cut_windows(clip, max_turns=7)
    assert whole.messages == clip.messages and D.cut_windows(clip, max_turns=100)[0].messages == clip.messages
    with pytest.raises(ValueError):
        D.cut_windows(clip, max_turns=0)


# ---------------------------------------------------------------------------------------------
# Held-out split


def many_clips() -> list[D.Clip]:
    clips = []
    for v in range(10):
        for _ in range(2 if v < 5 else 1):  # videos 0-4 have two clips each
            clips.append(D.Clip([], Path(f"/videos/v{v}.mp4"), "f.json", len(clips)))
    return clips


def held_videos(held: list[D.Clip]) -> set[str]:
    return {str(c.video) for c in held}


def test_split_by_video_keeps_videos_whole():
    clips = many_clips()
    train, held = D.split_by_video(clips, 0.3, seed=0)
    assert len(held_videos(held)) == 3
    assert held_videos(train).isdisjoint(held_videos(held))
    assert sorted(c.index for c in train + held) == list(range(len(clips)))
    for v in held_videos(held):  # every clip of a held-out video is held out
        assert sum(str(c.video) == v for c in held) == sum(str(c.video) == v for c in clips)

    again_train, again_held = D.split_by_video(clips, 0.3, seed=0)
    assert [c.index for c in again_held] == [c.index for c in held]
    assert [c.index for c in again_train] == [c.index for c in train]
    others = {frozenset(held_videos(D.split_by_video(clips, 0.3, seed=s)[1])) for s in range(1, 20)}
    assert len(others | {frozenset(held_videos(held))}) > 1
    assert all(len(h) == 3 for h in others)


def test_split_by_video_edge_cases():
    clips = many_clips()
    assert D.split_by_video(clips, 0.0, seed=3) == (clips, [])
    one_video = [D.Clip([], Path("/videos/only.mp4"), "f.json", i) for i in range(3)]
    assert D.split_by_video(one_video, 0.5) == (one_video, [])
    assert D.split_by_video(one_video, 0.9) == (one_video, [])
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="holdout"):
            D.split_by_video(clips, bad)


# ---------------------------------------------------------------------------------------------
# Protocol helpers the data pipeline is built on


def test_render_segments_concatenate_to_render_conversation():
    messages = three_turns()
    segments = P.render_segments(messages)
    text = P.render_conversation(messages)
    assert "".join(t for t, _ in segments) == text
    trimmed = P.render_segments(messages, final_newline=False)
    assert "".join(t for t, _ in trimmed) == text[:-1] and text.endswith("\n")
    assert [t for t, lab in segments if lab] == [
        P.SILENCE,
        P.IM_END,
        P.STANDBY,
        P.IM_END,
        f"{P.RESPONSE} {ANSWER}",
        P.IM_END,
    ]
    assert [t for t, lab in trimmed if lab] == [t for t, lab in segments if lab]
    assert (P.ASSISTANT_PREFIX, False) in segments and ("\n", False) in segments
    # A conversation ending with a user turn loses only that turn's newline.
    user_last = messages[:-1]
    assert (
        "".join(t for t, _ in P.render_segments(user_last, final_newline=False))
        == P.render_conversation(user_last)[:-1]
    )
    assert P.render_segments([], final_newline=False) == []


@pytest.mark.parametrize(
    "start, end, question",
    [
        (0, 1, None),
        (3, 4, "What happens?"),
        (12, 13, "First line\nsecond line\n"),  # newlines inside the question
        (3.5, 4, "Half a second"),  # 2 fps labels
        (0.5, 1, None),
        (7, 7.5, "a\n<1s-2s>\nlooks like a label"),
    ],
)
def test_parse_user_content_round_trips(start, end, question):
    for placeholder in (P.STREAM_PLACEHOLDER, P.IMAGE_PLACEHOLDER):
        content = P.user_turn_content(start, end, question, placeholder)
        assert P.parse_user_content(content) == (question, float(start), float(end))


@pytest.mark.parametrize(
    "content",
    ["<1s-2s><stream>", "<1s-2s>\n<video>", "Q? <1s-2s>\n<stream>", "<1-2>\n<stream>", "<s-2s>\n<stream>", ""],
)
def test_parse_user_content_rejects_malformed(content):
    with pytest.raises(ValueError):
        P.parse_user_content(content)


def test_parse_user_content_rejects_a_trailing_newline():
    content = "<1s-2s>\n<stream>\n"
    try:
        P.parse_user_content(content)
        accepted = True
    except ValueError:
        accepted = False
    assert not accepted, "a user turn with a trailing newline was parsed"
    messages = [{"role": "system", "content": P.SYSTEM_PROMPT}, {"role": "user", "content": "<0s-1s>\n<stream>\n"}]
    assert D.stream_sample_problems(
        {"messages": [*messages, {"role": "assistant", "content": P.SILENCE}], "videos": ["v.mp4"]}
    )


def test_raw_sample_problems_names_each_problem():
    n = 8
    clean = {
        "video_path": "v.mp4",
        "question": [{"content": "Q?", "time": "3"}],
        "response": [
            {"content": "Inside.", "st_time": 3, "end_time": n - 1},  # answer on the last turn
            {"content": "At a time.", "time": "2"},
        ],
    }
    assert P.raw_sample_problems(clean, n) == []

    def problems(**changes) -> list[str]:
        return P.raw_sample_problems({**clean, **changes}, n)

    (past,) = problems(question=[{"content": "Late?", "time": "20"}])
    assert "question 0: " in past and "'20'" in past and "past the clip's end (0:08)" in past
    (empty,) = problems(response=[{"content": "", "st_time": 2, "end_time": 3}])
    assert "response 0: This event has no description" in empty and "Standby" in empty
    (empty_timed,) = problems(response=[{"content": "", "time": 2}])
    assert "response 0: This answer has no text" in empty_timed
    (backwards,) = problems(response=[{"content": "x", "st_time": 5, "end_time": 3}])
    assert "response 0: It ends (0:03) before it starts (0:04)" in backwards  # turns: Standby 4.., answer 3
    (after,) = problems(response=[{"content": "Too late.", "st_time": 3, "end_time": n}])
    assert "response 0: " in after and "past the clip's last second (0:07)" in after
    # The converter agrees: the answer is dropped, its Standby turns are kept.
    states = [
        m["content"] for m in P.convert_sample({**clean, "response": [clean["response"][0]]}, n)["messages"][2::2]
    ]
    assert states[-1] == f"{P.RESPONSE} Inside."
    states = [
        m["content"]
        for m in P.convert_sample({**clean, "response": [{"content": "Too late.", "st_time": 3, "end_time": n}]}, n)[
            "messages"
        ][2::2]
    ]
    assert states == [P.SILENCE, P.SILENCE] + [P.STANDBY] * 6
    two = problems(question=[{"content": "Late?", "time": "20"}], response=[{"content": "", "time": 2}])
    assert len(two) == 2 and "question 0" in two[0] and "response 0" in two[1]

"""The clip library: imports with reasons, the saved raw file the trainer reads unchanged, the
seconds convention, turns from the one converter, validation naming items, undo/redo, atomic
saves that keep edits when the disk says no, stream-format files read back into events."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fakes import write_video

from app.training import library as L
from app.training.library import ItemRef, Library, LibraryError, stream_to_raw
from model import protocol as P

DATA = Path(__file__).resolve().parents[2] / "data" / "streamo"


def clip_file(path: Path, seconds: int = 6, fps: int = 10) -> Path:
    return write_video(path, seconds * fps, fps, (96, 64))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    clip_file(folder / "videos" / "a.mp4")
    clip_file(folder / "videos" / "b.mp4", seconds=4)
    return folder


def saved(lib: Library) -> list[dict]:
    return json.loads(lib.annotation_path.read_text(encoding="utf-8"))


def test_import_reports_unreadable_files_and_saves_one_raw_file_the_trainer_reads(
    project: Path, tmp_path: Path
) -> None:
    (project / "videos" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200)
    (project / "videos" / "notes.txt").write_text("not a video")
    outside = clip_file(tmp_path / "elsewhere" / "c.mov", seconds=3)
    lib = Library(project)
    report = lib.import_videos([project / "videos", project / "videos" / "notes.txt", outside, tmp_path / "gone.mp4"])
    assert [c.name for c in report.added] == ["a.mp4", "b.mp4", "c.mov"]
    reasons = dict((Path(p).name, why) for p, why in report.failed)
    assert set(reasons) == {"corrupt.mp4", "notes.txt", "gone.mp4"}
    assert "corrupt" in reasons["corrupt.mp4"] and "re-encode" in reasons["corrupt.mp4"]
    assert "text file, not a video" in reasons["notes.txt"]
    assert reasons["gone.mp4"] == "no such file"
    a = lib.clips[0]
    assert (a.n_turns, a.duration, a.block) == (6, 6.0, 10)

    lib.add_event(a.id, "A bar sweeps across.", 2, 5)
    lib.add_answer(a.id, "Grey again.", 1)
    lib.add_question(a.id, "What moves?", 0)
    samples = saved(lib)
    assert [s["video_path"] for s in samples] == ["videos/a.mp4", "videos/b.mp4", str(outside)]
    assert samples[0]["question"] == [{"content": "What moves?", "time": "1"}]
    # Seconds 2..4 are Standby, the answer comes on second 5: st_time 3, end_time 5 (PROTOCOL.md rule 3).
    assert samples[0]["response"] == [
        {"content": "A bar sweeps across.", "st_time": 3.0, "end_time": 5.0, "time": ""},
        {"content": "Grey again.", "st_time": "", "end_time": "", "time": "2"},
    ]

    from model.train.data import load_clips

    clips, issues = load_clips([lib.annotation_path], video_prefix=lib.video_prefix)
    assert issues == [] and len(clips) == 3
    # turns() is what to-stream makes of the saved file, turn for turn.
    stream = P.to_stream(samples, video_prefix=project)
    states = [m["content"] for m in stream[0]["messages"][2::2]]
    assert states == [
        "</Silence>",
        "</Response> Grey again.",
        "</Standby>",
        "</Standby>",
        "</Standby>",
        "</Response> A bar sweeps across.",
    ]
    for clip, converted in zip(lib.clips, stream, strict=True):
        turns = lib.turns(clip)
        assert [P.assistant_turn_content(t.state, t.text) for t in turns] == [
            m["content"] for m in converted["messages"][2::2]
        ]
        assert [t.question for t in turns] == [
            P.parse_user_content(m["content"])[0] for m in converted["messages"][1::2]
        ]

    # Importing the same files again adds nothing.
    again = lib.import_videos([project / "videos"])
    assert again.added == [] and any("already in the library" in n for n in again.notes)


def test_validation_names_the_item_and_agrees_with_the_converter(project: Path) -> None:
    lib = Library(project)
    lib.import_videos([project / "videos" / "a.mp4"])
    cid = lib.clips[0].id
    lib.add_event(cid, "fine", 0, 2)
    lib.add_event(cid, "backwards", 4, 3)
    lib.add_event(cid, "too late", 3, 6)  # 6 turns: the answer would be on second 6
    lib.add_event(cid, "", 1, 2)
    lib.add_answer(cid, "after the end", 9)
    lib.add_question(cid, "late?", 7)
    lib.add_question(cid, "", 1)
    lib.add_answer(cid, "replaced", 2)  # the "fine" event answers on second 2 first; this one wins
    clip = lib.clips[0]
    by_ref: dict[ItemRef, list[str]] = {}
    for p in lib.problems(clip):
        by_ref.setdefault(p.ref, []).append(p.message)  # type: ignore[arg-type]
    r, q = (lambda i: ItemRef(L.RESPONSE, i)), (lambda i: ItemRef(L.QUESTION, i))
    assert "before it starts" in by_ref[r(1)][0]
    assert "past the clip's last second" in by_ref[r(2)][0]
    assert "no description" in by_ref[r(3)][0]
    assert "past the clip's end" in by_ref[r(4)][0]
    assert "past the clip's end" in by_ref[q(0)][0]
    assert "no text" in by_ref[q(1)][0]
    assert "overwritten" in by_ref[r(0)][0]
    assert r(5) not in by_ref  # the item that wins is fine
    # The converter's own explanation finds the same kinds of trouble in the saved sample.
    assert P.raw_sample_problems(clip.to_raw(), clip.n_turns)
    fine = lib.clips[0]
    for ref in sorted(by_ref, key=lambda x: (x.kind, -x.index)):
        fine = lib.clips[0]
        lib.remove_item(fine.id, ref)
    assert lib.problems(lib.clips[0]) == []
    assert P.raw_sample_problems(lib.clips[0].to_raw(), lib.clips[0].n_turns) == []


def test_undo_redo_and_backup_follow_every_edit(project: Path) -> None:
    lib = Library(project)
    lib.import_videos([project / "videos" / "a.mp4", project / "videos" / "b.mp4"])
    a, b = lib.clips
    lib.add_event(a.id, "first", 1, 3)
    lib.update_item(a.id, ItemRef(L.RESPONSE, 0), "first, edited", start=2, end=4)
    assert saved(lib)[0]["response"][0] == {"content": "first, edited", "st_time": 3.0, "end_time": 4.0, "time": ""}
    assert json.loads(lib.backup_path.read_text())[0]["response"][0]["content"] == "first"
    lib.remove_clips([b.id])
    assert [s["video_name"] for s in saved(lib)] == ["a.mp4"]

    assert lib.undo().label == "remove 1 clip"  # type: ignore[union-attr]
    assert [c.id for c in lib.clips] == [a.id, b.id]
    lib.undo()
    assert saved(lib)[0]["response"][0]["content"] == "first"
    lib.undo()
    lib.undo()  # the import
    assert lib.clips == () and saved(lib) == [] and not lib.can_undo
    lib.redo()
    lib.redo()
    assert saved(lib)[0]["response"] == [{"content": "first", "st_time": 2.0, "end_time": 3.0, "time": ""}]
    # A new edit drops what could be redone.
    lib.set_task_type(a.id, "Event Caption")
    assert not lib.can_redo and saved(lib)[0]["task_type"] == "Event Caption"
    # Reopening the folder gives the same library.
    again = Library(project)
    assert [c.to_raw() for c in again.clips] == [c.to_raw() for c in lib.clips]


def test_a_failed_save_keeps_the_edit_and_the_next_save_writes_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = Library(project)
    lib.import_videos([project / "videos" / "a.mp4"])
    before = lib.annotation_path.read_bytes()

    def disk_full(path, text, **kwargs):  # noqa: ANN001, ANN003
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(L, "write_text_atomic", disk_full)
    lib.add_event(lib.clips[0].id, "kept in memory", 0, 2)
    assert lib.save_error and "No space left on device" in lib.save_error and "kept" in lib.save_error
    assert lib.annotation_path.read_bytes() == before
    assert lib.clips[0].responses[0].content == "kept in memory"
    monkeypatch.undo()
    lib.add_question(lib.clips[0].id, "and this", 0)
    assert lib.save_error is None
    sample = saved(lib)[0]
    assert [r["content"] for r in sample["response"]] == ["kept in memory"] and sample["question"][0][
        "content"
    ] == "and this"


def test_a_malformed_project_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "annotations.json").write_text('[{"video_path": "a.mp4",', encoding="utf-8")
    with pytest.raises(LibraryError, match=r"not valid JSON.*annotations.json.bak"):
        Library(folder)
    assert (folder / "annotations.json").read_text() == '[{"video_path": "a.mp4",'


def test_samples_it_cannot_show_are_kept_in_the_file(project: Path) -> None:
    odd = [{"video_path": "videos/a.mp4", "response": [{"content": "x", "time": "2"}]}, 42, {"response": "bad"}]
    (project / "annotations.json").write_text(json.dumps(odd), encoding="utf-8")
    lib = Library(project)
    assert len(lib.clips) == 1 and len(lib.notes) == 2
    lib.set_task_type(lib.clips[0].id, "QA")
    assert saved(lib)[1:] == [42, {"response": "bad"}]


def test_import_annotations_raw_stream_and_malformed(project: Path, tmp_path: Path) -> None:
    lib = Library(project)
    lib.import_videos([project / "videos" / "a.mp4"])  # not annotated yet: an import fills it in
    cid = lib.clips[0].id
    raw = [
        {
            "video_name": "a.mp4",
            "video_path": "videos/a.mp4",
            "task_type": "QA",
            "source": "mine",
            "question": [{"content": "What?", "time": "3"}],
            "response": [{"content": "That.", "st_time": 3.0, "end_time": 4.0, "time": ""}],
        },
        {"video_path": "videos/b.mp4", "question": [], "response": [{"content": "Now.", "time": "2"}]},
        {"video_path": "videos/missing.mp4", "response": [{"content": "kept", "time": "1"}]},
        {"video_path": "videos/b.mp4", "response": [{"content": 5, "time": "1"}]},
    ]
    raw_file = project / "in" / "raw.json"
    raw_file.parent.mkdir()
    raw_file.write_text(json.dumps(raw), encoding="utf-8")
    report = lib.import_annotations(raw_file, video_prefix=project)
    assert [c.id for c in report.updated] == [cid]
    assert [c.name for c in report.added] == ["b.mp4", "missing.mp4"]
    assert report.failed and "non-string content" in report.failed[0][1]
    assert any("no readable video" in n for n in report.notes)
    assert saved(lib)[0]["response"] == raw[0]["response"] and saved(lib)[0]["task_type"] == "QA"
    assert lib.clips[2].meta is None  # its annotations are kept, its video is named as missing
    assert "no such file" in lib.problems(lib.clips[2])[0].message

    # Stream format out and back in: the same events, answers and questions.
    out = lib.export_stream(tmp_path / "export" / "stream.json")
    assert out.written == 2 and out.skipped and "missing.mp4" in out.skipped[0]
    fresh = Library(tmp_path / "other")
    report = fresh.import_annotations(out.path)
    assert report.failed == [] and len(report.added) == 2
    assert [c.to_raw()["response"] for c in fresh.clips] == [c.to_raw()["response"] for c in lib.clips[:2]]
    assert [c.to_raw()["question"] for c in fresh.clips] == [c.to_raw()["question"] for c in lib.clips[:2]]
    assert [lib.turns(c) for c in lib.clips[:2]] == [fresh.turns(c) for c in fresh.clips]
    # JSON Lines (as some releases ship): a broken line is named, the others come in.
    lines = [json.dumps(s) for s in json.loads(out.path.read_text())]
    jsonl = tmp_path / "export" / "stream.jsonl"
    jsonl.write_text(lines[0] + "\n{broken\n" + lines[1] + "\n", encoding="utf-8")
    third = Library(tmp_path / "third")
    report = third.import_annotations(jsonl)
    assert len(report.added) == 2 and any("line 2 is not valid JSON" in n for n in report.notes)
    assert [third.turns(c) for c in third.clips] == [fresh.turns(c) for c in fresh.clips]

    # A malformed file: a clear reason, nothing changed.
    bad = tmp_path / "bad.json"
    bad.write_text('[{"video_path": "a.mp4"', encoding="utf-8")
    before = fresh.annotation_path.read_bytes()
    report = fresh.import_annotations(bad)
    assert report.imported == 0 and "not valid JSON" in report.failed[0][1] and "line 1" in report.failed[0][1]
    assert fresh.annotation_path.read_bytes() == before and len(fresh.clips) == 2


def test_raw_export_trains_from_its_own_folder(project: Path, tmp_path: Path) -> None:
    lib = Library(project)
    lib.import_videos([project / "videos"])
    lib.add_event(lib.clips[0].id, "x", 1, 2)
    out = lib.export_raw(tmp_path / "exp" / "raw.json")
    samples = json.loads(out.path.read_text())
    assert all(Path(s["video_path"]).is_absolute() for s in samples)  # the videos lie outside that folder
    assert len(P.to_stream(samples, video_prefix=out.path.parent)) == 2


def test_stream_to_raw_on_the_release_example_and_what_it_cannot_say() -> None:
    raw_examples = json.loads((DATA / "example_raw.json").read_text())
    for sample, expected in zip(json.loads((DATA / "example_stream.json").read_text()), raw_examples, strict=True):
        raw, notes = stream_to_raw(sample)
        assert notes == []
        assert raw["question"] == expected["question"] and raw["response"] == expected["response"]
        assert P.convert_sample(raw, (len(sample["messages"]) - 1) // 2)["messages"] == sample["messages"]

    def sample(states: list[str], fps_labels: bool = False) -> dict:
        msgs = [{"role": "system", "content": P.SYSTEM_PROMPT}]
        for i, s in enumerate(states):
            label = f"<{i / 2:g}s-{(i + 1) / 2:g}s>" if fps_labels else f"<{i}s-{i + 1}s>"
            msgs += [{"role": "user", "content": f"{label}\n<stream>"}, {"role": "assistant", "content": s}]
        return {"messages": msgs, "videos": ["v.mp4"]}

    raw, notes = stream_to_raw(sample(["</Silence>", "</Response>", "</Standby>", "</Standby>", "</Silence>"]))
    assert any("without an answer" in n for n in notes)
    assert raw["response"] == [{"content": "", "st_time": 3.0, "end_time": 4.0, "time": ""}]  # Standby never answered
    assert raw["question"] == []  # turn 0 carried the default question: rule 7, nothing to write
    with pytest.raises(ValueError, match="one turn per second"):
        stream_to_raw(sample(["</Silence>", "</Silence>"], fps_labels=True))


def test_frame_reader_seeks_to_the_same_frame_as_decoding_on(tmp_path: Path) -> None:
    path = clip_file(tmp_path / "v.mp4", seconds=3)
    reader = L.FrameReader(path)
    sequential = [reader.read(i) for i in range(30)]
    assert all(f is not None for f in sequential)
    for i in (25, 3, 17, 0, 29):
        assert np.array_equal(reader.read(i), sequential[i])
    assert reader.read(500) is None
    reader.close()
    thumb = L.thumbnail(path, (48, 48))
    assert thumb is not None and thumb.shape == (32, 48, 3)
    assert L.thumbnail(path, (48, 48)) is thumb  # cached
    assert L.thumbnail(tmp_path / "nothing.mp4") is None


def test_the_library_and_its_imports_load_no_torch(project: Path) -> None:
    """The Clips page runs on the GUI thread: importing videos and annotation files must not pull in
    torch (seconds of a frozen window)."""
    import subprocess
    import sys

    stream = DATA / "example_stream.json"
    code = (
        "import sys\n"
        "from app.training.library import Library\n"
        f"lib = Library({str(project)!r})\n"
        f"lib.import_videos([{str(project / 'videos' / 'a.mp4')!r}])\n"
        f"report = lib.import_annotations({str(stream)!r}, video_prefix={str(project)!r})\n"
        "print(len(lib.clips), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    clips, torch_loaded = out.stdout.split()
    assert int(clips) >= 1 and torch_loaded == "False", out.stderr[-2000:]

"""The one annotation-problem checker: the clip editor and the command line's data check list the
same problems for the same sample, every one of them; and the instruction-source edit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import write_video

from app.training import library as L
from app.training.library import Library
from model.train.data import load_clips


@pytest.fixture
def lib(tmp_path: Path) -> Library:
    folder = tmp_path / "project"
    write_video(folder / "videos" / "a.mp4", 60, 10, (96, 64))  # 6 seconds
    write_video(folder / "videos" / "b.mp4", 40, 10, (96, 64))
    library = Library(folder)
    library.import_videos([folder / "videos"])
    return library


def cli_problems(lib: Library) -> dict[int, list[str]]:
    """What ``train`` / ``evaluate`` warn about the project file, per sample."""
    clips, issues = load_clips([lib.annotation_path], video_prefix=lib.video_prefix)
    assert len(clips) == len(lib.clips)  # warnings only: every sample still trains
    out: dict[int, list[str]] = {}
    for issue in issues:
        out.setdefault(issue.index, []).append(issue.message)  # type: ignore[arg-type]
    return out


def gui_problems(lib: Library) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for i, clip in enumerate(lib.clips):
        for p in lib.problems(clip):
            assert p.ref is not None
            out.setdefault(i, []).append(f"{p.ref.kind} {p.ref.index}: {p.message}")
    return out


def test_the_editor_and_the_command_line_list_the_same_problems(lib: Library) -> None:
    a, b = lib.clips
    lib.add_event(a.id, "fine", 0, 2)
    lib.add_event(a.id, "backwards", 4, 3)
    lib.add_event(a.id, "too late", 3, 6)
    lib.add_event(a.id, "", 1, 2)
    lib.add_answer(a.id, "after the end", 9)
    lib.add_question(a.id, "", 7)  # two problems on one item: no text, and past the end
    lib.add_answer(a.id, "replaced", 2)
    lib.add_question(b.id, "first", 1)
    lib.add_question(b.id, "second, same second", 1)
    gui, cli = gui_problems(lib), cli_problems(lib)
    assert gui == cli
    # Every problem, not the first: the empty late question has both of its own.
    q0 = [m for m in gui[0] if m.startswith("question 0:")]
    assert len(q0) == 2 and "no text" in q0[0] and "past the clip's end" in q0[1]
    assert any(m.startswith("response 0:") and "overwritten" in m for m in gui[0])
    assert gui[1] == ["question 0: Another question asked at 0:01 replaces this one."]
    # Fixed in the editor, clean in both.
    for clip in lib.clips:
        for ref in sorted({p.ref for p in lib.problems(clip)}, key=lambda r: (r.kind, -r.index)):  # type: ignore[union-attr]
            lib.remove_item(clip.id, ref)  # type: ignore[arg-type]
    assert gui_problems(lib) == cli_problems(lib) == {}


def test_a_missing_video_is_named_with_what_to_do(lib: Library) -> None:
    lib.resolve(lib.clips[1]).unlink()
    lib.refresh_videos()
    (problem,) = lib.problems(lib.clips[1])
    assert problem.ref is None and "no such file" in problem.message and "Put the file back" in problem.message


def test_set_instruction_from_is_an_undoable_saved_edit(lib: Library) -> None:
    key = L.INSTRUCTION_FROM_KEY
    assert key == "instruction_from"
    a = lib.clips[0]
    lib.add_question(a.id, "What is on the table?", 3)

    def saved() -> dict:
        return json.loads(lib.annotation_path.read_text(encoding="utf-8"))[0]

    assert key not in saved()
    edit = lib.set_instruction_from(a.id, "first_question")
    assert edit is not None and edit.clip_ids == [a.id] and "first question" in edit.label
    assert saved()[key] == "first_question" and dict(lib.clips[0].extra)[key] == "first_question"
    assert lib.set_instruction_from(a.id, "first_question") is None  # already so: no edit
    lib.add_event(a.id, "A cup appears.", 1, 2)  # other edits keep the key
    assert saved()[key] == "first_question"
    # Survives a reload, with the rest of the clip.
    again = Library(lib.folder)
    assert dict(again.clips[0].extra)[key] == "first_question" and again.clips[0].to_raw() == lib.clips[0].to_raw()

    lib.undo()  # the event
    lib.undo()  # the instruction source
    assert key not in saved() and key not in dict(lib.clips[0].extra)
    lib.redo()
    assert saved()[key] == "first_question"
    # "task" (the default) removes the key rather than writing it.
    assert lib.set_instruction_from(a.id, "task") is not None
    assert key not in saved()
    assert lib.set_instruction_from(a.id, "task") is None
    lib.undo()
    assert saved()[key] == "first_question"
    with pytest.raises(ValueError, match="first_question"):
        lib.set_instruction_from(a.id, "whatever")
    assert lib.clips[1].extra == () and key not in json.loads(lib.annotation_path.read_text())[1]


def test_unknown_keys_of_a_clip_keep_their_place(lib: Library) -> None:
    raw = json.loads(lib.annotation_path.read_text())
    raw[0]["note"] = "from my phone"
    lib.annotation_path.write_text(json.dumps(raw))
    lib = Library(lib.folder)
    cid = lib.clips[0].id
    lib.set_instruction_from(cid, "first_question")
    lib.set_instruction_from(cid, "task")
    assert json.loads(lib.annotation_path.read_text())[0]["note"] == "from my phone"

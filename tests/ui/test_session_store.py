"""The session store (app/session.py): appended line by line, a torn last line survives, sessions
list and reopen, subtitles from responses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import SCHEMA_1_SESSION as SCHEMA_1

from app.live.records import Question
from app.session import (
    SessionLog,
    SessionMeta,
    StepRecord,
    delete_session,
    list_sessions,
    load_session,
    rename_session,
)
from model.protocol import RESPONSE, SILENCE, STANDBY


def write_session(root: Path, steps: list[StepRecord], close: bool = True) -> Path:
    log = SessionLog.create(SessionMeta(source="/videos/kitchen.mp4", model="demo", task="narrate"), root)
    for s in steps:
        log.write_step(s)
    if close:
        log.close()
    return log.path


STEPS = [
    StepRecord(0.0, 1.0, SILENCE, 1000.0, question=Question("What happens?", 0.0)),
    StepRecord(1.0, 2.0, RESPONSE, 1001.0, text="A man opens the door."),
    StepRecord(2.0, 3.0, STANDBY, 1002.0),
    StepRecord(3.0, 4.0, RESPONSE, 1003.0, text="He sits down.", p={RESPONSE: 0.9}),
]


def test_every_step_is_on_disk_before_the_next(tmp_path: Path):
    log = SessionLog.create(SessionMeta(source="x"), tmp_path)
    for i, step in enumerate(STEPS, start=2):
        log.write_step(step)
        assert len(log.path.read_text(encoding="utf-8").splitlines()) == i  # no buffering
    log.close()


def test_a_crash_loses_at_most_the_line_being_written(tmp_path: Path):
    path = write_session(tmp_path, STEPS, close=False)
    with path.open("a", encoding="utf-8") as f:
        f.write('{"type": "step", "t": 4.0, "end": 5.0, "sta')  # power cut mid-write
    session = load_session(path)
    assert [s.t for s in session.states] == [0.0, 1.0, 2.0, 3.0]
    assert [e.text for e in session.entries] == ["What happens?", "A man opens the door.", "He sits down."]
    assert not session.ended


def test_sessions_list_newest_first_and_reopen(tmp_path: Path):
    first = write_session(tmp_path, STEPS[:2])
    second = write_session(tmp_path, STEPS)
    (tmp_path / "sessions" / "garbage.jsonl").write_text("not json\n{}\n")
    summaries = list_sessions(tmp_path)
    assert {s.path for s in summaries} == {first, second}
    by_path = {s.path: s for s in summaries}
    assert by_path[second].responses == 2 and by_path[second].duration == 4.0
    assert "kitchen.mp4" in by_path[second].title
    reopened = load_session(second)
    assert reopened.ended and reopened.meta.source == "/videos/kitchen.mp4"


def test_subtitles_hold_until_the_next_response(tmp_path: Path):
    session = load_session(write_session(tmp_path, STEPS))
    subs = session.subtitles(hold=6.0)
    assert [(s.start, s.end, s.text) for s in subs] == [
        (0.0, 4.0, "Q: What happens?"),  # the question asked, its own cue, cut at the stream's end
        (1.0, 3.0, "A man opens the door."),
        (3.0, 4.0, "He sits down."),  # cut at the end of the stream, not 6 s later
    ]
    doc = json.loads(session.export_text("json"))
    assert [e["kind"] for e in doc["entries"]] == ["question", "response", "response"]
    with pytest.raises(ValueError, match="unknown export format"):
        session.export_text("docx")


def test_a_previous_schema_session_opens(tmp_path: Path):
    folder = tmp_path / "sessions"
    folder.mkdir()
    path = folder / "20231114-221320-abc123.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in SCHEMA_1), encoding="utf-8")
    session = load_session(path)
    assert session.ended and session.meta.source == "/videos/old.mp4"
    assert [(e.kind, e.text, e.origin) for e in session.entries] == [
        ("question", "Where is the cat?", "typed"),
        ("response", "On the sofa.", ""),
    ]
    assert [s.state for s in session.states] == [SILENCE, RESPONSE]
    assert [s.path for s in list_sessions(tmp_path)] == [path]


def test_the_step_record_round_trips_through_the_file(tmp_path: Path):
    step = StepRecord(
        2.0, 3.0, RESPONSE, 1002.5, text="Raw \x07 text\ufffd", question=Question("Why?", 1.4, "voice"),
        p={SILENCE: 0.1, STANDBY: 0.2, RESPONSE: 0.7}, latency_ms={"vision": 1.5, "total": 20.0},
        context_turns=3, context_tokens=300, exact=False, token_ids=(5, 6, 7),
    )  # fmt: skip
    path = write_session(tmp_path, [step])
    record = json.loads(path.read_text(encoding="utf-8").splitlines()[1])
    assert StepRecord.from_json(record) == step  # the raw text and tokens are kept in the record
    entries = load_session(path).entries
    assert [(e.text, e.origin) for e in entries] == [("Why?", "voice"), ("Raw  text", "")]  # shown cleaned


def test_sessions_can_be_renamed_and_deleted(tmp_path: Path):
    path = write_session(tmp_path, STEPS)
    before = path.read_text(encoding="utf-8").splitlines()[1:]
    rename_session(path, "  Kitchen, Monday  ")
    assert load_session(path).meta.title == "Kitchen, Monday"
    assert path.read_text(encoding="utf-8").splitlines()[1:] == before  # the records are untouched
    assert "Kitchen, Monday" in list_sessions(tmp_path)[0].title
    other = tmp_path / "notes.jsonl"
    other.write_text('{"hello": 1}\n')
    with pytest.raises(ValueError, match="not a Streamo Live session"):
        delete_session(other)
    assert other.exists()
    delete_session(path)
    assert list_sessions(tmp_path) == []


def test_a_sessions_frames_live_beside_it_and_go_with_it(tmp_path):
    from app.live.frames import frame_name
    from app.session import SessionLog, SessionMeta, delete_session, frames_dir, list_sessions

    log = SessionLog.create(SessionMeta(source="/v/a.mp4"), tmp_path)
    log.close()
    folder = frames_dir(log.path)
    assert folder.parent == log.path.parent and folder.name == log.path.stem + ".frames"
    folder.mkdir()
    (folder / frame_name(12.5)).write_bytes(b"png")
    assert frame_name(12.5) == "000012.5.png" and len(list_sessions(tmp_path)) == 1  # the folder is no session
    delete_session(log.path)
    assert not log.path.exists() and not folder.exists()


def test_a_deleted_session_waits_in_the_trash_and_comes_back(tmp_path: Path):
    import os
    import time

    from app.live.frames import frame_name
    from app.session import empty_trash, frames_dir, restore_session

    path = write_session(tmp_path, STEPS)
    frames = frames_dir(path)
    frames.mkdir()
    (frames / frame_name(1.0)).write_bytes(b"png")
    before = path.read_bytes()
    trashed = delete_session(path)
    assert not path.exists() and not frames.exists() and list_sessions(tmp_path) == []
    assert trashed.path.read_bytes() == before and (frames_dir(trashed.path) / frame_name(1.0)).exists()
    assert empty_trash(tmp_path) == 0  # deleted just now: kept
    assert restore_session(trashed) == path
    assert path.read_bytes() == before and (frames / frame_name(1.0)).read_bytes() == b"png"
    assert [s.path for s in list_sessions(tmp_path)] == [path]
    # Deleted twice under one name: both kept; a file back in its place stops the restore, losing nothing.
    first = delete_session(path)
    path.write_bytes(before)
    second = delete_session(path)
    assert first.path != second.path and first.path.exists() and second.path.exists()
    path.write_text("mine now")
    with pytest.raises(FileExistsError):
        restore_session(first)
    assert path.read_text() == "mine now" and first.path.exists()
    # After TRASH_DAYS the trash lets them go.
    old = time.time() - 31 * 86400
    os.utime(first.path, (old, old))
    assert empty_trash(tmp_path) == 1 and not first.path.exists() and second.path.exists()


def test_sessions_are_found_by_any_word_of_their_record(tmp_path: Path):
    write_session(tmp_path, STEPS)
    [s] = list_sessions(tmp_path)
    assert s.matches("kitchen") and s.matches("DEMO narrate") and s.matches("opens door")
    assert not s.matches("garden") and not s.matches("kitchen garden")
    assert "Task: narrate" in s.details() and "Responses: 2" in s.details() and "Model: demo" in s.details()


def test_one_garbled_line_costs_that_line_not_the_session(tmp_path: Path):
    path = write_session(tmp_path, STEPS)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[2] = '{"type": "step", "t": 1.0, garbled by a bad disk\n'  # the middle, not a torn last line
    path.write_text("".join(lines), encoding="utf-8")
    session = load_session(path)
    assert [s.t for s in session.states] == [0.0, 2.0, 3.0]  # the others are all there
    assert any("damaged line" in n and "line 3" in n for n in session.notes)
    assert [s.path for s in list_sessions(tmp_path)] == [path]  # still listed


def test_what_the_camera_screen_and_voice_left_is_the_owners_alone(tmp_path: Path):
    import stat

    from app.live.frames import FrameSaver
    from app.session import frames_dir

    path = write_session(tmp_path, STEPS)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(path) == 0o600 and mode(path.parent) == 0o700  # the session log and its folder
    out = load_session(path).export(tmp_path / "out" / "talk.srt")
    assert mode(out) == 0o600  # an export of it
    import numpy as np

    from app.live.frames import frame_name

    saver = FrameSaver(frames_dir(path))

    class Engine:
        def step(self, image, t=None, **kwargs):
            return None

    engine = Engine()
    saver.wrap(engine)
    engine.step(np.zeros((8, 8, 3), np.uint8), t=1.0)
    saver.close()
    assert mode(frames_dir(path)) == 0o700 and mode(frames_dir(path) / frame_name(1.0)) == 0o600  # a frame


def test_the_window_export_and_narrate_write_the_same_subtitles(tmp_path: Path):
    """One rule for asked questions as cues: the session (the window's export, the player) and a
    run's own timeline (narrate's SRT and WebVTT) give the same cues for the same steps; the task's
    standing instruction is never one."""
    from app.exports import to_srt
    from app.live.subtitles import SubtitleTimeline

    steps = [
        StepRecord(0.0, 1.0, SILENCE, 0.0, question=Question("Narrate everything.", 0.0, "preset")),
        StepRecord(1.0, 2.0, SILENCE, 1.0, question=Question("Where is the <b>cat</b>?", 1.0, "typed")),
        StepRecord(2.0, 3.0, RESPONSE, 2.0, text="On the sofa."),
        StepRecord(3.0, 4.0, STANDBY, 3.0, question=Question("And now?", 3.0, "voice")),
        StepRecord(4.0, 5.0, RESPONSE, 4.0, text="Asleep."),
    ]
    timeline = SubtitleTimeline(hold=6.0)
    changed = [timeline.add(step) for step in steps]
    assert changed == [False, True, True, True, True]
    session = load_session(write_session(tmp_path, steps))
    assert session.export_text("srt", hold=6.0) == to_srt(timeline.transcript)
    assert [(c.start, c.end, c.text) for c in session.subtitles(hold=6.0)] == [
        (1.0, 3.0, "Q: Where is the <b>cat</b>?"),  # cut at the next question
        (2.0, 4.0, "On the sofa."),
        (3.0, 5.0, "Q: And now?"),
        (4.0, 5.0, "Asleep."),
    ]

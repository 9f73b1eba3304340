"""Saved sessions in the window: one written by `narrate` and one of the previous schema open in the
transcript; the sessions dialog lists terminal runs and renames and deletes sessions."""

from __future__ import annotations

import json
from pathlib import Path

from fakes import SCHEMA_1_SESSION as SCHEMA_1

from app.cli import main as cli_main


def test_a_narrate_session_opens_in_the_window(make_harness, tiny_ckpt, sample_clip, tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMO_LIVE_DATA", str(tmp_path / "data"))
    rc = cli_main(["narrate", "--source", str(sample_clip), "--model", str(tiny_ckpt), "--device", "cpu",
                   "--threshold", "0.15", "--max-answer-tokens", "4", "--quiet"])  # fmt: skip
    assert rc == 0
    from app.session import list_sessions

    [summary] = list_sessions()  # File > Open session lists the terminal run
    h = make_harness()
    assert h.window.open_session(str(summary.path))
    panel = h.window.live_tab.transcript
    assert len(panel.timeline.spans) == 10 and panel.title.text().endswith("sample.mp4")
    assert panel.model.entries[0].origin == "preset"  # the narrate task's instruction, marked as the task's
    assert summary.responses == sum(1 for e in panel.model.entries if e.kind == "response") >= 1


def test_a_previous_schema_session_opens_in_the_window(make_harness, tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in SCHEMA_1), encoding="utf-8")
    h = make_harness()
    assert h.window.open_session(str(path))
    m = h.window.live_tab.transcript.model
    assert [m.data(m.index(r, 3)) for r in range(m.rowCount())] == ["Where is the cat?", "On the sofa."]
    assert [m.data(m.index(r, 2)) for r in range(m.rowCount())] == ["You", "Model"]
    # Something that is not a session says so and changes nothing.
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"hello": 1}\n')
    assert not h.window.open_session(str(junk))
    assert "not a Streamo Live session" in h.window.banner.text() and m.rowCount() == 2


def test_the_sessions_dialog_renames_and_deletes(qtbot, tmp_path: Path):
    from app.session import SessionLog, SessionMeta
    from ui.sessions_dialog import SessionsDialog

    for name in ("a.mp4", "b.mp4"):
        SessionLog.create(SessionMeta(source=f"/v/{name}"), tmp_path).close()
    dialog = SessionsDialog(root=tmp_path)
    qtbot.addWidget(dialog)
    assert dialog.list.count() == 2
    assert dialog.rename_selected("Kitchen test")
    assert any("Kitchen test" in dialog.list.item(i).text() for i in range(dialog.list.count()))
    assert dialog.delete_selected(confirm=False)
    assert dialog.list.count() == 1 and len(list((tmp_path / "sessions").glob("*.jsonl"))) == 1

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


def test_the_library_buttons_ask_then_rename_delete_and_undo(qtbot, tmp_path: Path, monkeypatch):
    """The buttons as a user clicks them (clicked(bool) once landed in title and confirm: Rename raised,
    Delete removed the file unasked); Delete goes to the trash and Undo brings the session back."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QInputDialog, QMessageBox

    from app.session import SessionLog, SessionMeta
    from ui.sessions_dialog import SessionsDialog

    for name in ("a.mp4", "b.mp4"):
        log = SessionLog.create(SessionMeta(source=f"/v/{name}", model="demo", task="narrate"), tmp_path)
        log.close()
    dialog = SessionsDialog(root=tmp_path)
    qtbot.addWidget(dialog)
    asked: list[str] = []
    monkeypatch.setattr(
        QInputDialog, "getText", lambda *a, **k: (asked.append(k.get("text", "")), ("Kitchen", True))[1]
    )
    qtbot.mouseClick(dialog.rename_button, Qt.MouseButton.LeftButton)
    assert asked and asked[0] in ("a.mp4", "b.mp4")  # the current name filled in
    assert "Kitchen" in dialog.list.currentItem().text()
    files = sorted((tmp_path / "sessions").glob("*.jsonl"))
    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: answers.pop(0))
    qtbot.mouseClick(dialog.delete_button, Qt.MouseButton.LeftButton)  # asked; No
    assert sorted((tmp_path / "sessions").glob("*.jsonl")) == files and dialog.list.count() == 2
    qtbot.mouseClick(dialog.delete_button, Qt.MouseButton.LeftButton)  # asked; Yes
    assert len(list((tmp_path / "sessions").glob("*.jsonl"))) == 1 and dialog.list.count() == 1
    assert not dialog.undo_bar.isHidden() and "trash" in dialog.undo_note.text()
    qtbot.mouseClick(dialog.undo_button, Qt.MouseButton.LeftButton)
    assert sorted((tmp_path / "sessions").glob("*.jsonl")) == files and dialog.list.count() == 2
    assert "Kitchen" in dialog.list.currentItem().text() and dialog.undo_bar.isHidden()


def test_the_library_searches_and_shows_where_a_session_came_from(qtbot, tmp_path: Path):
    from app.session import SessionLog, SessionMeta
    from ui.sessions_dialog import SessionsDialog

    for name, model in (("kitchen.mp4", "demo"), ("garden.mp4", "streamo-7b + my-adapter")):
        SessionLog.create(SessionMeta(source=f"/v/{name}", model=model, task="narrate"), tmp_path).close()
    dialog = SessionsDialog(root=tmp_path)
    qtbot.addWidget(dialog)
    dialog.search.setText("adapter")
    assert dialog.list.count() == 1 and "garden.mp4" in dialog.list.item(0).text()
    assert dialog.count.text() == "1 of 2" and "Model: streamo-7b + my-adapter" in dialog.details.text()
    dialog.search.setText("nothing like it")
    assert dialog.current_path() is None and not dialog.delete_button.isEnabled()
    dialog.search.clear()
    assert dialog.list.count() == 2 and dialog.delete_button.isEnabled()

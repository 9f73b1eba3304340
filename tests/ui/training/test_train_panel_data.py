"""The Training tab's data side, offscreen: the dataset preview before Start (the conversation exactly
as the trainer's converter renders it, unannotated clips left out or counted apart, the held-out
choice), and the held-out choice and the unannotated tick reaching the TrainConfig the run starts with."""

from __future__ import annotations

import json
import queue
import shutil
from pathlib import Path

import pytest
from fakes import FakeTrainingProcess
from PySide6.QtCore import Qt

from app.training import job as job_module
from app.training.estimate import scan_data, tab_data_rules
from app.training.preview import UNANNOTATED_TICK, dataset_preview, render_turns
from model.presets import task_instruction
from model.train.config import TrainConfig
from model.train.synthetic import Event, write_clip
from ui.training import train_panel as tp
from ui.training.train_panel import TrainPanel

NARRATE = task_instruction("narrate")  # "Find all significant events in the video and describe them."
CAPTION = "A red box slides across the frame."


def make_project(folder: Path, annotated: int = 1) -> Path:
    """``annotated`` clips with an event 3-7 s and, on the first, a question at 5 s and its answer at 6 s;
    plus an unannotated copy of the first clip (the issue's trap). Returns the annotation file."""
    samples = []
    for k in range(annotated):
        name = "box.mp4" if k == 0 else f"box{k + 1}.mp4"
        write_clip(folder / "videos" / name, [Event("ball", 2, 6)], 10, 4, (64, 48), False)
        sample = {"video_name": name, "video_path": f"videos/{name}", "task_type": "Narration",
                  "question": [], "response": [{"content": CAPTION, "st_time": 3.0, "end_time": 7.0, "time": ""}]}  # fmt: skip
        if k == 0:
            sample["question"] = [{"content": "What colour is the box?", "time": "5"}]
            sample["response"].append({"content": "It is red.", "st_time": "", "end_time": "", "time": "6"})
        samples.append(sample)
    shutil.copy(folder / "videos" / "box.mp4", folder / "videos" / "box-copy.mp4")
    samples.append({"video_name": "box-copy.mp4", "video_path": "videos/box-copy.mp4", "task_type": "Narration",
                    "question": [], "response": []})  # fmt: skip
    path = folder / "annotations.json"
    path.write_text(json.dumps(samples, indent=1), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("preview-project")
    return [str(make_project(folder, annotated=2))], str(folder)


def test_the_preview_is_what_trains(tmp_path):
    data = make_project(tmp_path)
    preview = dataset_preview([str(data)], tmp_path)
    box = str(tmp_path / "videos" / "box.mp4")
    # One video (it may train asked and unasked: presets.live_variants); the copy is left out.
    assert preview.videos == [box] and preview.clips[0].name == "box.mp4" and preview.left_out == ["box-copy.mp4"]
    lines = preview.clips[0].lines
    # Live's narrate instruction on the first turn, the question at its own second (not on turn 0).
    assert lines[0] == f"0:00 [{NARRATE}] Silence"
    assert "What colour" not in lines[0]
    asked = [line for line in lines if "What colour is the box?" in line]
    assert asked == ["0:04 Question: \u201cWhat colour is the box?\u201d \u2192 Standby"]
    assert f"Response: {CAPTION}" in "\n".join(lines) and "Response: It is red." in "\n".join(lines)
    # The converter's own messages, rendered: the preview is exactly what the trainer reads.
    from model.train.data import load_clips

    clips, _ = load_clips([str(data)], tmp_path, **tab_data_rules(False))
    assert [render_turns(c.messages) for c in clips] == [c.lines for c in preview.clips]
    assert preview.clips[0].states == {"</Silence>": 4, "</Standby>": 4, "</Response>": 2}
    split = preview.split(TrainConfig(holdout=0.2, min_heldout=2, steps=100))
    assert split.held == [] and "No clip is held out" in split.warning
    text = "\n".join(preview.summary(split))
    assert "1 unannotated clip left out" in text and UNANNOTATED_TICK in text and "100 steps" in text

    # Ticked: the copy trains as an example of nothing happening, counted apart.
    used = dataset_preview([str(data)], tmp_path, use_unannotated=True)
    copy = used.clip(str(tmp_path / "videos" / "box-copy.mp4"))
    assert copy is not None and copy.unannotated and copy.states["</Silence>"] == copy.turns == 10
    assert copy.lines == [f"0:00 [{NARRATE}] Silence", "0:01-0:09 Silence x9"]
    assert used.clip_count_text().startswith("1 annotated clip + 1 example of nothing happening")
    assert not used.left_out

    # The estimate's scan counts them the same way.
    left = scan_data([str(data)], tmp_path, **tab_data_rules(False))
    assert (len(left.clips), left.unannotated, left.unannotated_used, left.annotated) == (len(clips), 1, False, 1)
    both = scan_data([str(data)], tmp_path, **tab_data_rules(True))
    assert (len(both.clips), both.unannotated, both.unannotated_used, both.annotated) == (len(clips) + 1, 1, True, 1)


class _Recorder:
    """A TrainingJob stand-in factory: records each config, the child has sent a start event."""

    def __init__(self) -> None:
        self.configs: list[TrainConfig] = []

    def job_class(self):
        recorder = self

        class Recorded(job_module.TrainingJob):
            def __init__(self, config, parent=None, **kw):
                recorder.configs.append(config)
                process, events = FakeTrainingProcess(), queue.Queue()
                stop = type("Stop", (), {"set": lambda s: None})()
                super().__init__(config, parent, starter=lambda c: (process, events, stop), poll_ms=20)

        return Recorded


def make_panel(qtbot, settings, provider, tmp_path: Path, name: str) -> TrainPanel:
    panel = TrainPanel(settings, provider)
    qtbot.addWidget(panel)
    panel.location.setText(str(tmp_path / "adapters"))
    panel.name.setText(name)
    panel.device.setCurrentText("cpu")
    return panel


def test_start_shows_the_preview_and_the_held_out_choice_reaches_the_config(
    qtbot, settings, project, tmp_path, monkeypatch
):
    recorder = _Recorder()
    monkeypatch.setattr(tp, "TrainingJob", recorder.job_class())
    panel = make_panel(qtbot, settings, lambda: project, tmp_path, "chosen")
    assert panel.holdout.value() == 20  # the tab's rule: at least 2 clips or 20 %
    qtbot.waitUntil(lambda: panel._scan is not None, timeout=60_000)
    assert "2 annotated clips (" in panel.estimate_label.text()
    assert (
        "1 unannotated clip left out" in panel.estimate_note.text() and UNANNOTATED_TICK in panel.estimate_note.text()
    )

    # Start shows the preview first; nothing starts until its Start.
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    dialog = panel.preview_dialog
    assert dialog is not None and dialog.isVisible() and panel.job is None and not recorder.configs
    qtbot.waitUntil(lambda: dialog.preview is not None, timeout=60_000)
    names = [dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount())]
    assert names[0] == "box.mp4" and "box2.mp4" in names and dialog.start_button.isEnabled()
    assert "\u26a0" in dialog.warning.text() and "held out" in dialog.warning.text()  # none of 2 held out
    dialog.table.selectRow(0)
    assert f"0:00 [{NARRATE}] Silence" in dialog.conversation.toPlainText()
    assert "box-copy.mp4" in dialog.summary.text() and "left out" in dialog.summary.text()

    # Tick the second clip: held out by the user's choice, kept in the settings for this data.
    row = names.index("box2.mp4")
    second = dialog.table.item(row, 0).data(Qt.ItemDataRole.UserRole)
    dialog.table.item(row, 1).setCheckState(Qt.CheckState.Checked)
    assert (
        dialog.chosen == [second] and "chosen by you" in dialog.summary.text() and "box2.mp4" in dialog.summary.text()
    )
    assert panel.heldout_choice() == [second]
    assert "Only 1 clip is held out" in dialog.warning.text()
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(recorder.configs), timeout=10_000)
    config = recorder.configs[-1]
    assert config.heldout == [second] and config.min_heldout == 2 and config.holdout == pytest.approx(0.2)
    assert config.skip_unannotated and config.live_instructions and not config.resume
    panel.job.kill()
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)

    # "Don't show this again": Start starts at once (Preview data... still shows it).
    panel.name.setText("chosen-2")
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    panel.preview_dialog.dont_show.setChecked(True)
    panel.preview_dialog.close()
    assert settings.value("training/preview_before_start", True) is False
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(recorder.configs) == 2, timeout=10_000)
    panel.job.kill()
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)

    # Ticking "use unannotated clips": the copy trains, counted apart, and persists.
    panel.name.setText("chosen-3")
    panel.use_unannotated.setChecked(True)
    qtbot.waitUntil(lambda: "example of nothing happening" in panel.estimate_label.text(), timeout=60_000)
    assert "2 annotated clips + 1 example of nothing happening" in panel.estimate_label.text()
    assert settings.value("training/use_unannotated", False) is True
    assert panel.start()
    qtbot.waitUntil(lambda: len(recorder.configs) == 3, timeout=10_000)
    assert recorder.configs[-1].skip_unannotated is False
    panel.job.kill()
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)
    shown = panel.preview_data()
    qtbot.waitUntil(lambda: shown.preview is not None, timeout=60_000)
    rows = {shown.table.item(r, 0).text(): shown.table.item(r, 2).text() for r in range(shown.table.rowCount())}
    assert rows["box-copy.mp4"] == "nothing happening" and rows["box.mp4"] == "Narration"
    shown.grab().save(str(tmp_path / "preview.png"))

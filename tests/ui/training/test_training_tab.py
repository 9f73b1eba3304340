"""The Training tab in the window: a project's annotations train in a child process while the live
model is unloaded (and comes back after), "Use in Live" loads the new adapter into the live engine,
the model manager lists it, and closing the window during training asks first."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from app.settings import ModelOptions
from model.train import checkpoint as ckpt
from model.train.synthetic import make_dataset

TIMEOUT_MS = 180_000


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "my-clips"
    make_dataset(folder, 4, seed=3, size=(64, 48), max_events=1, counters=False)
    return folder


def prepare(h, project: Path, tmp_path: Path, steps: int):
    tab = h.window.training_tab
    assert tab.clips.open_project(project)
    assert len(tab.clips.library.clips) == 4
    panel = tab.panel
    panel.location.setText(str(tmp_path / "adapters"))
    panel.name.setText("mine")
    panel.device.setCurrentText("cpu")
    panel.advanced_button.setChecked(True)
    panel.steps.setValue(steps)
    h.window.tabs.setCurrentWidget(tab)
    return tab, panel


@pytest.mark.slow
def test_train_in_the_window_then_use_the_adapter_live(make_harness, tiny_options, project, tmp_path, qtbot):
    h = make_harness()  # the real loader: "Use in Live" must load the adapter from disk
    h.load(tiny_options)
    tab, panel = prepare(h, project, tmp_path, steps=4)
    c = h.controller

    with qtbot.waitSignal(c.model_unloaded, timeout=30_000):
        assert panel.start(), panel.error.text()
    assert c.model is None and "unloaded while training" in h.window.status.model.text()
    assert any("unloaded while training" in m.text for m in h.window.banner.history)

    # Training and the evaluation after it end; the live model comes back by itself.
    with qtbot.waitSignal(c.model_ready, timeout=TIMEOUT_MS) as reloaded:
        pass
    assert reloaded.args[0].options == tiny_options and not panel.running
    adapter = tmp_path / "adapters" / "mine"
    assert (adapter / "adapter_config.json").is_file()
    qtbot.waitUntil(lambda: panel.use_button.isEnabled(), timeout=30_000)

    with qtbot.waitSignal(c.model_ready, timeout=60_000) as used:
        qtbot.mouseClick(panel.use_button, Qt.MouseButton.LeftButton)
    info = used.args[0]
    assert Path(info.adapter).resolve() == adapter.resolve() and info.options.source == "demo"
    assert h.window.tabs.currentWidget() is h.window.live_tab
    assert h.window.settings.load(ModelOptions).adapter == str(adapter)  # kept for the next start

    from ui.model_manager import ModelManagerDialog

    dialog = ModelManagerDialog(ModelOptions(source="demo"), adapter_roots=[tmp_path / "adapters"])
    qtbot.addWidget(dialog)
    rows = [dialog.adapters.item(i).text() for i in range(dialog.adapters.count())]
    assert any(r.startswith("mine") and "on demo" in r for r in rows)
    dialog.adapters.setCurrentRow(next(i for i, r in enumerate(rows) if r.startswith("mine")))
    assert "Streamo LoRA adapter" in dialog.card.toPlainText() and dialog.options().adapter == str(adapter.resolve())


@pytest.mark.slow
def test_closing_during_training_asks_then_stops_with_a_checkpoint(make_harness, project, tmp_path, qtbot):
    h = make_harness()
    tab, panel = prepare(h, project, tmp_path, steps=5000)
    answers = iter(["cancel", "stop"])
    h.window.ask_about_training = lambda: next(answers)
    assert panel.start(), panel.error.text()
    qtbot.waitUntil(lambda: len(panel.loss_plot.steps) >= 1, timeout=TIMEOUT_MS)

    h.window.close()  # "cancel": the window stays, training goes on
    assert h.window.isVisible() and panel.running
    h.window.close()  # "stop": a checkpoint is saved before the window goes
    assert not h.window.isVisible() and not panel.running
    latest = ckpt.latest_checkpoint(tmp_path / "adapters" / "mine")
    assert latest is not None and latest.step >= 1

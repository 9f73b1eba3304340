"""The main window opens fast, with the Live tab, and stays usable while the model loads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from PySide6.QtCore import QTimer

from app.live.qt import LoadProgress
from app.settings import ModelOptions

REPO = Path(__file__).resolve().parents[2]


def test_window_opens_with_the_live_tab(make_harness):
    h = make_harness()
    w = h.window
    assert w.isVisible() and w.windowTitle() == "Streamo Live"
    assert [w.tabs.tabText(i) for i in range(w.tabs.count())] == ["Live", "Training"]
    assert w._training_tab is None  # built when first opened (its plots cost the start-up time)
    w.tabs.setCurrentIndex(1)
    assert w.tabs.currentWidget() is w.training_tab and w.tabs.tabText(1) == "Training" and w.tabs.count() == 2
    assert w.status.fields()["model"] == "no model"
    w.load_model(ModelOptions())  # first run: nothing chosen yet
    assert "No model chosen yet" in w.banner.text()
    assert w.live_tab.preview.placeholder in ("Choose a source and press Start, or drop a video file here.",)


def test_importing_the_gui_command_is_cheap():
    code = "import sys, app.gui_cmd, app.cli; print(sorted(m for m in ('PySide6', 'torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_window_opens_in_under_two_seconds(tmp_path: Path):
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), STREAMO_LIVE_PRINT_STARTUP="1")
    env["STREAMO_LIVE_DATA"] = str(tmp_path / "data")
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "gui", "--quit-after", "0.2"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    m = re.search(r"startup (\d+\.\d+) s", out.stdout)
    assert m, out.stdout + out.stderr
    assert float(m.group(1)) < 2.0


def test_window_stays_usable_while_the_model_loads(make_harness, tiny_loaded):
    release = threading.Event()

    def slow_loader(options, progress):
        progress(1, 4, "model.safetensors")  # as a download would report
        release.wait(30)
        return tiny_loaded

    h = make_harness(loader=slow_loader)
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    with h.qtbot.waitSignal(h.controller.load_progress, check_params_cb=lambda p: p.total == 4, timeout=30_000):
        h.window.load_model(ModelOptions(source="demo"))
    assert h.controller.state == "loading"
    assert h.window.status.progress.isVisible() and "Downloading model.safetensors" in h.window.status.model.text()
    # The event loop runs and the widgets respond while the engine thread is busy loading.
    ticks.clear()
    h.qtbot.wait(300)
    h.window.live_tab.picker.kind.setCurrentIndex(2)
    assert h.window.live_tab.picker.stack.currentIndex() == 2
    assert len(ticks) >= 10
    assert not h.window.live_tab.start()  # says it is still loading instead of hanging
    assert "still loading" in h.window.banner.text()
    with h.qtbot.waitSignal(h.controller.model_ready, timeout=30_000):
        release.set()
    timer.stop()
    assert "fp32" in h.window.status.fields()["model"]


def test_load_progress_is_shown(make_harness):
    h = make_harness()
    h.window.status.on_load_progress(LoadProgress("Downloading model.safetensors", 512 * 1024**2, 1024**3))
    assert h.window.status.progress.value() == 500
    assert "0.50 / 1.00 GB" in h.window.status.model.text()


def test_demo_adapter_build_shows_steps_and_closing_stops_it(make_harness, tiny_loaded, monkeypatch):
    """First use of the demo model trains its shapes adapter on the engine thread: the status bar counts
    steps, and closing the window stops the build at its next step instead of hanging the exit."""
    monkeypatch.setenv("STREAMO_LIVE_DEMO_ADAPTER", "1")
    h = make_harness(loader=lambda options, progress: tiny_loaded)
    with h.qtbot.waitSignal(
        h.controller.load_progress, check_params_cb=lambda p: p.unit == "steps" and p.done >= 2, timeout=120_000
    ):
        h.window.load_model(ModelOptions(source="demo", device="cpu"))
    from model.train.demo import RECIPE

    text = h.window.status.model.text()
    steps = RECIPE["steps"]
    assert re.search(rf"Training the demo shapes adapter \(first use only[^)]*\): step \d+ / {steps}", text), text
    started = time.perf_counter()
    assert h.controller.shutdown(timeout_ms=30_000)
    assert time.perf_counter() - started < 10  # the build gave way at a step boundary
    from model.train.demo import demo_adapter_dir, demo_adapter_ready

    assert demo_adapter_ready() is None and not list(demo_adapter_dir().parent.glob("*.build-*"))


def _actions(window) -> dict[str, object]:
    out = {}
    for menu_action in window.menuBar().actions():
        for a in menu_action.menu().actions():
            if a.text():
                out[a.text().replace("&", "")] = a
    return out


def test_menus_have_shortcuts_help_and_the_demo_model(make_harness):
    h = make_harness()
    actions = _actions(h.window)
    shortcuts = {name: a.shortcut().toString() for name, a in actions.items()}
    assert shortcuts["Start"] == "F5" and shortcuts["Pause"] == "F6" and shortcuts["Stop"] == "Shift+F5"
    assert shortcuts["Ask a question"] == "Ctrl+L" and shortcuts["Subtitle overlay"] == "Ctrl+Shift+O"
    for name in ("About Streamo Live", "Keyboard shortcuts", "Use the demo model", "Messages..."):
        assert name in actions
    h.window.activateWindow()
    actions["Ask a question"].trigger()
    h.qtbot.waitUntil(h.window.live_tab.controls.question.hasFocus, timeout=2000)
    assert "F5" in h.window.live_tab.transport.start_button.toolTip()


def test_a_failed_load_keeps_the_model_and_the_setting(make_harness, tiny_options, tmp_path: Path):
    h = make_harness()
    h.window.load_model(tiny_options, save=True)
    h.qtbot.waitUntil(lambda: h.controller.model is not None, timeout=60_000)
    assert h.window.settings.load(ModelOptions).source == tiny_options.source
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    with h.qtbot.waitSignal(h.controller.load_failed, timeout=60_000):
        h.window.load_model(ModelOptions(source=str(broken), device="cpu"), save=True)
    # The broken folder is not remembered, the working model stays loaded and usable, and the window says so.
    assert h.window.settings.load(ModelOptions).source == tiny_options.source
    assert h.controller.model is not None and h.controller.model.options == tiny_options
    assert "is still in use" in h.window.banner.text()
    assert "failed to load" in h.window.status.fields()["model"]
    # Loading a good model clears the load error.
    h.load(tiny_options)
    assert "has no *.safetensors" not in h.window.banner.text()


def test_quitting_mid_run_closes_the_session_with_an_end_record(make_harness, shared_loader, tiny_options, sample_clip):
    from app.settings import SourceOptions

    h = make_harness(loader=shared_loader)
    h.load(tiny_options)
    with h.qtbot.waitSignal(h.controller.step_finished, timeout=20_000):
        h.start(SourceOptions(spec=str(sample_clip), realtime=True))
    path = Path(h.controller.session.path)
    h.window.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert '"type": "end"' in lines[-1] and 1 <= sum('"type": "step"' in line for line in lines) < 10


def test_the_qt_binding_does_not_leak_references(qapp):
    """PySide6 6.12.0 loses a reference to None per void Qt call and aborts Python 3.11 within
    minutes of a live session; the pin in pyproject.toml keeps it out, and this catches an install
    that got it anyway. The probe itself must see a leak when there is one."""
    import sys

    from ui.app import binding_leaks_singletons

    assert not binding_leaks_singletons()
    leaked = []
    real = sys.getrefcount

    def leaking(obj):  # what the broken binding looks like from Python: None's count falls per call
        leaked.append(obj)
        return real(obj) - (10 * len(leaked) if obj is None else 0)

    sys.getrefcount = leaking
    try:
        assert binding_leaks_singletons()
    finally:
        sys.getrefcount = real


def test_the_run_menu_follows_the_run_and_a_model_switch_asks_first(make_harness, sample_source, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from app.live import RunState
    from app.settings import ModelOptions

    h = make_harness()
    w = h.window
    assert w.start_action.isEnabled() and not w.pause_action.isEnabled() and not w.stop_action.isEnabled()
    w.controller.state_changed.emit(RunState.PAUSED)
    assert not w.start_action.isEnabled() and w.pause_action.isEnabled() and w.pause_action.text() == "&Resume"
    w.controller.state_changed.emit(RunState.IDLE)
    assert not w.stop_action.isEnabled()
    asked: list[str] = []
    monkeypatch.setattr(
        QMessageBox, "question", lambda *a, **k: (asked.append(a[2]), QMessageBox.StandardButton.Cancel)[1]
    )
    loads: list = []
    monkeypatch.setattr(w.controller, "load_model", loads.append)
    monkeypatch.setattr(w.controller, "state", RunState.RUNNING)
    w.load_model(ModelOptions(source="demo"))
    assert asked and "stops the live run" in asked[0] and loads == []  # Cancel: the run goes on


def test_a_demo_build_that_failed_its_self_check_says_so(make_harness, monkeypatch, tmp_path: Path):
    """The demo adapter kept although no build passed its self-check (model/train/demo.py): the
    window's "Demo shapes model loaded" message names the first problem and the folder to delete."""
    import json

    from app.live.qt import ModelInfo
    from model.train.demo import demo_adapter_dir

    monkeypatch.setenv("STREAMO_LIVE_DATA", str(tmp_path))
    folder = demo_adapter_dir()
    folder.mkdir(parents=True)
    problem = "60 s of bars footage without shapes: said 'A red ball rolls across the frame.' at 12 s"
    (folder / "streamo_demo.json").write_text(json.dumps({"check": {"problems": [problem, "another"]}}))
    h = make_harness()
    info = ModelInfo(ModelOptions(source="demo"), "cpu", "fp32", "torch", True, (), 0.1, adapter=str(folder))
    h.window.on_model_ready(info)
    text = h.window.banner.text()
    assert "Demo shapes model loaded" in text and f"did not pass its self-check ({problem}; and 1 more)" in text
    assert f"Delete {folder} to train it again" in text
    (folder / "streamo_demo.json").write_text(json.dumps({"check": {"problems": []}}))
    h.window.on_model_ready(info)
    assert "Demo shapes model loaded" in h.window.banner.text() and "self-check" not in h.window.banner.text()

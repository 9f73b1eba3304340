"""The GPU (and the memory) is shared safely (issue 18 item 5): while the Training tab's process runs,
Live cannot load a model (it says why and offers to stop training or wait); starting training during a
live run asks first."""

from __future__ import annotations

from pathlib import Path

from app.live import RunState
from app.settings import SourceOptions


class RunningJob:
    """A training process that is running, as the panel sees one (no process behind it)."""

    running = True

    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def hold_device(panel) -> RunningJob:
    job = RunningJob()
    panel.job = job
    return job


def release_device(panel, job: RunningJob) -> None:
    job.running = False
    panel.training_running.emit(False)


def test_live_waits_for_training_and_loads_when_it_ends(make_harness, shared_loader, tiny_options):
    h = make_harness(loader=shared_loader)
    w = h.window
    job = hold_device(w.training_tab.panel)
    asked: list[str] = []
    w.ask_device_busy = lambda why, options: asked.append(why) or "wait"
    w.load_model(tiny_options, save=True)
    assert asked and "training run is using the GPU" in asked[0]
    assert w.controller.model is None and w.controller.state == RunState.IDLE  # nothing loads beside training
    assert "loads for Live when training ends" in w.banner.text()
    release_device(w.training_tab.panel, job)
    h.qtbot.waitUntil(lambda: w.controller.model is not None, timeout=60_000)
    assert w.controller.model.options == tiny_options
    assert w.settings.load(type(tiny_options)).source == tiny_options.source  # remembered once loaded
    assert not job.stopped


def test_live_can_stop_training_or_give_up(make_harness, shared_loader, tiny_options):
    h = make_harness(loader=shared_loader)
    w = h.window
    panel = w.training_tab.panel
    job = hold_device(panel)
    w.ask_device_busy = lambda why, options: "cancel"
    w.load_model(tiny_options)
    assert w.controller.model is None and "Not loaded" in w.banner.text()
    release_device(panel, job)
    assert w.controller.model is None and w.controller.state == RunState.IDLE  # a cancelled load stays cancelled

    job = hold_device(panel)
    w.ask_device_busy = lambda why, options: "stop"
    w.load_model(tiny_options)
    assert job.stopped and w.controller.model is None  # the run saves its checkpoint and ends first
    release_device(panel, job)
    h.qtbot.waitUntil(lambda: w.controller.model is not None, timeout=60_000)


def test_starting_training_during_a_live_run_asks_first(make_harness, shared_loader, tiny_options, sample_clip: Path):
    h = make_harness(loader=shared_loader)
    w = h.window
    h.load(tiny_options)
    assert w.confirm_training_start("training")  # nothing live: no question
    with h.qtbot.waitSignal(h.controller.step_finished, timeout=20_000):
        h.start(SourceOptions(spec=str(sample_clip), realtime=True))
    questions: list[str] = []
    w.ask_stop_live = lambda what: questions.append(what) or False
    assert not w.confirm_training_start("training")
    assert questions == ["training"] and w.controller.state != RunState.IDLE  # refused: Live goes on
    w.ask_stop_live = lambda what: True
    assert w.confirm_training_start("evaluation")
    h.qtbot.waitUntil(lambda: w.controller.state == RunState.IDLE, timeout=20_000)
    assert w.training_tab.panel.confirm_start == w.confirm_training_start  # the tab asks through it

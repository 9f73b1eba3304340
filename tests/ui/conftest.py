"""Qt fixtures: isolated settings, a main window wired to the tiny checkpoint, and helpers that
run the sample clip through the real worker path and wait on signals (never on sleeps)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QCoreApplication, QSettings

from app.settings import LiveOptions, ModelOptions, Settings, SourceOptions

# The tiny model answers whenever P(Response) >= 0.2 (its states sit near 1/3 each); short
# answers keep the runs quick.
TALKATIVE = LiveOptions(model_decides=False, talkativeness=85, max_answer_tokens=8, subtitle_seconds=30.0)


@pytest.fixture
def talkative() -> LiveOptions:
    return TALKATIVE


@pytest.fixture
def settings(qapp, tmp_path: Path) -> Settings:
    """Settings in a scope of their own: a random application name and an INI folder in tmp."""
    QCoreApplication.setOrganizationName("streamo-live-tests")
    QCoreApplication.setApplicationName(f"test-{uuid.uuid4().hex}")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    return Settings()


@pytest.fixture
def tiny_options(tiny_ckpt: Path) -> ModelOptions:
    """The real loading path, on the tiny checkpoint."""
    return ModelOptions(source=str(tiny_ckpt), precision="fp32", device="cpu")


@pytest.fixture
def shared_loader(tiny_loaded) -> Callable[..., Any]:
    """A loader that hands out the session's already-loaded tiny model (fast; engines only read it)."""

    def load(options: ModelOptions, progress: Any) -> Any:
        return tiny_loaded

    return load


@dataclass
class Harness:
    qtbot: Any
    window: Any
    sessions: Path
    reports: list = field(default_factory=list)
    tokens: list = field(default_factory=list)

    @property
    def controller(self) -> Any:
        return self.window.controller

    def load(self, options: ModelOptions, timeout: int = 60_000) -> Any:
        with self.qtbot.waitSignal(self.controller.model_ready, timeout=timeout) as blocker:
            self.window.load_model(options)
        return blocker.args[0]

    def start(self, source: SourceOptions, live: LiveOptions = TALKATIVE) -> None:
        self.window.live_tab.set_options(source, live)
        assert self.window.live_tab.start(), self.window.banner.text()

    def wait_idle(self, timeout: int = 60_000) -> None:
        if self.controller.state != "idle":
            self.qtbot.waitUntil(lambda: self.controller.state == "idle", timeout=timeout)

    def run(self, source: SourceOptions, live: LiveOptions = TALKATIVE, timeout: int = 60_000) -> None:
        """Start and wait until the engine has reported the last step and closed the log."""
        with self.qtbot.waitSignal(self.controller.run_finished, timeout=timeout):
            self.start(source, live)
        assert self.controller.state == "idle"

    def log_closed(self) -> bool:
        path = self.controller.session.path
        return path is None or '"type": "end"' in Path(path).read_text(encoding="utf-8")

    def session_records(self) -> list[dict]:
        from app.exports import read_jsonl

        return read_jsonl(self.controller.session.path)


@pytest.fixture
def make_harness(qtbot, settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    from app.live.qt import LiveController
    from ui.main_window import MainWindow

    made: list[Harness] = []

    def make(voice: dict | None = None, **controller_kwargs: Any) -> Harness:
        sessions = tmp_path / f"data{len(made)}"
        controller = LiveController(sessions_root=sessions, **controller_kwargs)
        window = MainWindow(settings, controller, voice=voice)
        qtbot.addWidget(window)
        window.show()
        h = Harness(qtbot, window, sessions / "sessions")
        controller.step_finished.connect(h.reports.append)
        controller.token_streamed.connect(h.tokens.append)
        made.append(h)
        return h

    yield make
    for h in made:
        h.window.close()  # stops the run and both threads


@pytest.fixture
def sample_source(sample_clip: Path) -> SourceOptions:
    """The sample clip, every sampled frame to the model as fast as it goes."""
    return SourceOptions(spec=str(sample_clip), realtime=False)

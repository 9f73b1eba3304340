"""A saved session played back: its video, when the file is still there, with the words the model
said shown at the seconds it said them, the transcript beside it and the state timeline under it. A
click on a line or on the timeline seeks there.

The video is the annotator's :class:`ui.training.player.Player` (frames decoded on a worker thread);
the file is probed on the thread pool first (its frame rate places the seconds), so nothing here
blocks the window. Times are the session's stream seconds, which for a file are the video's own
(the file source samples by time), so line and picture agree.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QDialog, QLabel, QListWidget, QListWidgetItem, QSplitter, QVBoxLayout, QWidget

from app.live.subtitles import HOLD_SECONDS, MAX_LINES
from app.session import QUESTION, Session, format_clock
from ui.subtitles import display_text
from ui.timeline import StateTimeline


def session_video(session: Session) -> Path | None:
    """The video file a session ran on, or None (a camera, a screen, an unreadable spec)."""
    from app.sources import SourceError, SourceSpec

    try:
        spec = SourceSpec.parse(session.meta.source)
    except (SourceError, ValueError):
        return None
    return Path(spec.path) if spec.kind == "file" and spec.path else None


class _Probe(QRunnable):
    class Signals(QObject):
        done = Signal(object)  # model.video_probe.VideoFacts

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path, self.signals = path, _Probe.Signals()

    def run(self) -> None:
        from model.video_probe import inspect_video

        self.signals.done.emit(inspect_video(self.path))


class SessionPlayer(QDialog):
    """Play back ``session``; ``at``: the stream second to start at."""

    def __init__(self, session: Session, at: float = 0.0, parent: QWidget | None = None, reader_factory: Any = None):
        super().__init__(parent)
        from ui.training.player import Player

        name = session.meta.title or (Path(session.meta.source).name if session.meta.source else "session")
        self.setWindowTitle(f"Play back: {name}")
        self.resize(1100, 680)
        self.session = session
        self.cues = session.subtitles(HOLD_SECONDS)  # what was on screen: the words and the asked questions
        self._starts = [c.start for c in self.cues]
        self.fps = 0.0  # the video's, once probed; 0: no video to show
        self._pending = max(0.0, at)  # where to go once the video is open
        self.player = Player(reader_factory) if reader_factory is not None else Player()
        self.player.position_changed.connect(self._on_position)
        self.subtitle = QLabel()
        self.subtitle.setWordWrap(True)
        self.subtitle.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.subtitle.setTextFormat(Qt.TextFormat.PlainText)  # the model's words, never markup
        self.subtitle.setMinimumHeight(48)
        self.subtitle.setStyleSheet("background: #111; color: white; font-size: 16px; padding: 6px;")
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.timeline = StateTimeline()
        self.timeline.set_spans(session.states)
        self.timeline.seek_requested.connect(self.seek_to)
        self.lines = QListWidget()
        self.lines.setWordWrap(True)
        self._line_times: list[float] = []
        for e in session.entries:
            who = "Q" if e.kind == QUESTION else "A"
            item = QListWidgetItem(f"{format_clock(e.t)}  {who}: {display_text(e.text)}")
            item.setToolTip("Click to go there")
            self.lines.addItem(item)
            self._line_times.append(e.t)
        self.lines.itemClicked.connect(lambda item: self.seek_to(self._line_times[self.lines.row(item)]))

        video = QWidget()
        video_layout = QVBoxLayout(video)
        video_layout.setContentsMargins(0, 0, 0, 0)
        video_layout.addWidget(self.player, 1)
        video_layout.addWidget(self.subtitle)
        video_layout.addWidget(self.timeline)
        video_layout.addWidget(self.note)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(video)
        split.addWidget(self.lines)
        split.setSizes([760, 340])
        layout = QVBoxLayout(self)
        layout.addWidget(split, 1)

        self.path = session_video(session)
        if self.path is None:
            self.note.setText("This session ran on a camera or the screen: there is no video to play; its words and "
                              "states are all here.")  # fmt: skip
        elif not self.path.is_file():
            self.note.setText(f"The video {self.path} is not there any more: its words and states still show.")
        else:
            self.note.setText(f"Opening {self.path}...")
            probe = _Probe(self.path)
            probe.signals.done.connect(self._on_probed)
            self._probe = probe  # its signals object lives as long as this dialog
            QThreadPool.globalInstance().start(probe)
        self.show_time(self._pending)

    # -- time
    @property
    def seconds(self) -> float:
        """The stream second shown."""
        return self.player.seconds if self.fps else self._pending

    def seek_to(self, t: float) -> None:
        """Go to stream second ``t``: the picture (when there is a video) and the words said then."""
        t = max(0.0, t)
        if self.fps:
            self.player.seek(round(t * self.fps))  # position_changed shows the words
        else:
            self._pending = t
            self.show_time(t)

    def cue_at(self, t: float) -> str:
        """The words on screen at stream second ``t`` ("" when none): the newest ``MAX_LINES`` cues
        showing then (a question and its answer overlap), newest last, as the live captions were."""
        i = bisect.bisect_right(self._starts, t + 1e-6)
        recent = self.cues[max(0, i - 16) : i]  # a cue shows for a few seconds: the last few hold all
        return "\n".join([c.text for c in recent if t < c.end][-MAX_LINES:])

    def show_time(self, t: float) -> None:
        self.subtitle.setText(self.cue_at(t))
        row = bisect.bisect_right(self._line_times, t + 1e-6) - 1
        if row >= 0:
            self.lines.blockSignals(True)
            self.lines.setCurrentRow(row)
            self.lines.blockSignals(False)

    def _on_position(self, frame: int) -> None:
        if self.fps:
            self.show_time(frame / self.fps)

    def _on_probed(self, facts: Any) -> None:
        if facts.reason or not facts.fps:
            self.note.setText(f"The video {self.path} cannot be played: {facts.reason or 'no frame rate'}.")
            return
        self.fps = facts.fps
        self.note.setText(f"{self.path}: click a line or the timeline to go there.")
        # A turn of the player is a second of the stream: +1 s moves a second, the label names the model's step.
        turns = int(self.session.duration + 0.999)
        self.player.open(self.path, facts.frames, facts.fps, block=max(1, round(facts.fps)), n_turns=turns)
        self.seek_to(self._pending)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        self.player.shutdown()
        super().closeEvent(event)

    def done(self, result: int) -> None:
        self.player.shutdown()
        super().done(result)

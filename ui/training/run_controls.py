"""The train panel's run controls: Start training, Preview data..., Stop and Resume, the progress bar
with its ETA, the status line and the error box (what failed and what to do)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

ERROR_STYLE = "color: #c0392b"
OK_STYLE = "color: #2e7d32"


class RunControls(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.start_button = QPushButton("Start training")
        self.start_button.setDefault(True)
        self.start_button.setToolTip("Shows what will train first (unless you turned that off), then starts")
        self.preview_button = QPushButton("Preview data...")
        self.preview_button.setToolTip("Each clip as the model will see it, the held-out clips, epochs and steps")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Finish the current step, save a checkpoint and stop; Resume continues")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the run in this adapter folder from its last checkpoint")
        buttons = QHBoxLayout()
        for b in (self.start_button, self.preview_button, self.stop_button, self.resume_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("not started")
        self.progress.setTextVisible(True)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.hide()
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addLayout(buttons)
        for w in (self.progress, self.status, self.error):
            box.addWidget(w)

    def set_status(self, text: str, ok: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(OK_STYLE if ok else "")

    def show_error(self, text: str, rich: bool = False) -> None:
        self.error.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
        self.error.setText(text)
        self.error.show()

    def clear_error(self) -> None:
        self.error.clear()
        self.error.hide()

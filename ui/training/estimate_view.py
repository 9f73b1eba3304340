"""The train panel's estimate line: the clips read on the thread pool (``scan_data``: the annotations
and a probe of each video, with the tab's data rules), then time, memory and steps for the form's
settings (``app.training.estimate``), with the clips counted as the run will use them ("12 annotated
clips + 3 examples of nothing happening", or the unannotated ones left out and how to use them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from app.training.estimate import DataScan, Estimate, estimate, model_size, plan_run, scan_data, tab_data_rules
from app.training.preview import clip_count_text, left_out_text
from model.train.config import TrainConfig

FieldsFor = Callable[[int | None], dict[str, Any]]  # steps per epoch -> TrainConfig fields (ValueError: bad)


class _ScanJob(QRunnable):
    """Reads the annotations and probes the videos off the GUI thread (for the estimate)."""

    class Signals(QObject):
        done = Signal(object, object)  # key, DataScan
        failed = Signal(object, str)

    def __init__(self, key: tuple, paths: list[str], prefix: str | None, use_unannotated: bool) -> None:
        super().__init__()
        self.key, self.paths, self.prefix, self.use_unannotated = key, paths, prefix, use_unannotated
        self.signals = _ScanJob.Signals()

    def run(self) -> None:
        try:
            scan = scan_data(self.paths, self.prefix, **tab_data_rules(self.use_unannotated))
        except Exception as e:  # noqa: BLE001 - shown where the estimate goes
            self.signals.failed.emit(self.key, f"Could not read the clips: {e}")
        else:
            self.signals.done.emit(self.key, scan)


class EstimateView(QWidget):
    scanned = Signal(object)  # key: the clips of ``key`` were read (``scan`` holds them)
    scan_failed = Signal(object, str)  # key, message

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.scan: DataScan | None = None
        self.scan_key: tuple | None = None
        self.pending: tuple | None = None
        self.last: Estimate | None = None
        self.label = QLabel("Estimate: reading the clips...")
        self.label.setWordWrap(True)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: palette(mid); font-size: 11px")
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.label)
        box.addWidget(self.note)

    @staticmethod
    def key_of(paths: Sequence[str], prefix: str | None, use_unannotated: bool) -> tuple:
        return (tuple(paths), prefix, bool(use_unannotated))

    def read(self, paths: Sequence[str], prefix: str | None, use_unannotated: bool, force: bool = False) -> bool:
        """Read the clips on the thread pool unless they were read (or are being read) already; True
        when a read started."""
        key = self.key_of(paths, prefix, use_unannotated)
        if not force and key in (self.scan_key, self.pending):
            return False
        self.pending = key
        self.label.setText("Estimate: reading the clips...")
        job = _ScanJob(key, list(paths), prefix, use_unannotated)
        job.signals.done.connect(self._on_done)
        job.signals.failed.connect(self._on_failed)
        QThreadPool.globalInstance().start(job)
        return True

    def show_problem(self, text: str) -> None:
        """No clips to estimate (no project, nothing annotated ...): say why."""
        self.scan, self.scan_key = None, None
        self.label.setText(f"Estimate: {text}")
        self.note.clear()

    def _on_done(self, key: tuple, scan: DataScan) -> None:
        if key != self.pending:
            return
        self.pending = None
        self.scan, self.scan_key = scan, key
        self.scanned.emit(key)

    def _on_failed(self, key: tuple, message: str) -> None:
        if key == self.pending:
            self.pending = None
            self.label.setText(f"Estimate: {message}")
            self.scan_failed.emit(key, message)

    def steps_per_epoch(self, fields: dict[str, Any]) -> int | None:
        """Optimiser steps of one epoch over the clips read, with ``fields``' split and windows."""
        if self.scan is None or not self.scan.clips:
            return None
        return plan_run(TrainConfig(**{**fields, "steps": 1, "epochs": None}), self.scan.clips).steps_per_epoch

    def update(self, fields_for: FieldsFor) -> Estimate | None:
        """Recompute the estimate for the settings ``fields_for`` gives and the clips read last."""
        scan = self.scan
        if scan is None:
            return None
        left_out = "" if scan.unannotated_used else left_out_text(scan.unannotated)
        if not scan.clips:
            self.label.setText("Estimate: no usable clips yet (annotate some clips first).")
            self.note.setText("\n".join(([left_out + "."] if left_out else []) + scan.issues[:3]))
            return None
        try:
            fields = fields_for(self.steps_per_epoch(fields_for(None)))
        except ValueError as e:
            self.label.setText(f"Estimate: {e}")
            return None
        est = estimate(TrainConfig(**fields), scan.clips, model=model_size(fields["model"]))
        self.last = est
        used = scan.unannotated if scan.unannotated_used else 0
        clips = clip_count_text(scan.annotated, used, 0 if scan.unannotated_used else scan.unannotated)
        self.label.setText(f"Estimate: {est.summary()}, {clips} ({est.heldout_clips} held out)")
        self.note.setText((f"{left_out}. " if left_out else "") + est.note)
        return est

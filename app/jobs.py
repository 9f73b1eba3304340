"""Short jobs for the global thread pool: QRunnables that report through a nested Signals object."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Signal

log = logging.getLogger(__name__)


class CameraScan(QRunnable):
    """Opening cameras to list them takes a moment each, so it runs off the GUI thread."""

    class Signals(QObject):
        finished = Signal(list)  # list[app.sources.CameraInfo]
        failed = Signal(str)  # user-facing message

    def __init__(self, capture_factory: Any = None) -> None:
        super().__init__()
        self.signals = CameraScan.Signals()
        self._factory = capture_factory

    def run(self) -> None:
        try:
            from app.sources import list_cameras

            self.signals.finished.emit(list_cameras(capture_factory=self._factory))
        except Exception as e:  # noqa: BLE001 - shown next to the camera list
            self.signals.failed.emit(f"Could not list cameras: {e}")


class DownloadJob(QRunnable):
    """Download a checkpoint into the huggingface_hub cache. Cancel with ``cancel()``; starting
    again resumes from the hub's partial files."""

    class Signals(QObject):
        progress = Signal(object)  # DownloadProgress
        finished = Signal(str)  # local folder
        failed = Signal(str)  # user-facing message
        cancelled = Signal()

    def __init__(self, repo_id: str, downloader: Any = None) -> None:
        super().__init__()
        self.repo_id = repo_id
        self.signals = DownloadJob.Signals()
        self._cancel = threading.Event()
        self._downloader = downloader
        self._last_emit = 0.0
        self._last_done = 0

    def cancel(self) -> None:
        self._cancel.set()

    def run(self) -> None:
        try:
            from model.errors import ModelLoadError
            from model.hub import DownloadCancelled, download_model

            download = self._downloader or download_model
        except Exception as e:  # noqa: BLE001
            self.signals.failed.emit(f"Downloads are unavailable: {e}")
            return
        started = time.monotonic()

        def progress(done: int, total: int, filename: str) -> None:
            now = time.monotonic()
            # Ten updates a second, or each whole percent, are plenty for a progress bar.
            if now - self._last_emit < 0.1 and done - self._last_done < total / 100 and done < total:
                return
            self._last_emit, self._last_done = now, done
            self.signals.progress.emit(DownloadProgress(done, total, filename, now - started))

        try:
            path = download(self.repo_id, progress=progress, cancel=self._cancel)
        except DownloadCancelled:
            self.signals.cancelled.emit()
        except ModelLoadError as e:
            self.signals.failed.emit(str(e))
        except Exception as e:  # noqa: BLE001 - network errors of every kind
            log.exception("download of %s failed", self.repo_id)
            self.signals.failed.emit(f"Download of {self.repo_id} failed: {type(e).__name__}: {e}")
        else:
            self.signals.finished.emit(str(Path(path)))


class DownloadProgress:
    """Bytes done of total, the current file, and seconds since the download started."""

    __slots__ = ("done", "elapsed", "filename", "total")

    def __init__(self, done: int, total: int, filename: str, elapsed: float) -> None:
        self.done, self.total, self.filename, self.elapsed = done, total, filename, elapsed

    def speed_text(self, since_done: int = 0) -> str:
        rate = (self.done - since_done) / self.elapsed if self.elapsed > 0 else 0.0
        return f"{rate / 1024**2:.1f} MB/s"

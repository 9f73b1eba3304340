"""At most one sampled frame between the thread that captures and the thread that steps the model."""

from __future__ import annotations

import threading
from typing import Any


class FrameMailbox:
    """A slot for one frame. ``put`` drops an untaken older frame (a live source must never queue
    up behind a slow model) or, with ``wait``, first waits until it was taken (a file read at the
    model's pace: every sample is processed)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Any = None
        self._closed = False

    def put(self, frame: Any, wait: bool = False) -> bool:
        """Leave ``frame``; returns False once the mailbox is closed."""
        with self._cond:
            while wait and self._frame is not None and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._frame = frame
            self._cond.notify_all()
            return True

    def take(self, timeout: float | None = 0.0) -> Any:
        """The waiting frame (None if there is none); with a ``timeout`` (None: forever) wait for one
        until then or until the mailbox closes."""
        with self._cond:
            if timeout != 0.0:
                self._cond.wait_for(lambda: self._frame is not None or self._closed, timeout)
            frame, self._frame = self._frame, None
            self._cond.notify_all()
            return frame

    def has_frame(self) -> bool:
        with self._cond:
            return self._frame is not None

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def open(self) -> None:
        with self._cond:
            self._closed, self._frame = False, None

    def close(self) -> None:
        with self._cond:
            self._closed, self._frame = True, None
            self._cond.notify_all()

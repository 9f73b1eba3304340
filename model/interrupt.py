"""Ctrl-C as a request to stop at the next safe point, for long loops (narrating a stream, training, a
benchmark); SIGTERM and SIGHUP ask the same (a closed terminal, a service manager, ``kill``)."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class StopOnInterrupt:
    """First Ctrl-C (or SIGTERM, or SIGHUP): ``requested`` becomes True and the loop finishes what it is
    doing, keeping every finished piece; a second one raises KeyboardInterrupt at once. ``external`` (the
    app's Stop button, an event another thread or process sets) asks the same way. Installed only on the
    main thread (where Python delivers signals); call ``restore()`` when the loop ends."""

    def __init__(self, external: threading.Event | None = None, notice: str | None = None) -> None:
        self.external = external
        self.notice = notice
        self.requested = False
        self._previous: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.notice:
            log.warning("%s", self.notice)

    def is_set(self) -> bool:
        return self.requested or (self.external is not None and self.external.is_set())

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous = {}

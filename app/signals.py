"""SIGTERM and SIGHUP end a command like Ctrl-C: what each command does on Ctrl-C (narrate writes the
session's end record and its subtitles, training saves a checkpoint, a benchmark keeps its finished
entries) also happens when the terminal closes, a service manager stops it, or ``kill`` is sent.

Python turns only SIGINT into ``KeyboardInterrupt``; the other two would end the process at once, with
no ``finally`` block run. :func:`stop_signals_as_interrupt` raises ``KeyboardInterrupt`` for them in the
main thread for as long as it is entered (the window has its own handling, through Qt).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["STOP_SIGNALS", "stop_signals_as_interrupt"]

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


@contextmanager
def stop_signals_as_interrupt() -> Iterator[None]:
    """While entered (in the main thread), SIGTERM and SIGHUP raise KeyboardInterrupt like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

"""The one live runtime: what the desktop app and ``narrate`` both run (docs/architecture.md).

* ``records``: the step-record schema and ``Question`` (text, stream second, origin);
* ``subtitles``: the one subtitle rule;
* ``clock``: the one stream clock (runs, pauses, restarts; spoken questions placed by when speech ended);
* ``capture`` + ``mailbox``: a source sampled at the model's rate;
* ``runner``: ``LiveRunner``, the engine stepped over a stream, logged, with events;
* ``models``: the loaded model and how it is replaced;
* ``qt``: the QtCore threads and workers that host all this for the window (no widgets).
"""

from enum import Enum


class RunState(str, Enum):
    """Where a live run stands; every widget reads these (they compare equal to their strings)."""

    IDLE = "idle"
    LOADING = "loading"
    RUNNING = "running"
    PAUSED = "paused"

    def __str__(self) -> str:
        return self.value

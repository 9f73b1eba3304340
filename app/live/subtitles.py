"""The one subtitle rule, for the preview, the overlay, the terminal, SRT and WebVTT.

A response is shown from the start of its step (the second whose frame made the model answer;
that is where the event is in the video) for ``hold`` seconds, cut short by the next response and
by the end of the stream. Live, the same rule runs on the wall clock: a new answer replaces the old
one, and an answer fades ``hold`` seconds after its last token. On screen only the newest two lines
show, like live captions. Text is cleaned (``records.clean_text``) wherever it is shown or exported.

Picked over the two rules the app had (``narrate``: from the end of the step, 4 s; the window: from
the start, 6 s, cut at the next response): starting at the step's start keeps the caption on the
frames it describes, and 6 s is enough to read two lines.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.exports import Subtitle
from app.live.records import StepRecord, clean_text

HOLD_SECONDS = 6.0
MAX_LINES = 2  # lines a live caption shows at most (preview and overlay)


def cue_list(
    items: Iterable[tuple[float, float, str]], hold: float = HOLD_SECONDS, stream_end: float | None = None
) -> list[Subtitle]:
    """Cues for ``(start, end of step, text)`` items in stream order (empty texts are skipped)."""
    picked = [(t, end, clean_text(text).strip()) for t, end, text in items]
    picked = [p for p in picked if p[2]]
    cues = []
    for i, (t, end, text) in enumerate(picked):
        stop = t + max(hold, end - t)
        if i + 1 < len(picked) and picked[i + 1][0] > t:
            stop = min(stop, picked[i + 1][0])
        if stream_end is not None:
            stop = min(stop, max(stream_end, end))
        cues.append(Subtitle(t, stop, text))
    return cues


def record_cues(
    records: Iterable[StepRecord], hold: float = HOLD_SECONDS, stream_end: float | None = None
) -> list[Subtitle]:
    records = list(records)
    if stream_end is None and records:
        stream_end = records[-1].end
    return cue_list(((r.t, r.end, r.text) for r in records), hold, stream_end)


class SubtitleTimeline:
    """The cues of a run as it goes (``narrate`` rewrites its SRT/WebVTT files from it after each
    response; the window's export uses the same function on the session)."""

    def __init__(self, hold: float = HOLD_SECONDS) -> None:
        self.hold = hold
        self._items: list[tuple[float, float, str]] = []
        self.stream_end = 0.0

    def add(self, record: StepRecord) -> bool:
        """Take one step; True when it added a cue (a response with text)."""
        self.stream_end = max(self.stream_end, record.end)
        if clean_text(record.text).strip():
            self._items.append((record.t, record.end, record.text))
            return True
        return False

    @property
    def cues(self) -> list[Subtitle]:
        return cue_list(self._items, self.hold, self.stream_end)

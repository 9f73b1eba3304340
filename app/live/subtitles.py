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


def asked_by_someone(origin: str) -> bool:
    """A question a person asked (typed, spoken, ``narrate --question``): a subtitle of its own; the
    task's standing instruction (origin "preset") never is, as the live window never showed it."""
    return origin != "preset"


def transcript_cues(
    answers: Iterable[tuple[float, float, str]],
    questions: Iterable[tuple[float, float, str]],
    hold: float = HOLD_SECONDS,
    stream_end: float | None = None,
) -> list[Subtitle]:
    """The answers' cues (``cue_list``, unchanged: a run without questions gives the answers' SRT)
    with each asked question ``(start of the step it entered, end of that step, text)`` as its own
    ``Q: text`` cue: shown from that step's start for ``hold`` seconds, cut at the next question and
    at the stream's end, and listed before an answer that starts with it. Its own cue, not a prefix
    of the answer, because a question is not always answered on the second it enters. ``narrate``'s
    SRT and WebVTT, the window's export and the session player all show these."""
    said = cue_list(answers, hold, stream_end)
    asked = cue_list(((t, end, f"Q: {text}") for t, end, text in questions), hold, stream_end)
    return sorted(asked + said, key=lambda cue: cue.start)  # stable: at the same start, the question first


class SubtitleTimeline:
    """The cues of a run as it goes (``narrate`` rewrites its SRT/WebVTT files from its transcript
    after each response or question; the window's export uses ``transcript_cues`` on the session)."""

    def __init__(self, hold: float = HOLD_SECONDS) -> None:
        self.hold = hold
        self._items: list[tuple[float, float, str]] = []
        self._asked: list[tuple[float, float, str]] = []
        self.stream_end = 0.0

    def add(self, record: StepRecord) -> bool:
        """Take one step; True when the transcript changed (a response with text, an asked question)."""
        self.stream_end = max(self.stream_end, record.end)
        q = record.question
        asked = q is not None and asked_by_someone(q.origin) and bool(clean_text(q.text).strip())
        if asked:
            self._asked.append((record.t, record.end, q.text))
        if clean_text(record.text).strip():
            self._items.append((record.t, record.end, record.text))
            return True
        return asked

    @property
    def cues(self) -> list[Subtitle]:
        """The answers' cues."""
        return cue_list(self._items, self.hold, self.stream_end)

    @property
    def transcript(self) -> list[Subtitle]:
        """The answers' and the asked questions' cues (``transcript_cues``): what SRT and WebVTT hold."""
        return transcript_cues(self._items, self._asked, self.hold, self.stream_end)

"""Questions by voice: microphone -> voice activity (hands-free) or push-to-talk -> recognition on a
worker thread -> a :class:`Spoken` question, timed on the monotonic clock, that the live runtime
places in the stream (``StreamClock.question``: the stream second the speaker stopped).

:class:`VoiceInput` runs two threads of its own: one reads the microphone every ``poll_ms`` and
segments (never blocking the audio callback, which only fills the microphone's ring buffer), one
recognises utterances in order (so recognition never delays a model step, and the GUI never waits).
Times: the microphone knows nothing of the stream. Each read of the microphone stamps the newest
sample it got with ``time.monotonic()``; an utterance's start and end (sample positions) become
monotonic instants through the read that delivered them (late by at most one read: ``poll_ms`` plus
an audio block).
So listening may start long before a run, go on across pauses and from one run to the next: the
stream clock alone says which second an instant was.

While the assistant speaks (``speaker.speaking``) the microphone's audio is ignored, so it does not
hear itself, unless ``headphones`` is set; then the user starting to talk interrupts the speech
(barge-in). Pressing push-to-talk always interrupts it.

:func:`questions_from_file` does the same for a recorded question (``narrate --ask-audio``).
"""

from __future__ import annotations

import bisect
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.live.clock import Spoken
from app.live.records import Question
from app.voice import VoiceError
from app.voice.vad import PushToTalk, Segmenter, Utterance, VadSettings, segment

log = logging.getLogger(__name__)

HANDS_FREE, PUSH_TO_TALK = "hands-free", "push-to-talk"
MODES = (HANDS_FREE, PUSH_TO_TALK)
# What a listening indicator shows.
OFF, LISTENING, HEARING, RECOGNISING = "off", "listening", "hearing", "recognising"


@dataclass(frozen=True)
class Heard:
    """A recognised utterance, with the timing the latency benchmark reports."""

    question: Spoken
    speech_end_wall: float  # when the utterance ended, on the wall clock (perf_counter)
    entered_wall: float  # when its question was handed on
    recognise_seconds: float


def _span(u: Utterance, offset: float) -> tuple[float, float]:
    return (round(offset + u.start, 3), round(offset + u.end, 3))


class MicTimes:
    """Monotonic instants of microphone sample positions. The reader thread calls :meth:`add` after
    each read (``n`` samples, read at ``mono``); :meth:`at` maps a position (seconds of audio since
    listening began) to the instant it was heard: the read that delivered it held it as its newest
    sample at most ``len(read)`` earlier. Thread-safe (push-to-talk releases on another thread)."""

    def __init__(self, rate: int = 16000, keep: int = 8192) -> None:
        self.rate, self.keep = rate, keep  # 8192 reads of 30 ms: four minutes of history
        self._ends: list[int] = []  # samples heard up to and including each read
        self._monos: list[float] = []
        self._n = 0
        self._lock = threading.Lock()

    def add(self, n: int, mono: float) -> None:
        with self._lock:
            self._n += int(n)
            if n or not self._ends:
                self._ends.append(self._n)
                self._monos.append(mono)
            if len(self._ends) > 2 * self.keep:
                del self._ends[: self.keep], self._monos[: self.keep]

    @property
    def seconds(self) -> float:
        """Seconds of audio read so far."""
        return self._n / self.rate

    def at(self, seconds: float) -> float:
        """The monotonic instant the microphone heard position ``seconds``."""
        pos = seconds * self.rate
        with self._lock:
            if not self._ends:  # not listening yet: nothing was heard
                raise ValueError("no microphone audio has been read yet")
            i = bisect.bisect_left(self._ends, pos)
            i = min(i, len(self._ends) - 1)  # past what was read (a flush): the latest read's reckoning
            return self._monos[i] - (self._ends[i] - pos) / self.rate


class VoiceInput:
    """Listen and turn speech into questions. ``recognizer`` has ``transcribe(samples16k) -> str``;
    ``on_question`` gets each :class:`Spoken` question (on the recognition thread), timed on the
    monotonic clock, for the live runtime to place in the stream; ``microphone`` is a
    started-on-demand ``app.voice.audio.Microphone`` (tests pass one over a fake sounddevice).
    ``monotonic``: the time source (the stream clock's; tests pass one they can move on)."""

    def __init__(
        self,
        recognizer: Any,
        on_question: Callable[[Spoken], None],
        microphone: Any,
        mode: str = HANDS_FREE,
        vad: VadSettings | None = None,
        speaker: Any = None,
        headphones: bool = False,
        on_state: Callable[[str], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_heard: Callable[[Heard], None] | None = None,
        segmenter: Segmenter | None = None,
        poll_ms: int = 30,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"voice mode must be one of {MODES}, got {mode!r}")
        self.recognizer, self.on_question, self.monotonic = recognizer, on_question, monotonic
        self.microphone, self.mode, self.speaker, self.headphones = microphone, mode, speaker, headphones
        self._on_state, self._on_error, self._on_heard = on_state, on_error, on_heard
        self.vad_settings = vad or VadSettings()
        self.segmenter = segmenter or Segmenter(self.vad_settings)
        self.ptt = PushToTalk(pre_roll_ms=self.vad_settings.pre_roll_ms)
        self.poll_ms = poll_ms
        self.state = OFF
        self.level = 0.0
        self.ignored_seconds = 0.0  # audio dropped while the assistant spoke
        self.times = MicTimes(int(getattr(microphone, "rate", 16000)))
        self._stop = threading.Event()
        # (utterance, its start and end on the monotonic clock, perf_counter when it was cut)
        self._work: queue.Queue[tuple[Utterance, float, float, float] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._recognising = False

    # -- life cycle
    def start(self) -> VoiceInput:
        """Open the microphone and listen. VoiceError (no microphone, ...) leaves nothing running."""
        self.microphone.start()
        self.times.add(0, self.monotonic())  # listening begins: position 0 is now
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._listen, name="voice-listen", daemon=True),
            threading.Thread(target=self._recognise, name="voice-asr", daemon=True),
        ]
        for th in self._threads:
            th.start()
        self._set_state(LISTENING)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._work.put(None)
        for th in self._threads:
            if th is not threading.current_thread():
                th.join(5)
        self._threads = []
        try:
            self.microphone.stop()
        except Exception:  # noqa: BLE001 - a device that is gone may fail to close
            log.debug("closing the microphone failed", exc_info=True)
        self._set_state(OFF)

    @property
    def listening(self) -> bool:
        return bool(self._threads) and not self._stop.is_set()

    # -- push-to-talk
    def press(self) -> None:
        """The talk key went down: the assistant stops speaking, and the utterance starts (with pre-roll)."""
        if self.speaker is not None and self.speaker.speaking:
            self.speaker.stop()
        self.ptt.press()
        self._set_state(HEARING)

    def release(self) -> None:
        utterance = self.ptt.release()
        self._set_state(LISTENING)
        if utterance is not None:
            self._queue(utterance)

    @property
    def heard_seconds(self) -> float:
        """Seconds of microphone audio taken since listening began."""
        return self.times.seconds

    def _queue(self, utterance: Utterance) -> None:
        self._work.put((utterance, self.times.at(utterance.start), self.times.at(utterance.end), time.perf_counter()))

    # -- threads
    def _listen(self) -> None:
        while not self._stop.wait(self.poll_ms / 1000):
            try:
                samples = self.microphone.read()
                self.times.add(len(samples), self.monotonic())  # the newest sample was heard by now
                self.level = float(getattr(self.microphone, "level", 0.0))
                self._take(samples)  # what arrived counts, even when the device went away after it
                self.microphone.poll()
            except VoiceError as e:
                if self.mode != PUSH_TO_TALK:
                    for utterance in self.segmenter.flush():  # speech cut off by the device going away
                        self._queue(utterance)
                self._fail(str(e))
                return

    def _take(self, samples: np.ndarray) -> None:
        speaking = self.speaker is not None and self.speaker.speaking
        if self.mode == PUSH_TO_TALK:
            self.ptt.push(samples)
            return
        if speaking and not self.headphones:
            # The assistant's own voice would come back as a question: let the time pass unheard.
            self.ignored_seconds += len(samples) / 16000
            self.segmenter.push(np.zeros_like(samples))
            return
        utterances = self.segmenter.push(samples)
        for utterance in utterances:
            self._queue(utterance)
        if speaking and (utterances or self.segmenter.in_speech):
            self.speaker.stop()  # barge-in (headphones on): the user talks over the answer
        if self.segmenter.in_speech:
            self._set_state(HEARING)
        elif self.state == HEARING:
            self._set_state(LISTENING)

    def _recognise(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            utterance, started_mono, ended_mono, ended = item
            self._recognising = True
            self._set_state(RECOGNISING)
            started = time.perf_counter()
            try:
                text = self.recognizer.transcribe(utterance.samples)
            except VoiceError as e:
                self._recognising = False
                self._fail(str(e), stop=False)
                continue
            self._recognising = False
            self._set_state(HEARING if self.segmenter.in_speech else LISTENING)
            text = (text or "").strip()
            if not text:
                continue
            question = Spoken(text, started_mono, ended_mono)
            self.on_question(question)
            if self._on_heard is not None:
                self._on_heard(Heard(question, ended, time.perf_counter(), time.perf_counter() - started))

    def _set_state(self, state: str) -> None:
        if self._recognising and state != RECOGNISING:
            return
        if state != self.state:
            self.state = state
            if self._on_state is not None:
                self._on_state(state)

    def _fail(self, message: str, stop: bool = True) -> None:
        log.warning("%s", message)
        if self._on_error is not None:
            self._on_error(message)
        if stop:
            self._stop.set()
            self._work.put(None)
            self._set_state(OFF)


def questions_from_file(recognizer: Any, path: str | Path, at: float, vad: VadSettings | None = None) -> list[Question]:
    """A recorded question (a WAV file) through voice activity and recognition: one Question per
    utterance, the first utterance's speech starting at stream second ``at``. VoiceError for a file
    that is not audio or holds no speech."""
    from app.voice.wav import read_wav

    samples, rate = read_wav(path)
    utterances = segment(samples, rate, vad)
    if not utterances:
        raise VoiceError(f"{path}: no speech found in the recording (is it silent, or not a voice?)")
    offset = at - utterances[0].start
    out = []
    for u in utterances:
        text = (recognizer.transcribe(u.samples) or "").strip()
        if text:
            start, end = _span(u, offset)
            out.append(Question(text, end, "voice", (start, end)))
    return out

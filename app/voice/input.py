"""Questions by voice: microphone -> voice activity (hands-free) or push-to-talk -> recognition on a
worker thread -> a :class:`Question` (origin "voice") at the stream second the speaker stopped.

:class:`VoiceInput` runs two threads of its own: one reads the microphone every ``poll_ms`` and
segments (never blocking the audio callback, which only fills the microphone's ring buffer), one
recognises utterances in order (so recognition never delays a model step, and the GUI never waits).
Times: the microphone's clock starts at :meth:`start`, when ``stream_time()`` is read once; an
utterance that ends ``e`` seconds into the microphone stream ends at stream second
``stream_t0 + e``, which is where its question enters (the turn covering it, or the next).

While the assistant speaks (``speaker.speaking``) the microphone's audio is ignored, so it does not
hear itself, unless ``headphones`` is set; then the user starting to talk interrupts the speech
(barge-in). Pressing push-to-talk always interrupts it.

:func:`questions_from_file` does the same for a recorded question (``narrate --ask-audio``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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

    question: Question
    speech_end_wall: float  # when the utterance ended, on the wall clock (perf_counter)
    entered_wall: float  # when its question was handed on
    recognise_seconds: float


def _span(u: Utterance, offset: float) -> tuple[float, float]:
    return (round(offset + u.start, 3), round(offset + u.end, 3))


class VoiceInput:
    """Listen and turn speech into questions. ``recognizer`` has ``transcribe(samples16k) -> str``;
    ``on_question`` gets each Question (on the recognition thread); ``stream_time`` says the current
    stream second; ``microphone`` is a started-on-demand ``app.voice.audio.Microphone`` (tests pass
    one over a fake sounddevice)."""

    def __init__(
        self,
        recognizer: Any,
        on_question: Callable[[Question], None],
        stream_time: Callable[[], float],
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
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"voice mode must be one of {MODES}, got {mode!r}")
        self.recognizer, self.on_question, self.stream_time = recognizer, on_question, stream_time
        self.microphone, self.mode, self.speaker, self.headphones = microphone, mode, speaker, headphones
        self._on_state, self._on_error, self._on_heard = on_state, on_error, on_heard
        self.vad_settings = vad or VadSettings()
        self.segmenter = segmenter or Segmenter(self.vad_settings)
        self.ptt = PushToTalk(pre_roll_ms=self.vad_settings.pre_roll_ms)
        self.poll_ms = poll_ms
        self.state = OFF
        self.level = 0.0
        self.ignored_seconds = 0.0  # audio dropped while the assistant spoke
        self._offset = 0.0  # stream second of the microphone's first sample
        self._stop = threading.Event()
        self._work: queue.Queue[tuple[Utterance, float] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._recognising = False

    # -- life cycle
    def start(self) -> VoiceInput:
        """Open the microphone and listen. VoiceError (no microphone, ...) leaves nothing running."""
        self.microphone.start()
        self._offset = float(self.stream_time())
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
            self._work.put((utterance, time.perf_counter()))

    # -- threads
    def _listen(self) -> None:
        while not self._stop.wait(self.poll_ms / 1000):
            try:
                samples = self.microphone.read()
                self.level = float(getattr(self.microphone, "level", 0.0))
                self._take(samples)  # what arrived counts, even when the device went away after it
                self.microphone.poll()
            except VoiceError as e:
                if self.mode != PUSH_TO_TALK:
                    now = time.perf_counter()
                    for utterance in self.segmenter.flush():  # speech cut off by the device going away
                        self._work.put((utterance, now))
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
        now = time.perf_counter()
        utterances = self.segmenter.push(samples)
        for utterance in utterances:
            self._work.put((utterance, now))
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
            utterance, ended = item
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
            start, end = _span(utterance, self._offset)
            question = Question(text, end, "voice", (start, end))
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

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

While the assistant speaks (``speaker.speaking``) it must not hear itself as a question. With an
``echo`` canceller (``app.voice.echo``, on by default in the app) the microphone stays open: its
audio is cleaned of the answer's echo, and the user talking over the answer for ``ECHO_GUARD_S``
interrupts it (barge-in) and is recognised (after the canceller's first ``LEARN_S`` of the
speaker, while it learns the room, the microphone is muted as below). With ``headphones`` there is no echo, and speech
interrupts at once. With neither, the microphone's audio is ignored while the answer plays.
Pressing push-to-talk always interrupts it. The answer does not wait for the interruption to be sure: the first
hint that the user may be talking (a window the VAD scores at ``HINT`` of its threshold, or at ``FAINT`` of it as
the sound jumps) holds it (``Speaker.hold``: silent at once), so the user's next syllables are heard without the
answer over them; speech that then lasts is the barge-in, and anything else (a cough) releases the answer after
``HOLD_S``, and it goes on.

Turn-taking. Recognition has a bounded queue (``max_queue``); an utterance still waiting ``stale_s``
after it was spoken (the recogniser fell behind) is merged into the one queued after it, or dropped
with a notice when none is. While someone talks, the audio so far is transcribed on the recognition
thread whenever it is idle (``on_partial``: what the voice row shows); once their silence has lasted the
post-roll, that audio is what the utterance will hold if they stay silent, so its transcript is ready
when the hangover ends and the question is entered without waiting for recognition. Transcripts
without words, Whisper's stock phrases for silence and noise, and no-speech or low-confidence output
(``Recognizer.unheard``) are not questions: ``on_notice`` says "I didn't catch that". Listening
loads and warms up the recogniser and the VAD before the microphone opens (:meth:`VoiceInput.start`),
so the first question is as quick as the next.

:func:`questions_from_file` does the same for a recorded question (``narrate --ask-audio``).
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.live.clock import Spoken
from app.live.records import Question
from app.voice import VoiceError
from app.voice.asr import WHISPER_WINDOW_S, Transcript, unheard
from app.voice.audio import level_dbfs
from app.voice.vad import PushToTalk, Segmenter, Utterance, VadSettings, segment

log = logging.getLogger(__name__)

HANDS_FREE, PUSH_TO_TALK = "hands-free", "push-to-talk"
MODES = (HANDS_FREE, PUSH_TO_TALK)
# What a listening indicator shows.
OFF, LISTENING, HEARING, RECOGNISING = "off", "listening", "hearing", "recognising"
#: With echo cancellation, speech must last this long over an answer before it interrupts: a burst of residual
#: echo (the canceller re-adapting after the room or the delay changed) is shorter, and stopping an answer for
#: it would be a false barge-in. The segmenter's ``min_speech_ms`` (250 ms) usually covers it already.
ECHO_GUARD_S = 0.2
#: A window whose speech probability reaches this share of the VAD's threshold, while an answer plays, holds the
#: answer (silent, not ended) until it is clear whether the user is talking. Through a settled echo canceller a
#: question 10 dB under the answer's echo scores 0.1-0.4 in its first 150 ms (the canceller's suppressor masks
#: part of it, so it crosses the threshold itself only 0.25-0.6 s later) while the echo alone scores under 0.05
#: (tests/app/voice/test_echo.py, bench/bench_voice.py); once the answer is silent, the rest of the question is
#: heard as it is.
HINT = 0.2
#: ... or a window scoring this share of it together with the sound jumping ``JUMP_DB`` above the loudest read of the
#: second before (within ``JOIN_S`` of each other). A question's first syllable, partly masked by the canceller,
#: scores 0.05-0.15, too little alone, but its sound rises 25-30 dB over what the canceller leaves of the echo: the
#: jump takes a faint score for the user, and a jump whose sound is not speech-like (a knock, a click) scores under it.
FAINT, JUMP_DB, JOIN_S = 0.1, 12.0, 0.07
#: The second of sound before a read that its jump is measured against.
LEVEL_WINDOW_S = 1.0
#: A held answer goes on once nothing has scored ``HINT`` for this long and no utterance of ``min_speech_ms`` has
#: begun (a cough, a knock, a word to someone else).
HOLD_S = 0.4
#: After an answer was held for nothing, for this long only a window the VAD takes for speech (its threshold, not
#: ``HINT`` or ``FAINT`` of it) holds it again: noise that keeps scoring must not stutter the answer, and the user
#: must still be heard. While the echo canceller settles (``app.voice.echo.SETTLE_S``) a score of ``HINT`` alone does
#: not hold it either (leftover echo scored up to 0.16 then), a faint score with a jump of the sound does.
HOLD_BACKOFF_S = 1.5


@dataclass(frozen=True)
class Heard:
    """A recognised utterance, with the timing the latency benchmark reports."""

    question: Spoken
    speech_end_wall: float  # when the utterance ended, on the wall clock (perf_counter)
    entered_wall: float  # when its question was handed on
    recognise_seconds: float


@dataclass(frozen=True)
class _Job:
    """An utterance waiting for recognition: its start and end on the monotonic clock, and the
    perf_counter instant it was cut (for :class:`Heard`)."""

    utterance: Utterance
    started_mono: float
    ended_mono: float
    cut_wall: float


def _joined(a: _Job, b: _Job, gap_s: float = 0.3) -> _Job:
    """``a`` and ``b`` as one utterance (``gap_s`` of silence between them: the pause itself is not kept)."""
    ua, ub = a.utterance, b.utterance
    samples = np.concatenate([ua.samples, np.zeros(int(gap_s * ua.rate), np.float32), ub.samples])
    u = Utterance(ua.start, ub.end, samples, ua.rate, ua.audio_start)
    return _Job(u, a.started_mono, b.ended_mono, b.cut_wall)


def _span(u: Utterance, offset: float) -> tuple[float, float]:
    return (round(offset + u.start, 3), round(offset + u.end, 3))


class MicTimes:
    """Monotonic instants of microphone sample positions. The reader thread calls :meth:`add` after
    each read (``n`` samples, read at ``mono``); :meth:`at` maps a position (seconds of audio since
    listening began) to the instant it was heard: the read that delivered it held it as its newest
    sample at most ``len(read)`` earlier. Thread-safe (push-to-talk releases on another thread)."""

    def __init__(self, rate: int = 16000, keep: int = 8192) -> None:
        # 8192 reads that held audio (a 20 ms block or more each): 2.7 minutes of history at least.
        self.rate, self.keep = rate, keep
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
    ``echo``: an ``app.voice.echo.EchoCanceller`` whose reference the ``speaker`` feeds; every read
    goes through it, and the microphone stays open while the assistant speaks.
    ``monotonic``: the time source (the stream clock's; tests pass one they can move on).
    ``on_partial``: the words so far while someone talks ("" once their utterance is done);
    ``on_notice``: a question not taken, and why (not an error: listening goes on). ``max_queue``:
    utterances waiting for recognition at most (the oldest is dropped, with a notice); ``stale_s``:
    seconds after its end an utterance may wait before it is merged or dropped; ``partial_s``: seconds
    between partial transcripts (0: none)."""

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
        echo: Any = None,
        poll_ms: int = 10,
        monotonic: Callable[[], float] = time.monotonic,
        on_partial: Callable[[str], None] | None = None,
        on_notice: Callable[[str], None] | None = None,
        max_queue: int = 4,
        stale_s: float = 8.0,
        partial_s: float = 0.6,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"voice mode must be one of {MODES}, got {mode!r}")
        self.recognizer, self.on_question, self.monotonic = recognizer, on_question, monotonic
        self.microphone, self.mode, self.speaker, self.headphones = microphone, mode, speaker, headphones
        self.echo = echo  # an app.voice.echo.EchoCanceller fed by the speaker's output, or None
        self._on_state, self._on_error, self._on_heard = on_state, on_error, on_heard
        self._on_partial, self._on_notice = on_partial, on_notice
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        self.max_queue, self.stale_s, self.partial_s = max_queue, stale_s, partial_s
        self.vad_settings = vad or VadSettings()
        self.segmenter = segmenter or Segmenter(self.vad_settings)
        self.ptt = PushToTalk(pre_roll_ms=self.vad_settings.pre_roll_ms)
        self.poll_ms = poll_ms
        self.state = OFF
        self.level = 0.0
        self.ignored_seconds = 0.0  # audio dropped while the assistant spoke
        self._held_at: float | None = None  # microphone seconds when the answer was held (possible speech)
        self._released_at = -HOLD_BACKOFF_S  # ... when a hold last let it go on
        self._hinted_at = 0.0  # ... and when a window last scored a hint of speech
        self._levels: deque[tuple[float, float]] = deque()  # (seconds, dBFS) of the reads while an answer plays
        self._jump_at = self._faint_at = -1.0  # the latest jump of the sound, the latest faint score
        self.times = MicTimes(int(getattr(microphone, "rate", 16000)))
        self._stop = threading.Event()
        # The recognition thread's work, under _cv: utterances in order (at most max_queue), then the
        # latest snapshot of the utterance in progress (a partial) when nothing else waits.
        self._cv = threading.Condition()
        self._jobs: deque[_Job] = deque()
        self._snapshot: Utterance | None = None
        self._closed = False
        self._busy = False  # the recognition thread is transcribing something
        self._guess: tuple[tuple[float, int], Transcript] | None = None  # the last snapshot's transcript
        self._last_offer = 0.0  # when the last partial was offered (monotonic)
        self._offered_from: float | None = None  # speech_started_at of the utterance offered for
        self._silence_offered = False  # the snapshot of the current silence was offered
        self.dropped = 0  # utterances dropped (stale or over the queue's bound)
        self._threads: list[threading.Thread] = []
        self._recognising = False

    # -- life cycle
    def start(self) -> VoiceInput:
        """Warm up the recogniser and the VAD, open the microphone and listen. VoiceError (no
        microphone, a model that cannot load, ...) leaves nothing running."""
        self.warm_up()
        with self._cv:
            self._jobs.clear()
            self._snapshot, self._closed, self._guess = None, False, None
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

    def warm_up(self) -> None:
        """Load the recogniser and run it once, and run the VAD once: both pay for loading and for their
        first call (seconds for Silero and Whisper on a CPU), which must not fall on the first word."""
        warm = getattr(self.recognizer, "warm_up", None) or getattr(self.recognizer, "load", None)
        if warm is not None:
            warm()
        if self.mode == HANDS_FREE:
            vad = self.segmenter.vad  # creating a SileroVad loads its model
            if hasattr(vad, "warm_up"):
                vad.warm_up()
            else:
                vad.probability(np.zeros(512, np.float32))
                vad.reset()

    def stop(self) -> None:
        self._stop.set()
        self._release()
        self._close_work()
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
        job = _Job(utterance, self.times.at(utterance.start), self.times.at(utterance.end), time.perf_counter())
        with self._cv:
            self._jobs.append(job)
            self._snapshot = None  # the utterance covers what a waiting snapshot held
            dropped = self._jobs.popleft() if len(self._jobs) > self.max_queue else None
            self._cv.notify_all()
        if dropped is not None:
            self._drop(dropped, f"more than {self.max_queue} questions were waiting for recognition")

    def _close_work(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def _offer(self) -> None:
        """On the listening thread, after each read: give the recognition thread the utterance in progress
        when it is idle: every ``partial_s`` while the user talks, and once when their silence has lasted
        the post-roll (that audio is final if they stay silent: see :meth:`Segmenter.snapshot`)."""
        seg = self.segmenter
        if self.mode != HANDS_FREE or not seg.in_speech:
            self._offered_from = None
            return
        now = self.monotonic()
        if seg.speech_started_at != self._offered_from:  # a new utterance: its first partial after partial_s
            self._offered_from, self._last_offer, self._silence_offered = seg.speech_started_at, now, False
        silent = seg.silence_seconds
        if silent == 0.0:
            self._silence_offered = False
            if not self.partial_s or now - self._last_offer < self.partial_s:
                return
        elif self._silence_offered or silent * 1000.0 < self.vad_settings.post_roll_ms:
            return
        with self._cv:
            if self._busy or self._jobs:
                return  # not idle: a question is never kept waiting by a partial
            snapshot = seg.snapshot()
            if snapshot is None:
                return
            self._snapshot = snapshot
            self._cv.notify_all()
        self._last_offer = now
        self._silence_offered = silent > 0.0

    # -- threads
    def _listen(self) -> None:
        if self.echo is not None:
            self.echo.reset()  # what the speaker played before listening began can only lag its echo now
        while not self._stop.wait(self.poll_ms / 1000):
            try:
                samples = self.microphone.read()
                self.times.add(len(samples), self.monotonic())  # the newest sample was heard by now
                self.level = float(getattr(self.microphone, "level", 0.0))
                if self.echo is not None:
                    # The answer's echo taken out. Under 10 ms waits for the next read: the positions stay the
                    # microphone's, so the times above still map them.
                    samples = self._cancel_echo(samples)
                self._take(samples)  # what arrived counts, even when the device went away after it
                self._offer()
                self.microphone.poll()
            except VoiceError as e:
                if self.mode != PUSH_TO_TALK:
                    for utterance in self.segmenter.flush():  # speech cut off by the device going away
                        self._queue(utterance)
                self._fail(str(e))
                return

    def _cancel_echo(self, samples: np.ndarray) -> np.ndarray:
        try:
            return self.echo.process(samples, heard_at=time.monotonic())  # the devices' clock, not a test's
        except Exception as e:  # noqa: BLE001 - the native module failing must not end listening
            log.warning("echo cancellation failed: %s: %s", type(e).__name__, e)
            self.echo = None
            if self._on_error is not None:
                self._on_error(
                    f"Echo cancellation stopped working ({e}); the microphone is now muted while an answer is "
                    "spoken. Tick 'headphones' in Voice > Voice settings to talk over answers."
                )
            return samples

    def _take(self, samples: np.ndarray) -> None:
        speaking = self.speaker is not None and self.speaker.speaking
        if self.mode == PUSH_TO_TALK:
            self.ptt.push(samples)
            return
        if speaking and not self.headphones and (self.echo is None or self.echo.learning):
            # The assistant's own voice would come back as a question (no canceller, or one still learning the
            # room in the first answer it hears): let the time pass unheard.
            self.ignored_seconds += len(samples) / 16000
            self.segmenter.push(np.zeros_like(samples))
            return
        utterances = self.segmenter.push(samples)
        for utterance in utterances:
            self._queue(utterance)
        if speaking and self._talked_over(utterances):
            self.speaker.stop()  # barge-in: the user talks over the answer
            self._held_at = None
        elif speaking:
            self._hold_or_release(samples)
        else:
            self._held_at = None
            self._levels.clear()
        if self.segmenter.in_speech:
            self._set_state(HEARING)
        elif self.state == HEARING:
            self._set_state(LISTENING)

    def _hold_or_release(self, samples: np.ndarray) -> None:
        """While an answer plays and nobody is sure yet: hold it at the first hint of speech, let it go on when
        the hint came to nothing (see ``HINT``)."""
        hold = getattr(self.speaker, "hold", None)
        if hold is None:
            return
        now, seg, threshold = self.times.seconds, self.segmenter, self.vad_settings.threshold
        if self._held_at is not None and not getattr(self.speaker, "held", True):
            self._held_at, self._released_at = None, now  # it went on by itself (HOLD_MAX_S): as if let go
        if self._held_at is not None:
            if seg.peak >= HINT * threshold:
                self._hinted_at = now
            elif now - self._hinted_at >= HOLD_S and not seg.in_speech:
                self._release()
            return
        backoff = now - self._released_at < HOLD_BACKOFF_S
        settling = not (self.headphones or self.echo is None or self.echo.settled)
        if len(samples):
            self._level_jump(now, level_dbfs(samples))
        if seg.peak >= FAINT * threshold:
            self._faint_at = now
        joined = now - self._jump_at <= JOIN_S and now - self._faint_at <= JOIN_S
        hint = seg.peak >= HINT * threshold and not settling
        if seg.peak >= threshold or (not backoff and (hint or joined)):
            hold()
            self._held_at = self._hinted_at = now
            self._levels.clear()  # the answer is silent now: what comes after it is not measured against it

    def _level_jump(self, now: float, level: float) -> None:
        """Keep the sound's level while the answer plays; note when it jumps above the second before."""
        levels = self._levels
        if levels and now - levels[0][0] >= LEVEL_WINDOW_S / 2:  # a second to compare with (half of one at least)
            if level >= max(lv for _, lv in levels) + JUMP_DB:
                self._jump_at = now
        levels.append((now, level))
        while now - levels[0][0] > LEVEL_WINDOW_S:
            levels.popleft()

    def _release(self) -> None:
        if self._held_at is not None and self.speaker is not None:
            self.speaker.release()
            self._held_at, self._released_at = None, self.times.seconds

    def _talked_over(self, utterances: list[Utterance]) -> bool:
        """While an answer plays: has the user started talking? With headphones any speech counts; through
        echo cancellation only speech that has lasted ``ECHO_GUARD_S`` (residual echo is shorter)."""
        if self.headphones or self.echo is None:
            return bool(utterances) or self.segmenter.in_speech
        if any(u.duration >= ECHO_GUARD_S for u in utterances):
            return True
        started = self.segmenter.speech_started_at
        return started is not None and self.times.seconds - started >= ECHO_GUARD_S

    def _recognise(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and self._snapshot is None and not self._closed:
                    self._cv.wait()
                if not self._jobs and self._closed:
                    return  # utterances queued before stop() are still recognised
                job, stale = self._next_job() if self._jobs else (None, [])
                snapshot, self._snapshot = self._snapshot, None  # a newer one comes with the next read
                self._busy = True
            try:
                for old in stale:
                    self._drop(old, "speech recognition fell behind")
                if job is not None:
                    self._final(job)
                elif snapshot is not None:
                    self._partial(snapshot)
            finally:
                with self._cv:
                    self._busy = False

    def _next_job(self) -> tuple[_Job | None, list[_Job]]:
        """Under ``_cv``: the next utterance to recognise, and those dropped as stale. One that waited more
        than ``stale_s`` after it ended is merged into the next one queued (one recognition instead of
        two, so a backlog shrinks, and nothing said is lost: people who were not answered say more), or
        dropped when nothing follows it (a question about a moment long gone, answered late and out of
        the blue, confuses more than it helps) or when the two together exceed Whisper's 30 s window."""
        job, dropped = self._jobs.popleft(), []
        while self.monotonic() - job.ended_mono > self.stale_s:
            if not self._jobs:
                return None, [*dropped, job]
            after = self._jobs.popleft()
            together = len(job.utterance.samples) + len(after.utterance.samples)
            if together > WHISPER_WINDOW_S * job.utterance.rate:
                dropped.append(job)
                job = after
            else:
                job = _joined(job, after)
        return job, dropped

    def _drop(self, job: _Job, why: str) -> None:
        self.dropped += 1
        age = self.monotonic() - job.ended_mono
        self._notice(
            f"A question you asked {age:.0f} s ago was dropped: {why}. Ask it again; if this keeps happening, "
            "choose a smaller recognition model in Voice > Voice settings."
        )

    def _notice(self, message: str) -> None:
        log.info("%s", message)
        if self._on_notice is not None:
            self._on_notice(message)

    def _transcript(self, samples: np.ndarray) -> Transcript:
        recognise = getattr(self.recognizer, "recognise", None)
        if recognise is not None:
            return recognise(samples)
        return Transcript((self.recognizer.transcribe(samples) or "").strip())

    def _unheard(self, t: Transcript) -> str | None:
        rule = getattr(self.recognizer, "unheard", None)
        return rule(t) if rule is not None else unheard(t)

    def _partial(self, snapshot: Utterance) -> None:
        try:
            t = self._transcript(snapshot.samples)
        except VoiceError as e:  # the final recognition will say it, if it fails too
            log.debug("partial transcript failed: %s", e)
            return
        self._guess = ((snapshot.audio_start, len(snapshot.samples)), t)
        if self._on_partial is not None and self._unheard(t) is None and not self._stop.is_set():
            self._on_partial(t.text)

    def _final(self, job: _Job) -> None:
        utterance = job.utterance
        self._recognising = True
        self._set_state(RECOGNISING)
        started = time.perf_counter()
        guess, self._guess = self._guess, None
        try:
            if guess is not None and guess[0] == (utterance.audio_start, len(utterance.samples)):
                t = guess[1]  # recognised during the hangover: exactly this audio
            else:
                t = self._transcript(utterance.samples)
        except VoiceError as e:
            self._recognising = False
            self._fail(str(e), stop=False)
            return
        finally:
            self._recognising = False
        self._set_state(HEARING if self.segmenter.in_speech else LISTENING)
        if self._on_partial is not None:
            self._on_partial("")
        why = self._unheard(t)
        if why is not None:
            self._notice(f"I didn't catch that ({why}); please say it again.")
            return
        question = Spoken(t.text.strip(), job.started_mono, job.ended_mono)
        self.on_question(question)
        if self._on_heard is not None:
            self._on_heard(Heard(question, job.cut_wall, time.perf_counter(), time.perf_counter() - started))

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
            self._close_work()
            self._set_state(OFF)


def questions_from_file(recognizer: Any, path: str | Path, at: float, vad: VadSettings | None = None) -> list[Question]:
    """A recorded question (a WAV file) through voice activity and recognition: one Question per
    utterance, the first utterance's speech starting at stream second ``at``. VoiceError for a file
    that is not audio or holds no speech."""
    from app.voice.wav import open_audio

    with open_audio(path) as f:  # in blocks: an hour-long recording stays in bounded memory
        utterances = segment(f.blocks(), f.rate, vad)
    if not utterances:
        raise VoiceError(f"{path}: no speech found in the recording (is it silent, or not a voice?)")
    offset = at - utterances[0].start
    out = []
    rule = getattr(recognizer, "unheard", None) or unheard
    for u in utterances:
        recognise = getattr(recognizer, "recognise", None)
        t = (
            recognise(u.samples)
            if recognise is not None
            else Transcript((recognizer.transcribe(u.samples) or "").strip())
        )
        text = t.text.strip()
        if rule(t) is None:
            start, end = _span(u, offset)
            out.append(Question(text, end, "voice", (start, end)))
    return out

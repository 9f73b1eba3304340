"""Spoken answers: text -> speech with pyttsx3 (espeak-ng on Linux) -> the speakers through sounddevice.

pyttsx3's engine is one per process (``pyttsx3.init`` caches it; espeak-ng itself is initialised once
per process with one synthesis callback) and it is not thread-safe: ``runAndWait`` from two threads
corrupts its loop state. So exactly one thread, ``_EngineThread``, ever touches it; ``synthesize``
and every ``Speaker`` hand it jobs and wait for the samples. Synthesis renders to a WAV file
(``save_to_file``), never to pyttsx3's own playback, so that playback is ours: sounddevice in 20 ms
chunks, which lets a newer answer, ``stop()`` or the user talking over it (barge-in) cut the audio
at once.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np

from app.voice import VoiceError

log = logging.getLogger(__name__)

ENGINE_MISSING = (
    "Speech output needs a text-to-speech engine: on Linux install espeak-ng (sudo apt-get install espeak-ng); "
    "answers still show as subtitles."
)
NO_OUTPUT = "No audio output device: "
TEST_SENTENCE = "This is how Streamo Live will speak its answers."
DEFAULT_RATE = 200  # words per minute when none is chosen (pyttsx3's own default)
TRACK_RATE = 22050  # espeak-ng's own rate: the track needs no resampling by default
CHUNK_S = 0.02  # playback granularity: the longest an interruption waits for a write to return
FADE_S = 0.005  # a cut answer fades out over this long instead of clicking
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

StateFn = Callable[[str], None]  # "started" | "stopped"
ErrorFn = Callable[[VoiceError], None]


# ---------------------------------------------------------------------------------------------
# The one thread that owns pyttsx3


class _EngineThread:
    """Runs jobs ``fn(engine) -> result`` one after another on one daemon thread holding the engine.

    ``pyttsx3.init()`` is asked again for each job: it returns the cached engine (a dictionary
    look-up), and an engine that cannot start (espeak-ng missing) is reported on every job rather
    than once at import.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[Any], Any], Future]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._engine: Any = None  # keeps pyttsx3's weakly cached engine alive between jobs
        self.defaults: dict[str, Any] = {}

    def submit(self, fn: Callable[[Any], Any]) -> Future:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="tts-engine", daemon=True)
                self._thread.start()
        fut: Future = Future()
        self._jobs.put((fn, fut))
        return fut

    def call(self, fn: Callable[[Any], Any], timeout: float) -> Any:
        try:
            return self.submit(fn).result(timeout=timeout)
        except FutureTimeout:
            raise VoiceError(f"The text-to-speech engine did not answer within {timeout:.0f} s.") from None

    def _run(self) -> None:
        while True:
            fn, fut = self._jobs.get()
            if not fut.set_running_or_notify_cancel():
                continue  # cancelled while queued (a newer answer superseded it)
            try:
                fut.set_result(fn(self._get_engine()))
            except BaseException as e:  # noqa: BLE001 - handed to the waiting caller
                fut.set_exception(e)

    def _get_engine(self) -> Any:
        try:
            import pyttsx3

            engine = pyttsx3.init()
            if not self.defaults:
                # What "no voice / rate / volume chosen" means, so that a call without them is not coloured
                # by the previous caller's choice: the engine's voice at start, pyttsx3's 200 words per minute
                # and full volume. (The rate is not read back: espeak-ng reported 175 in one process and 200 in
                # another.)
                self.defaults = {"voice": engine.getProperty("voice"), "rate": DEFAULT_RATE, "volume": 1.0}
        except Exception as e:  # noqa: BLE001 - ImportError, OSError (no libespeak-ng), RuntimeError
            self._engine = None
            log.warning("text-to-speech engine failed to start: %s: %s", type(e).__name__, e)
            raise VoiceError(ENGINE_MISSING) from e
        self._engine = engine
        # The espeak driver prints "Audio saved to ..." for every file: the terminal front end's
        # stdout carries subtitles, so that module's print is silenced (only that module's).
        driver = getattr(getattr(engine, "proxy", None), "_module", None)
        if driver is not None:
            driver.print = lambda *a, **k: None
        return engine


_ENGINE = _EngineThread()


def _voice_list(engine: Any) -> list[tuple[str, str]]:
    return [(str(v.id), str(v.name)) for v in engine.getProperty("voices")]


def _read_wav(path: str) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV -> float32 mono in [-1, 1], rate."""
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise VoiceError(f"The text-to-speech engine wrote {8 * w.getsampwidth()}-bit audio; 16-bit expected.")
        rate, channels = w.getframerate(), w.getnchannels()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    audio = pcm.astype(np.float32) / 32768.0
    if channels > 1:
        audio = audio.reshape(-1, channels).mean(axis=1)
    return audio, rate


def _is_espeak(engine: Any) -> bool:
    module = getattr(getattr(engine, "proxy", None), "_module", None)
    return getattr(module, "__name__", "").endswith(".espeak")


def _synth_job(text: str, voice: str | None, rate: int | None, volume: float | None) -> Callable[[Any], Any]:
    def job(engine: Any) -> tuple[np.ndarray, int]:
        defaults = _ENGINE.defaults
        if voice is not None and voice not in {v for pair in _voice_list(engine) for v in pair}:
            raise VoiceError(f"Unknown voice '{voice}'; choose one in Settings > Voice.")
        errors: list[BaseException] = []
        token = engine.connect("error", lambda name=None, exception=None: errors.append(exception))
        fd, path = tempfile.mkstemp(prefix="streamo-tts-", suffix=".wav")
        os.close(fd)
        words_per_minute = int(rate or defaults.get("rate") or DEFAULT_RATE)
        level = float(defaults.get("volume", 1.0) if volume is None else volume)
        try:
            engine.setProperty("voice", voice or defaults.get("voice"))
            if _is_espeak(engine):
                # pyttsx3 drives espeak-ng asynchronously, and a rate or volume set through setProperty is
                # sometimes lost (measured: 1 call in 4 kept the previous rate). espeak-ng's embedded
                # commands (Ctrl-A, value, S = speed / A = amplitude 0-200) set them inside the text itself.
                spoken = f"\x01{words_per_minute}S\x01{round(level * 100)}A{text.replace(chr(1), ' ')}"
            else:
                engine.setProperty("rate", words_per_minute)
                engine.setProperty("volume", level)
                spoken = text
            # pyttsx3 2.99's espeak driver can return from runAndWait before espeak-ng has written the
            # samples (seen on the first synthesis of a process: a header and no audio). Such a result is
            # synthesised again, up to three times in all, before it counts as a failure.
            for _attempt in range(3):
                engine.save_to_file(spoken, path)
                try:
                    engine.runAndWait()
                except Exception:
                    engine._inLoop = False  # pyttsx3 leaves its loop flag set when the loop raises
                    raise
                if errors:
                    raise errors[0]
                if os.path.getsize(path) > 0:
                    audio, sr = _read_wav(path)
                    if audio.size:
                        return audio, sr
                log.debug("text-to-speech returned no audio; synthesising again")
            raise RuntimeError("no audio was written")
        except VoiceError:
            raise
        except Exception as e:  # noqa: BLE001 - the driver's errors are all "the engine is broken"
            log.warning("text-to-speech failed: %s: %s", type(e).__name__, e)
            raise VoiceError(ENGINE_MISSING) from e
        finally:
            engine.disconnect(token)
            os.unlink(path)

    return job


def _timeout_for(text: str) -> float:
    return 10.0 + 0.05 * len(text)  # espeak-ng runs ~50x real time; this only catches a hung engine


def synthesize(
    text: str, voice: str | None = None, rate: int | None = None, volume: float | None = None
) -> tuple[np.ndarray, int]:
    """Speak ``text`` into memory: (float32 mono samples in [-1, 1], sample rate).

    ``voice`` is an id or name from ``voices()``, ``rate`` words per minute, ``volume`` 0..1; None
    keeps the engine's default. Empty text gives no samples. VoiceError when no engine works.
    """
    text = text.strip()
    if not text:
        return np.zeros(0, dtype=np.float32), TRACK_RATE
    return _ENGINE.call(_synth_job(text, voice, rate, volume), timeout=_timeout_for(text))


def voices() -> list[tuple[str, str]]:
    """The engine's voices as (id, name)."""
    return _ENGINE.call(_voice_list, timeout=10.0)


def _resample(audio: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Linear interpolation: plenty for speech, and no dependency beyond numpy."""
    if src == dst or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    n = max(1, round(audio.size * dst / src))
    return np.interp(np.arange(n) * (src / dst), np.arange(audio.size), audio).astype(np.float32)


def _fade_out(audio: np.ndarray, rate: int) -> np.ndarray:
    n = min(audio.size, int(FADE_S * rate))
    if n:
        audio = audio.copy()
        audio[-n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)
    return audio


def synthesize_track(
    items: Sequence[tuple[float, str]],
    duration_s: float,
    rate: int = TRACK_RATE,
    voice: str | None = None,
    speech_rate: int | None = None,
    volume: float | None = None,
) -> np.ndarray:
    """One float32 mono track, ``duration_s`` long at ``rate`` Hz, with each answer ``(t, text)``
    spoken from its stream time ``t`` (for ``narrate --speak-to FILE.wav``).

    Overlaps: a later answer CUTS the one still speaking (with a 5 ms fade), as the live ``Speaker``
    does by default and as subtitles do, so each answer is heard at the moment it was given and the
    track never drifts behind the video. Answers at or past the end are left out; the last one is
    cut at the end of the stream.
    """
    total = max(0, round(duration_s * rate))
    track = np.zeros(total, dtype=np.float32)
    ordered = sorted((max(0.0, float(t)), text) for t, text in items if text and text.strip())
    starts = [round(t * rate) for t, _ in ordered]
    for i, (_, text) in enumerate(ordered):
        start = starts[i]
        if start >= total:
            break
        limit = min(total, starts[i + 1] if i + 1 < len(ordered) else total)
        if limit <= start:
            continue  # a later answer at the same instant replaces this one entirely
        audio, src = synthesize(text, voice=voice, rate=speech_rate, volume=volume)
        audio = _resample(audio, src, rate)
        if audio.size > limit - start:
            audio = _fade_out(audio[: limit - start], rate)
        track[start : start + audio.size] = audio
    return track


# ---------------------------------------------------------------------------------------------
# Playback


def _split_sentences(text: str) -> list[str]:
    """Sentences, so the first one plays while the next is synthesised."""
    return [s for s in _SENTENCE_END.split(text.strip()) if s.strip()]


class Speaker:
    """Speaks answers through the default (or a chosen) output device, one at a time.

    ``say`` never blocks: it queues the text for the speaker thread, which has the engine thread
    synthesise it sentence by sentence and writes the samples to a sounddevice ``OutputStream`` in
    20 ms chunks. A newer ``say`` (``interrupt=True``, the default), ``stop()`` or a barge-in cut the
    current utterance within a chunk plus the device's buffer. ``speaking`` is True while audio
    plays (the microphone side ignores input then, unless headphones are on). ``on_state`` hears
    "started" and "stopped" from the speaker thread; ``on_error`` hears a VoiceError from it
    (otherwise it is logged). Volume is applied to the samples as they are written, so a change
    is heard at once.
    """

    def __init__(
        self,
        sd: Any = None,
        voice: str | None = None,
        rate: int | None = None,
        volume: float | None = None,
        output_device: int | str | None = None,
        on_state: StateFn | None = None,
        on_error: ErrorFn | None = None,
    ) -> None:
        self._sd = sd
        self._voice = voice
        self._rate = rate
        self._volume = 1.0 if volume is None else self._check_volume(volume)
        self.output_device = output_device
        self.on_state = on_state
        self.on_error = on_error
        self.last_error: VoiceError | None = None
        self._queue: queue.Queue[tuple[int, str] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._gen = 0  # bumped by every interruption; a chunk of an older generation is not written
        self._speaking = False
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="speaker", daemon=True)
        self._thread.start()

    # -- the caller's side ------------------------------------------------------------------

    @property
    def speaking(self) -> bool:
        return self._speaking

    def _sounddevice(self) -> Any:
        if self._sd is None:
            try:
                import sounddevice
            except (ImportError, OSError) as e:  # OSError: the PortAudio library is missing
                raise VoiceError(
                    f"{NO_OUTPUT}sound output is unavailable ({e}); answers still show as subtitles."
                ) from None
            self._sd = sounddevice
        return self._sd

    def check_output(self) -> None:
        """VoiceError("No audio output device: ...") unless an output device is there. Cheap (PortAudio
        keeps the device list it read at start), so ``say`` checks every time."""
        sd = self._sounddevice()
        try:
            if self.output_device is not None:
                sd.query_devices(self.output_device, "output")
                return
            devices = sd.query_devices()
        except Exception as e:  # noqa: BLE001 - ValueError for an unknown device, PortAudioError
            raise VoiceError(
                f"{NO_OUTPUT}'{self.output_device}' is not available ({e}); choose another in Settings > Voice."
            ) from None
        if not any(int(d.get("max_output_channels", 0)) > 0 for d in devices):
            raise VoiceError(
                f"{NO_OUTPUT}this computer has no speakers or headphones; answers still show as subtitles."
            )

    def say(self, text: str, interrupt: bool = True) -> None:
        """Queue ``text``; with ``interrupt`` a current or queued answer is dropped for it. Raises
        VoiceError (at once, never waiting) when there is no output device."""
        text = (text or "").strip()
        if not text or self._closed:
            return
        self.check_output()
        with self._lock:
            if interrupt:
                self._interrupt_locked()
            self._idle.clear()
            self._queue.put((self._gen, text))

    def _interrupt_locked(self) -> None:
        self._gen += 1
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def stop(self) -> None:
        """Silence: the current answer stops within ~20 ms plus the device buffer; queued ones are dropped."""
        with self._lock:
            self._interrupt_locked()
            if not self._speaking and self._queue.empty():
                self._idle.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything queued has been spoken (or dropped); False on timeout."""
        return self._idle.wait(timeout)

    def voices(self) -> list[tuple[str, str]]:
        return voices()

    def set_voice(self, voice: str | None) -> None:
        """An id or name from ``voices()`` (None: the engine's default); VoiceError for an unknown one."""
        if voice is not None and voice not in {v for pair in self.voices() for v in pair}:
            raise VoiceError(f"Unknown voice '{voice}'; choose one in Settings > Voice.")
        self._voice = voice

    def set_rate(self, rate: int | None) -> None:
        """Words per minute (None: 200)."""
        if rate is not None and not 20 <= int(rate) <= 1000:
            raise VoiceError(f"Speech rate {rate} is out of range (20 to 1000 words per minute).")
        self._rate = None if rate is None else int(rate)

    @staticmethod
    def _check_volume(volume: float) -> float:
        if not 0.0 <= float(volume) <= 1.0:
            raise VoiceError(f"Speech volume {volume} is out of range (0 to 1).")
        return float(volume)

    def set_volume(self, volume: float) -> None:
        self._volume = self._check_volume(volume)

    def test_voice(self) -> None:
        """Say a short sentence with the current voice, rate and volume (the settings' Test button)."""
        self.say(TEST_SENTENCE, interrupt=True)

    def close(self, timeout: float = 2.0) -> None:
        """Silence, drop what is queued and end the speaker thread; later ``say`` calls are ignored."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        self._queue.put(None)
        if threading.current_thread() is not self._thread:  # close() from an on_state handler must not self-join
            self._thread.join(timeout)

    # -- the speaker thread -----------------------------------------------------------------

    def _current(self, gen: int) -> bool:
        return gen == self._gen and not self._closed

    def _report(self, error: VoiceError) -> None:
        self.last_error = error
        if self.on_error is not None:
            try:
                self.on_error(error)
            except Exception:  # noqa: BLE001 - a front end's handler must not kill the speaker
                log.exception("speech output error handler failed")
        else:
            log.warning("%s", error)

    def _notify(self, state: str) -> None:
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:  # noqa: BLE001
                log.exception("speech output state handler failed")

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            gen, text = item
            try:
                if self._current(gen):
                    self._speak(gen, text)
            except VoiceError as e:
                self._report(e)
            except Exception as e:  # noqa: BLE001 - keep the thread alive for the next answer
                log.exception("speech output failed")
                self._report(VoiceError(f"Speech output failed: {type(e).__name__}: {e}"))
            finally:
                with self._lock:
                    if self._queue.empty():
                        self._idle.set()

    def _wait_synth(self, gen: int, fut: Future, timeout: float) -> tuple[np.ndarray, int] | None:
        """The samples of ``fut``, or None when this answer was interrupted while waiting."""
        deadline = time.monotonic() + timeout
        while self._current(gen):
            try:
                return fut.result(timeout=CHUNK_S)
            except FutureTimeout:
                if time.monotonic() > deadline:
                    raise VoiceError(f"The text-to-speech engine did not answer within {timeout:.0f} s.") from None
        return None

    def _speak(self, gen: int, text: str) -> None:
        voice, rate = self._voice, self._rate
        # All sentences go to the engine thread at once; each is played as soon as it is ready.
        futures = [_ENGINE.submit(_synth_job(s, voice, rate, None)) for s in _split_sentences(text)]
        stream = None
        try:
            for fut in futures:
                got = self._wait_synth(gen, fut, _timeout_for(text))
                if got is None:
                    return
                audio, src = got
                if stream is None:
                    stream, out_rate = self._open(src)
                    self._speaking = True
                    self._notify("started")
                if not self._play(gen, stream, _resample(audio, src, out_rate), max(1, int(out_rate * CHUNK_S))):
                    return
        finally:
            for fut in futures:
                fut.cancel()  # sentences not yet synthesised when interrupted
            if stream is not None:
                self._close_stream(stream, drain=self._current(gen))
                self._speaking = False
                self._notify("stopped")

    def _open(self, rate: int) -> tuple[Any, int]:
        """An output stream at the speech's rate, else at the device's own rate (resampled)."""
        sd = self._sounddevice()
        block = max(1, int(rate * CHUNK_S))
        try:
            stream = sd.OutputStream(
                samplerate=rate, channels=1, dtype="float32", blocksize=block, device=self.output_device
            )
        except Exception as first:  # noqa: BLE001 - PortAudioError: e.g. a hw: device without 22050 Hz
            try:
                info = sd.query_devices(self.output_device, "output")
                rate = int(info["default_samplerate"])
                stream = sd.OutputStream(
                    samplerate=rate,
                    channels=1,
                    dtype="float32",
                    blocksize=max(1, int(rate * CHUNK_S)),
                    device=self.output_device,
                )
            except Exception:  # noqa: BLE001
                raise VoiceError(f"{NO_OUTPUT}could not open it ({first}); check Settings > Voice.") from None
        stream.start()
        return stream, rate

    def _play(self, gen: int, stream: Any, audio: np.ndarray, block: int) -> bool:
        """Write ``audio`` in chunks of ``block`` samples (20 ms); False when interrupted."""
        for i in range(0, audio.size, block):
            if not self._current(gen):
                return False
            chunk = audio[i : i + block] * np.float32(self._volume)
            stream.write(chunk.reshape(-1, 1))
        return self._current(gen)

    @staticmethod
    def _close_stream(stream: Any, drain: bool) -> None:
        try:
            if drain:
                stream.stop()  # plays out what the device still holds
            else:
                stream.abort()  # drops it: an interruption is heard at once
        finally:
            stream.close()

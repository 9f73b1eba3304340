"""Spoken answers' playback: the :class:`Speaker`, which has :mod:`app.voice.synth` synthesise an answer sentence by
sentence and plays the samples through sounddevice.

Playback is ours, never pyttsx3's: sounddevice in 20 ms chunks, which lets a newer answer, ``stop()`` or the user
talking over it (barge-in) cut the audio at once, and ``hold()`` silence it until it is released or stopped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np

from app.voice import VoiceError, synth
from app.voice.audio import resample

log = logging.getLogger(__name__)

NO_OUTPUT = "No audio output device: "
TEST_SENTENCE = "This is how Streamo Live will speak its answers."
CHUNK_S = 0.02  # playback granularity: the longest an interruption waits for a write to return
#: A hold (possible speech over the answer, ``Speaker.hold``) lasts at most this long if nobody releases it.
HOLD_MAX_S = 2.0

StateFn = Callable[[str], None]  # "started" | "stopped"
ErrorFn = Callable[[VoiceError], None]


class Speaker:
    """Speaks answers through the default (or a chosen) output device, one at a time.

    ``say`` never blocks: it queues the text for the speaker thread, which has the engine thread
    synthesise it sentence by sentence and writes the samples to a sounddevice ``OutputStream`` in
    20 ms chunks. A newer ``say`` (``interrupt=True``, the default), ``stop()`` or a barge-in cut the
    current utterance within a chunk plus the device's buffer. ``hold()`` silences it at once (the device's
    buffer dropped) without ending it: the listening side heard what may be the user starting to talk, and
    either ``stop()`` s the answer once it is sure or ``release()`` s it, and the answer goes on from a little
    before where it was cut. ``speaking`` is True while audio
    plays (the microphone side ignores input then, unless headphones are on or it cancels the echo:
    ``reference`` gets every block written, for ``app.voice.echo``). ``on_state`` hears
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
        reference: Any = None,
    ) -> None:
        self._sd = sd
        self._voice = voice
        self._rate = rate
        self._volume = 1.0 if volume is None else self._check_volume(volume)
        self.output_device = output_device
        self.on_state = on_state
        self.on_error = on_error
        # Echo cancellation's far end (an app.voice.echo.EchoReference): every block as it goes to the device.
        self.reference = reference
        self._out_rate = synth.TRACK_RATE  # the open stream's rate, for the reference
        self.last_error: VoiceError | None = None
        self._queue: queue.Queue[tuple[int, str] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._gen = 0  # bumped by every interruption; a chunk of an older generation is not written
        self._speaking = False
        self._held = threading.Event()  # hold(): write nothing until release(), stop() or a newer answer
        self.holds = 0  # how many times an answer was held (a test's and the benchmark's count)
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
                f"{NO_OUTPUT}'{self.output_device}' is not available ({e}); choose another in Voice > Voice settings."
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

    def hold(self) -> None:
        """The user may be starting to talk over the answer: silence it now (what the device holds is dropped)
        until :meth:`release` (it goes on) or :meth:`stop` (it ends); after ``HOLD_MAX_S`` it goes on by itself.
        Nothing when nothing is playing."""
        if self._speaking:
            self._held.set()

    def release(self) -> None:
        """It was not the user after all (a cough, a knock): the held answer goes on."""
        self._held.clear()

    @property
    def held(self) -> bool:
        return self._held.is_set()

    def _interrupt_locked(self) -> None:
        self._held.clear()
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
        return synth.voices()

    def set_voice(self, voice: str | None) -> None:
        """An id or name from ``voices()`` (None: the engine's default); VoiceError for an unknown one."""
        if voice is not None:
            synth.check_voice(voice, self.voices())  # any case: ids saved from pyttsx3's lower-case list still work
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
        futures = synth.synthesize_sentences(text, voice, rate)
        stream = None
        try:
            for fut in futures:
                got = self._wait_synth(gen, fut, synth.timeout_for(text))
                if got is None:
                    return
                audio, src = got
                if stream is None:
                    stream, out_rate = self._open(src)
                    self._speaking = True
                    self._notify("started")
                if not self._play(gen, stream, resample(audio, src, out_rate), max(1, int(out_rate * CHUNK_S))):
                    return
        finally:
            for fut in futures:
                fut.cancel()  # sentences not yet synthesised when interrupted
            if stream is not None:
                self._close_stream(stream, drain=self._current(gen))
                self._speaking = False
                self._held.clear()
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
                raise VoiceError(f"{NO_OUTPUT}could not open it ({first}); check Voice > Voice settings.") from None
        stream.start()
        self._out_rate = rate
        return stream, rate

    def _play(self, gen: int, stream: Any, audio: np.ndarray, block: int) -> bool:
        """Write ``audio`` in chunks of ``block`` samples (20 ms); False when interrupted."""
        i = 0
        while i < audio.size:
            if not self._current(gen):
                return False
            if self._held.is_set():
                if not self._wait_held(gen, stream):
                    return False
                # What the device held when it was dropped is played again (and a chunk more): the user hears
                # the answer go on from where they heard it stop, not from a word later.
                i = max(0, i - block - int(round(float(getattr(stream, "latency", 0.0) or 0.0) * self._out_rate)))
                continue
            chunk = audio[i : i + block] * np.float32(self._volume)
            stream.write(chunk.reshape(-1, 1))
            reference = self.reference
            if reference is not None:  # accepted by the device, so played from now on: the echo to come
                reference.write(chunk, self._out_rate)
            i += block
        return self._current(gen)

    def _wait_held(self, gen: int, stream: Any) -> bool:
        """Held: drop what the device still holds (heard at once), wait for release, stop or ``HOLD_MAX_S``,
        and start the stream again; False when the answer was interrupted meanwhile."""
        self.holds += 1
        self._abort(stream)
        deadline = time.monotonic() + HOLD_MAX_S
        while self._held.is_set() and self._current(gen) and time.monotonic() < deadline:
            time.sleep(0.005)
        self._held.clear()
        if not self._current(gen):
            return False
        stream.start()
        return True

    def _abort(self, stream: Any) -> None:
        """Drop what the device still holds (heard at once), and from the echo reference too: it is never played."""
        stream.abort()
        if self.reference is not None:
            self.reference.cut()

    def _close_stream(self, stream: Any, drain: bool) -> None:
        try:
            if drain:
                stream.stop()  # plays out what the device still holds
            else:
                self._abort(stream)  # an interruption is heard at once
        finally:
            stream.close()

"""Speech synthesis: text -> float32 mono samples in memory (:func:`synthesize`), the engine's voices, and the
narration track (:func:`synthesize_track`). Playing the samples is :mod:`app.voice.tts`'s.

Synthesis waits for its audio. On Linux (and other systems that are neither Windows nor macOS) each
sentence is one run of the espeak-ng program, ``espeak-ng -w FILE`` with the text on stdin, and the
WAV is read once the program has exited: a finished process has written all of its file. pyttsx3
2.99's espeak driver, used before, returned from ``runAndWait`` ~10 ms after starting asynchronous
synthesis, so the first synthesis of a process failed at random (5 of 25 fresh ``voice say`` runs,
3 of 3 with a long first text). On Windows and macOS pyttsx3 drives the system's own engine (SAPI5,
NSSpeechSynthesizer) into a WAV file, and the file is read only once its header says it is whole
and it has stopped growing (:func:`_wait_for_complete_file`).

pyttsx3's engine is one per process and not thread-safe, so exactly one thread, ``_EngineThread``,
runs every synthesis job, with espeak-ng too: the sentences of an answer come back in order, and
cancelling the jobs not yet started is how an interruption drops them.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np
import soundfile

from app.voice import VoiceError
from app.voice.audio import resample

log = logging.getLogger(__name__)

ESPEAK = "espeak-ng"  # the program, found on PATH (a path works too)
ENGINE_MISSING = (
    "Speech output needs espeak-ng, which is not installed: sudo apt-get install espeak-ng "
    "(or your distribution's espeak-ng package); answers still show as subtitles."
)
PYTTSX3_MISSING = "Speech output needs pyttsx3 (pip install pyttsx3); answers still show as subtitles."
DEFAULT_RATE = 200  # words per minute when none is chosen (pyttsx3's own default)
TRACK_RATE = 22050  # espeak-ng's own rate: the track needs no resampling by default
FADE_S = 0.005  # a cut answer fades out over this long instead of clicking
SETTLE_S = 0.05  # pyttsx3: a whole file must also stop growing for this long before it is read
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _uses_espeak() -> bool:
    """espeak-ng everywhere but Windows and macOS, whose own engines pyttsx3 drives."""
    return sys.platform not in ("win32", "darwin")


# ---------------------------------------------------------------------------------------------
# The one thread that runs synthesis


class _EngineThread:
    """Runs jobs ``fn() -> result`` one after another on one daemon thread, the only thread that
    touches pyttsx3's engine (:meth:`pyttsx3_engine`)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._engine: Any = None  # keeps pyttsx3's weakly cached engine alive between jobs
        self.defaults: dict[str, Any] = {}

    def submit(self, fn: Callable[[], Any]) -> Future:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="tts-engine", daemon=True)
                self._thread.start()
        fut: Future = Future()
        self._jobs.put((fn, fut))
        return fut

    def call(self, fn: Callable[[], Any], timeout: float) -> Any:
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
                fut.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - handed to the waiting caller
                fut.set_exception(e)

    def pyttsx3_engine(self) -> Any:
        """pyttsx3's engine (on this thread only). ``pyttsx3.init()`` is asked on every job: it
        returns the cached engine, and an engine that cannot start is reported on every job."""
        try:
            import pyttsx3
        except ImportError:
            raise VoiceError(PYTTSX3_MISSING) from None
        try:
            engine = pyttsx3.init()
            if not self.defaults:
                # What "no voice / rate / volume chosen" means, so that a call without them is not
                # coloured by the previous caller's choice.
                self.defaults = {"voice": engine.getProperty("voice"), "rate": DEFAULT_RATE, "volume": 1.0}
        except Exception as e:  # noqa: BLE001 - OSError, RuntimeError: the system's engine is broken
            self._engine = None
            log.warning("text-to-speech engine failed to start: %s: %s", type(e).__name__, e)
            raise VoiceError(
                f"The system's text-to-speech engine could not start ({type(e).__name__}: {e}); "
                "answers still show as subtitles."
            ) from e
        self._engine = engine
        # A driver may print for every file (the espeak one prints "Audio saved to ..."): the terminal
        # front end's stdout carries subtitles, so that module's print is silenced (only that module's).
        driver = getattr(getattr(engine, "proxy", None), "_module", None)
        if driver is not None:
            driver.print = lambda *a, **k: None
        return engine


_ENGINE = _EngineThread()


def _read_audio(path: str) -> tuple[np.ndarray, int]:
    """A synthesised file -> float32 mono in [-1, 1], rate."""
    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    return audio.mean(axis=1, dtype=np.float32) if audio.shape[1] > 1 else audio[:, 0].copy(), int(rate)


def check_voice(voice: str | None, available: list[tuple[str, str]]) -> str | None:
    """The id of ``voice`` (an id or a name, any case: pyttsx3 listed espeak-ng's ids in lower case,
    and settings saved then still work), None for the default; VoiceError for an unknown one."""
    if voice is None:
        return None
    key = voice.strip().casefold()
    for vid, name in available:
        if key in (vid.casefold(), name.casefold()):
            return vid
    raise VoiceError(f"Unknown voice '{voice}'; choose one in Voice > Voice settings.")


def timeout_for(text: str) -> float:
    return 10.0 + 0.05 * len(text)  # espeak-ng runs ~50x real time; this only catches a hung engine


# ---------------------------------------------------------------------------------------------
# espeak-ng, synchronously


def _espeak_program() -> str:
    found = shutil.which(ESPEAK)
    if found is None:
        raise VoiceError(ENGINE_MISSING)
    return found


@functools.lru_cache(maxsize=4)
def _espeak_voices(program: str) -> tuple[tuple[str, str], ...]:
    """``espeak-ng --voices``: (file id, name) per voice, e.g. ("gmw/en-US", "English (America)"). The
    listing writes a name's spaces as underscores."""
    done = subprocess.run([program, "--voices"], capture_output=True, timeout=10, check=False)
    if done.returncode != 0:
        raise VoiceError(_espeak_failure(done.returncode, done.stderr, "could not list its voices"))
    voices = []
    for line in done.stdout.decode("utf-8", "replace").splitlines()[1:]:  # after the column titles
        cols = line.split()  # Pty, Language, Age/Gender, VoiceName, File, Other languages...
        if len(cols) >= 5:
            voices.append((cols[4], cols[3].replace("_", " ").strip()))
    return tuple(voices)


def _espeak_failure(code: int, stderr: bytes, what: str) -> str:
    said = stderr.decode("utf-8", "replace").strip() or "it printed nothing"
    return (
        f"espeak-ng {what} (exit status {code}): {said}. Check that `espeak-ng hello` speaks in a terminal; "
        "answers still show as subtitles."
    )


def _espeak_synthesize(text: str, voice: str | None, words_per_minute: int, level: float) -> tuple[np.ndarray, int]:
    program = _espeak_program()
    voice_id = None if voice is None else check_voice(voice, list(_espeak_voices(program)))
    fd, path = tempfile.mkstemp(prefix="streamo-tts-", suffix=".wav")
    os.close(fd)
    # -b 1: the text is UTF-8 whatever the locale; stdin: text that starts with "-" is not an option.
    cmd = [program, "-b", "1", "-s", str(words_per_minute), "-a", str(round(level * 100)), "-w", path]
    if voice_id is not None:
        cmd[1:1] = ["-v", voice_id]
    timeout = timeout_for(text)
    try:
        try:
            done = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise VoiceError(
                f"espeak-ng did not finish within {timeout:.0f} s; answers still show as subtitles."
            ) from None
        if done.returncode != 0:
            raise VoiceError(_espeak_failure(done.returncode, done.stderr, "could not speak the answer"))
        if os.path.getsize(path) == 0:
            raise VoiceError(_espeak_failure(done.returncode, done.stderr, "wrote no audio file"))
        audio, rate = _read_audio(path)
        if not audio.size:
            raise VoiceError(
                f"espeak-ng wrote no audio for '{text[:60]}' (a WAV file without samples); "
                "answers still show as subtitles."
            )
        return audio, rate
    finally:
        os.unlink(path)


# ---------------------------------------------------------------------------------------------
# pyttsx3 (SAPI5, NSSpeechSynthesizer), with a completion check


def _container_complete(path: str, size: int) -> bool:
    """True when the file's RIFF (WAV) or FORM (AIFF: NSSpeechSynthesizer's) header counts exactly
    ``size`` bytes: writers put the final length there once the samples are in. Other containers
    count as complete (the caller also waits for the size to settle)."""
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) < 12:
        return False
    if head[:4] == b"RIFF":
        return int.from_bytes(head[4:8], "little") + 8 == size
    if head[:4] == b"FORM":
        return int.from_bytes(head[4:8], "big") + 8 == size
    return True


def _wait_for_complete_file(path: str, timeout: float) -> None:
    """Wait until the engine has written all of ``path``: a whole container, the same size for
    SETTLE_S. pyttsx3 drivers may return from ``runAndWait`` while synthesis goes on in the system's
    engine (NSSpeechSynthesizer always writes asynchronously)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while True:
        size = os.path.getsize(path)
        now = time.monotonic()
        if size != last:
            last, since = size, now
        elif size > 0 and now - since >= SETTLE_S and _container_complete(path, size):
            return
        if now > deadline:
            what = "wrote no audio" if size == 0 else f"left its audio file unfinished ({size} bytes)"
            raise VoiceError(
                f"The text-to-speech engine {what} within {timeout:.0f} s; answers still show as subtitles."
            )
        time.sleep(0.01)


def _pyttsx3_synthesize(text: str, voice: str | None, words_per_minute: int, level: float) -> tuple[np.ndarray, int]:
    engine = _ENGINE.pyttsx3_engine()
    voice_id = check_voice(voice, _pyttsx3_voices(engine)) or _ENGINE.defaults.get("voice")
    errors: list[BaseException] = []
    token = engine.connect("error", lambda name=None, exception=None: errors.append(exception))
    fd, path = tempfile.mkstemp(prefix="streamo-tts-", suffix=".wav")
    os.close(fd)
    try:
        engine.setProperty("voice", voice_id)
        engine.setProperty("rate", words_per_minute)
        engine.setProperty("volume", level)
        engine.save_to_file(text, path)
        try:
            engine.runAndWait()
        except Exception as e:  # noqa: BLE001 - the driver's own failure, named in the message
            engine._inLoop = False  # pyttsx3 leaves its loop flag set when the loop raises
            raise VoiceError(f"The text-to-speech engine failed: {type(e).__name__}: {e}.") from e
        if errors:
            e = errors[0]
            raise VoiceError(f"The text-to-speech engine failed: {type(e).__name__}: {e}.") from e
        _wait_for_complete_file(path, timeout_for(text))
        audio, rate = _read_audio(path)
        if not audio.size:
            raise VoiceError(f"The text-to-speech engine wrote no audio for '{text[:60]}'.")
        return audio, rate
    finally:
        engine.disconnect(token)
        os.unlink(path)


def _pyttsx3_voices(engine: Any) -> list[tuple[str, str]]:
    return [(str(v.id), str(v.name)) for v in engine.getProperty("voices")]


# ---------------------------------------------------------------------------------------------
# The public side


def _synthesize_now(text: str, voice: str | None, rate: int | None, volume: float | None) -> tuple[np.ndarray, int]:
    """One synthesis, on the engine thread: (float32 mono samples, rate), never empty."""
    words_per_minute = int(rate or DEFAULT_RATE)
    level = 1.0 if volume is None else float(volume)
    if _uses_espeak():
        return _espeak_synthesize(text, voice, words_per_minute, level)
    return _pyttsx3_synthesize(text, voice, words_per_minute, level)


def _synth_job(text: str, voice: str | None, rate: int | None, volume: float | None) -> Callable[[], Any]:
    return lambda: _synthesize_now(text, voice, rate, volume)


def synthesize_sentences(text: str, voice: str | None = None, rate: int | None = None) -> list[Future]:
    """Each sentence of ``text`` queued on the engine thread at once, in order: futures of (samples, rate), so the
    first can play while the next is synthesised. Cancel the ones no longer wanted (an interruption)."""
    return [_ENGINE.submit(_synth_job(sentence, voice, rate, None)) for sentence in _split_sentences(text)]


def synthesize(
    text: str, voice: str | None = None, rate: int | None = None, volume: float | None = None
) -> tuple[np.ndarray, int]:
    """Speak ``text`` into memory: (float32 mono samples in [-1, 1], sample rate), returned only once
    the engine has finished writing them.

    ``voice`` is an id or name from ``voices()``, ``rate`` words per minute, ``volume`` 0..1; None
    keeps the engine's default. Empty text gives no samples. VoiceError naming the cause (espeak-ng
    not installed, the engine's own error, no audio written, an unknown voice) when it fails.
    """
    text = text.strip()
    if not text:
        return np.zeros(0, dtype=np.float32), TRACK_RATE
    chunks = _chunks(text)
    if len(chunks) > 1:  # long text in pieces: 25,000 characters in one run once crashed the engine
        parts = [synthesize(chunk, voice, rate, volume) for chunk in chunks]
        out_rate = parts[0][1]
        return np.concatenate([resample(x, r, out_rate) for x, r in parts]).astype(np.float32), out_rate
    # The engine's own timeout (espeak-ng's run, the file's completion) fires first and says more.
    return _ENGINE.call(_synth_job(text, voice, rate, volume), timeout=timeout_for(text) + 5.0)


MAX_CHUNK_CHARS = 1000  # one synthesis run at most: sentences are gathered up to this, a longer one cut at spaces


def _split_sentences(text: str) -> list[str]:
    """Sentences: the Speaker plays the first while the next is synthesised, and long text is cut at them."""
    return [s for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def _chunks(text: str) -> list[str]:
    """``text`` in pieces of at most :data:`MAX_CHUNK_CHARS`, at sentence ends where it can, else at spaces."""
    if len(text) <= MAX_CHUNK_CHARS:
        return [text]
    pieces: list[str] = []
    for sentence in _split_sentences(text) or [text]:
        while len(sentence) > MAX_CHUNK_CHARS:
            cut = sentence.rfind(" ", 0, MAX_CHUNK_CHARS)
            cut = cut if cut > 0 else MAX_CHUNK_CHARS
            pieces.append(sentence[:cut])
            sentence = sentence[cut:].lstrip()
        if pieces and len(pieces[-1]) + 1 + len(sentence) <= MAX_CHUNK_CHARS:
            pieces[-1] = f"{pieces[-1]} {sentence}"
        elif sentence:
            pieces.append(sentence)
    return pieces


def engine_installed() -> bool:
    """Whether a speech engine is there at all (espeak-ng on PATH; pyttsx3 on Windows and macOS,
    whose engines come with the system). Says nothing about whether it works: ``synthesize`` does."""
    if _uses_espeak():
        return shutil.which(ESPEAK) is not None
    try:
        import pyttsx3  # noqa: F401
    except ImportError:
        return False
    return True


def voices() -> list[tuple[str, str]]:
    """The engine's voices as (id, name)."""
    if _uses_espeak():
        return list(_espeak_voices(_espeak_program()))
    return _ENGINE.call(lambda: _pyttsx3_voices(_ENGINE.pyttsx3_engine()), timeout=10.0)


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
        audio = resample(audio, src, rate)
        if audio.size > limit - start:
            audio = _fade_out(audio[: limit - start], rate)
        track[start : start + audio.size] = audio
    return track

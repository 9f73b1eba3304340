"""Voice hosted for the window (QtCore only): listening, push-to-talk and spoken answers behind
signals, so no widget waits on a microphone, a recognizer or a speech engine.

:class:`VoiceHost` lives on the GUI thread. The recognizer loads on a worker thread the first
time listening starts, and ``VoiceInput.start`` warms it and the VAD up there before the microphone
opens (so the first question is as quick as the next); ``VoiceInput`` and ``Speaker`` run threads
of their own; their callbacks emit this object's signals, which Qt queues to the GUI thread. A
level meter is polled by a timer.

Listening knows nothing of the stream: a heard question is a ``Spoken`` value timed on the monotonic
clock, and the live runtime places it (``LiveController.ask_spoken``: the one stream clock), so voice
can be on before Start, across pauses and from one run to the next.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from app.settings import VoiceOptions
from app.voice import VoiceError
from app.voice.input import HANDS_FREE, OFF, PUSH_TO_TALK, RECOGNISING, VoiceInput
from app.voice.vad import VadSettings

log = logging.getLogger(__name__)

LOADING_ASR = "loading"  # a state beside app.voice.input's: the recognizer is loading


class VoiceHost(QObject):
    level = Signal(float)  # 0..1, the microphone's input level (while listening)
    state = Signal(str)  # off | loading | listening | hearing | recognising
    question = Signal(object)  # app.live.clock.Spoken: text, speech start and end (monotonic)
    error = Signal(str)  # user-facing: what failed and what to do
    speaking = Signal(bool)  # the assistant started / stopped speaking
    partial = Signal(str)  # the words so far while the user talks ("" when the utterance is done)
    notice = Signal(str)  # a question not taken (not heard clearly, recognition behind), and what to do
    download = Signal(object, object, str)  # bytes done, bytes total, file: the recognizer's first download
    microphone = Signal(str)  # "" when the chosen microphone is there, else why not (from check_microphone)
    _opened = Signal()  # listening started (from the voice-start thread): the meter's timer starts here

    def __init__(
        self,
        options: VoiceOptions | None = None,
        sd: Any = None,
        recognizer_factory: Callable[[VoiceOptions], Any] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.options = options or VoiceOptions()
        self._sd = sd  # the sounddevice module (tests inject a fake)
        self._recognizer_factory = recognizer_factory or _default_recognizer
        self._recognizer: Any = None
        self._recognizer_key: tuple[str, str] | None = None
        self.input: VoiceInput | None = None
        self._speaker: Any = None
        self._speaker_failed = False  # say it once, then keep quiet (answers still show as subtitles)
        self.current_state = OFF
        self._last_download_emit = 0.0
        self._press_when_ready = False  # the talk key went down while listening was still off
        # Each start and stop of listening counts, under the lock: a start still loading when listening was turned
        # off (or the window closed) finds it out when the microphone opens, and closes it again.
        self._listen_lock = threading.Lock()
        self._listen_turn = 0
        self._meter = QTimer(self)
        self._meter.setInterval(50)
        self._meter.timeout.connect(self._poll_level)
        self._opened.connect(self._meter.start)  # queued: a QTimer starts on the thread it lives on
        self.state.connect(self._remember_state)

    # -- listening
    @property
    def listening(self) -> bool:
        return self.input is not None and self.input.listening

    def start_listening(self) -> None:
        """Turn voice input on (hands-free or push-to-talk, as set); the recognizer loads first."""
        if self.listening or self.current_state == LOADING_ASR:
            return
        self.state.emit(LOADING_ASR)
        with self._listen_lock:
            self._listen_turn += 1
            turn = self._listen_turn
        threading.Thread(target=self._load_and_listen, args=(turn,), name="voice-start", daemon=True).start()

    def check_microphone(self) -> None:
        """Look for the chosen microphone off the GUI thread (PortAudio's first query can take a while);
        ``microphone`` says what was found."""
        threading.Thread(target=lambda: self.microphone.emit(self.microphone_problem()), daemon=True).start()

    def microphone_problem(self) -> str:
        """Why there is no microphone to listen to ("" when there is one): asked before anything loads, so a
        missing microphone is what the user hears of, not a recognition model it never got to."""
        from app.voice.audio import Microphone, find_input

        try:
            find_input(Microphone(self.options.input_device, self._sd).sd, self.options.input_device)
        except VoiceError as e:
            return str(e)
        except Exception as e:  # noqa: BLE001 - PortAudio failing to list devices is the same for the user
            return f"No microphone could be found ({type(e).__name__}: {e}); typed questions still work."
        return ""

    def _load_and_listen(self, turn: int) -> None:
        problem = self.microphone_problem()
        if problem:
            self.state.emit(OFF)
            self.microphone.emit(problem)
            self.error.emit(problem)
            return
        try:
            recognizer = self._recognizer_for(self.options)
            recognizer.load()
            self._listen(recognizer, turn)
        except VoiceError as e:
            self.state.emit(OFF)
            self.error.emit(str(e))

    def _recognizer_for(self, options: VoiceOptions) -> Any:
        key = (options.asr_model, options.language)
        if self._recognizer is None or self._recognizer_key != key:
            self._recognizer, self._recognizer_key = self._recognizer_factory(options), key
            if getattr(self._recognizer, "progress", False) is None:  # a Recognizer without a progress callback
                self._recognizer.progress = self._download_progress
        return self._recognizer

    def _download_progress(self, done: int, total: int, filename: str) -> None:
        """From the loading thread: at most ten updates a second reach the window (and the last)."""
        now = time.monotonic()
        if done < total and now - self._last_download_emit < 0.1:
            return
        self._last_download_emit = now
        self.download.emit(done, total, filename)

    def _listen(self, recognizer: Any, turn: int) -> None:
        from app.voice.audio import Microphone

        o = self.options
        microphone = Microphone(device=o.input_device or None, sd=self._sd)
        echo = self._echo_canceller()
        voice = VoiceInput(
            recognizer,
            self.question.emit,
            microphone,
            mode=HANDS_FREE if o.hands_free else PUSH_TO_TALK,
            vad=VadSettings(threshold=o.vad_threshold()),
            speaker=self._speaker,
            headphones=o.headphones,
            echo=echo,
            on_state=self.state.emit,
            on_error=self._on_input_error,
            on_partial=self.partial.emit,
            on_notice=self.notice.emit,
        )
        voice.start()  # VoiceError (no microphone) goes to the caller
        with self._listen_lock:
            wanted = turn == self._listen_turn
            if wanted:
                self.input = voice
        if not wanted:  # turned off (or the window closed) while it loaded
            voice.stop()
            return
        if self._press_when_ready and voice.mode == PUSH_TO_TALK:
            voice.press()
        self._opened.emit()

    def _echo_reference(self) -> Any:
        """What the speaker plays, for echo cancellation: None when that is off or headphones are on (no echo)."""
        if not self.options.echo_cancellation or self.options.headphones:
            return None
        if getattr(self, "_reference", None) is None:
            from app.voice.echo import EchoReference

            self._reference = EchoReference()
        return self._reference

    def _echo_canceller(self) -> Any:
        """A canceller for the listening about to start, fed by the speaker; None (the microphone is muted while
        an answer plays) when echo cancellation is off or cannot load, which is said once."""
        reference = self._echo_reference()
        if reference is None:
            return None
        from app.voice.echo import EchoCanceller

        try:
            echo = EchoCanceller(reference)
        except VoiceError as e:
            if not getattr(self, "_echo_failed", False):
                self._echo_failed = True
                self.notice.emit(str(e))
            return None
        if self._speaker is not None:
            self._speaker.reference = reference
        return echo

    def _on_input_error(self, message: str) -> None:
        self.error.emit(message)
        self.state.emit(OFF)

    def stop_listening(self) -> None:
        with self._listen_lock:
            self._listen_turn += 1
            voice, self.input = self.input, None
        self._meter.stop()
        if voice is not None:
            voice.stop()
        self.state.emit(OFF)
        self.level.emit(0.0)

    def press(self) -> None:
        """The talk key went down (push-to-talk). Listening starts first if it was off, and the press
        counts from the moment the microphone is open."""
        if self.input is None:
            self._press_when_ready = True
            self.start_listening()
            return
        self._press_when_ready = False
        if self.input.mode == PUSH_TO_TALK:
            self.input.press()
        elif self._speaker is not None and self._speaker.speaking:
            self._speaker.stop()  # in hands-free the key still interrupts an answer

    def release(self) -> None:
        self._press_when_ready = False
        if self.input is not None and self.input.mode == PUSH_TO_TALK and self.input.ptt.pressed:
            self.input.release()

    def _poll_level(self) -> None:
        if self.input is not None:
            self.level.emit(self.input.level)

    def _remember_state(self, state: str) -> None:
        self.current_state = state

    # -- speaking
    def speak(self, text: str) -> None:
        """Say ``text``, interrupting what is being said. A missing output device is said once."""
        text = text.strip()
        if not text or self._speaker_failed:
            return
        try:
            self._ensure_speaker().say(text)
        except VoiceError as e:
            self._speaker_failed = True
            self.error.emit(str(e))

    def stop_speaking(self) -> None:
        if self._speaker is not None:
            self._speaker.stop()

    def test_voice(self) -> None:
        self._speaker_failed = False
        try:
            self._ensure_speaker().test_voice()
        except VoiceError as e:
            self.error.emit(str(e))

    def _ensure_speaker(self) -> Any:
        if self._speaker is None:
            from app.voice.tts import Speaker

            o = self.options
            self._speaker = Speaker(
                sd=self._sd,
                voice=o.tts_voice or None,
                rate=o.tts_rate or None,
                volume=o.tts_volume,
                on_state=lambda s: self.speaking.emit(s == "started"),
                on_error=lambda e: self.error.emit(str(e)),
                reference=self._echo_reference(),
            )
            if self.input is not None:
                self.input.speaker = self._speaker
        return self._speaker

    # -- settings
    def apply(self, options: VoiceOptions) -> None:
        """New settings: the speaker takes voice, rate and volume at once; listening restarts with the
        new microphone, model, mode or echo cancellation when it was on."""
        old, self.options = self.options, options
        self._speaker_failed = False
        if self._speaker is not None:
            try:
                self._speaker.set_voice(options.tts_voice or None)
                self._speaker.set_rate(options.tts_rate or None)
                self._speaker.set_volume(options.tts_volume)
            except VoiceError as e:
                self.error.emit(str(e))
            self._speaker.reference = self._echo_reference()  # None: nothing to cancel any more
        listening_changed = (old.input_device, old.asr_model, old.language, old.hands_free, old.sensitivity,
                             old.headphones, old.echo_cancellation) != (
                                options.input_device, options.asr_model, options.language, options.hands_free,
                                options.sensitivity, options.headphones, options.echo_cancellation)  # fmt: skip
        if listening_changed and self.listening:
            self.stop_listening()
            self.start_listening()

    def close(self) -> None:
        self.stop_listening()
        if self._speaker is not None:
            self._speaker.close()
            self._speaker = None

    @property
    def recognising(self) -> bool:
        return self.current_state == RECOGNISING


def _default_recognizer(options: VoiceOptions) -> Any:
    from app.voice.asr import Recognizer, default_asr_model

    return Recognizer(options.asr_model or default_asr_model(), language=options.language or None)

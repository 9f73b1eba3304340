"""The voice row of the Live tab: a talk button (hold, or toggle), hands-free, an input level meter,
what voice is doing (listening, hearing you, recognising, speaking), the words heard so far while you
talk, and whether answers are spoken."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QGridLayout, QLabel, QProgressBar, QPushButton, QWidget

TALK_KEY = "F8"
STATE_WORDS = {
    "off": "voice off",
    "loading": "loading speech recognition...",
    "listening": "listening",
    "hearing": "hearing you",
    "recognising": "recognising...",
}


class VoicePanel(QWidget):
    talk_pressed = Signal()
    talk_released = Signal()
    hands_free_toggled = Signal(bool)
    speak_toggled = Signal(bool)
    settings_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.talk = QPushButton("Hold to talk")
        self.talk.setToolTip(
            f"Hold (or press {TALK_KEY}) while you ask a question out loud; it enters the stream when you let go"
        )
        self.hands_free = QCheckBox("hands-free")
        self.hands_free.setToolTip("Listen all the time: a question is taken when you stop speaking")
        self.meter = QProgressBar()
        self.meter.setRange(0, 100)
        self.meter.setTextVisible(False)
        self.meter.setMaximumWidth(90)
        self.meter.setMaximumHeight(12)
        self.meter.setToolTip("Microphone level")
        self.status = QLabel(STATE_WORDS["off"])
        self.status.setMinimumWidth(150)
        self.status.setToolTip("What voice input is doing")
        self.heard = QLabel("")  # the words so far while you talk (partial transcripts)
        self.heard.setMinimumWidth(120)
        self.heard.setStyleSheet("font-style: italic")
        self.heard.setToolTip("What voice input has understood so far")
        self.speak = QCheckBox("speak answers")
        self.speak.setToolTip("Read the answers aloud (Voice > Voice settings: voice, speed, volume)")
        self.settings = QPushButton("Voice...")
        self.settings.setToolTip("Microphone, recognition model and language, voice of the answers")
        # Two rows, so the Task box (and the window) can be narrow: talking above, what was heard and
        # what is spoken below.
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        for col, w in enumerate((self.talk, self.hands_free, self.meter, self.status)):
            grid.addWidget(w, 0, col)
        grid.addWidget(self.heard, 1, 0, 1, 2)
        grid.addWidget(self.speak, 1, 2)
        grid.addWidget(self.settings, 1, 3, Qt.AlignmentFlag.AlignRight)
        grid.setColumnStretch(3, 1)
        self._toggle = False
        self.microphone_problem = ""  # why there is no microphone ("" when there is one)
        self.talk.pressed.connect(self._on_pressed)
        self.talk.released.connect(self._on_released)
        self.hands_free.toggled.connect(self.hands_free_toggled)
        self.speak.toggled.connect(self.speak_toggled)
        self.settings.clicked.connect(self.settings_requested)

    def set_toggle(self, toggle: bool) -> None:
        """Push-to-talk as a toggle (click to start, click to stop) rather than hold."""
        self._toggle = toggle
        self.talk.setCheckable(toggle)
        self.talk.setText("Talk" if toggle else "Hold to talk")

    def _on_pressed(self) -> None:
        if not self._toggle:
            self.talk_pressed.emit()

    def _on_released(self) -> None:
        if self._toggle:
            (self.talk_pressed if self.talk.isChecked() else self.talk_released).emit()
        else:
            self.talk_released.emit()

    def on_level(self, level: float) -> None:
        self.meter.setValue(int(round(100 * max(0.0, min(1.0, level)))))

    def set_microphone(self, problem: str) -> None:
        """No microphone (``problem`` says why): the talk button and hands-free are off, and say why."""
        self.microphone_problem = problem
        for w, tip in (
            (
                self.talk,
                f"Hold (or press {TALK_KEY}) while you ask a question out loud; it enters the stream when you let go",
            ),
            (self.hands_free, "Listen all the time: a question is taken when you stop speaking"),
        ):
            w.setToolTip(problem or tip)
        self.hands_free.setEnabled(not problem)
        if problem:
            self.set_hands_free(False)
            self.talk.setEnabled(False)
            self.status.setText("no microphone")
            self.status.setToolTip(problem)
        else:
            self.talk.setEnabled(not self.hands_free.isChecked())
            if self.status.text() == "no microphone":
                self.status.setText(STATE_WORDS["off"])

    def on_state(self, state: str) -> None:
        if self.microphone_problem and state == "off":
            return  # "no microphone" stays, with its reason
        self.status.setText(STATE_WORDS.get(state, state))
        self.status.setToolTip("What voice input is doing")
        self.talk.setEnabled(not self.microphone_problem and (not self.hands_free.isChecked() or state == "off"))
        if state == "off":
            self.meter.setValue(0)
        if state in ("off", "listening"):
            self.heard.clear()  # the utterance is done (entered, or not taken)

    def on_partial(self, text: str) -> None:
        """The words so far while the user talks ("" clears them). Long ones show their end, where the
        user is."""
        text = text.strip()
        self.heard.setText(f"\u201c{'...' + text[-57:] if len(text) > 60 else text}\u201d" if text else "")

    def on_download(self, done: int, total: int, filename: str) -> None:
        """The recognition model downloading on first use: the meter shows how far it is."""
        fraction = done / total if total else 0.0
        self.meter.setValue(int(round(100 * min(1.0, fraction))))
        self.status.setText(f"downloading speech model {fraction:.0%}")
        self.status.setToolTip(f"{filename}: {done / 1e6:.0f} of {total / 1e6:.0f} MB (once; later starts are offline)")

    def on_speaking(self, speaking: bool) -> None:
        if speaking:
            self.status.setText("speaking the answer")
        elif self.status.text() == "speaking the answer":
            self.status.setText(STATE_WORDS["listening"])

    def set_hands_free(self, on: bool) -> None:
        self.hands_free.blockSignals(True)
        self.hands_free.setChecked(on)
        self.hands_free.blockSignals(False)
        self.talk.setEnabled(not on and not self.microphone_problem)

    def set_speak(self, on: bool) -> None:
        self.speak.blockSignals(True)
        self.speak.setChecked(on)
        self.speak.blockSignals(False)


def is_talk_key(event: object) -> bool:
    """Whether a key event is the talk key (without auto-repeat: holding it is one press)."""
    from PySide6.QtGui import QKeySequence

    if getattr(event, "isAutoRepeat", lambda: False)():
        return False
    return event.key() == QKeySequence(TALK_KEY)[0].key()  # type: ignore[attr-defined]

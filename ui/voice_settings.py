"""Voice settings: the microphone, the recognition model and language, how readily speech is heard,
push-to-talk as hold or toggle, echo cancellation or headphones, and the voice, speed and volume of spoken answers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QWidget,
)

from app.settings import VoiceOptions

ASR_CHOICES = (
    ("", "Automatic (Whisper small on a GPU with room, else base)"),
    ("openai/whisper-base", "Whisper base (~290 MB)"),
    ("openai/whisper-small", "Whisper small (~970 MB)"),
    ("demo", "Demo (offline toy: its words mean nothing)"),
)
LANGUAGES = (("", "Detect"), ("en", "English"), ("de", "German"), ("fr", "French"), ("es", "Spanish"),
             ("it", "Italian"), ("ja", "Japanese"), ("zh", "Chinese"), ("ru", "Russian"))  # fmt: skip


def _input_devices(sd: Any) -> tuple[list[str], str]:
    """Microphone names and a note when there are none (or PortAudio is missing)."""
    try:
        from app.voice.audio import list_input_devices

        if sd is None:
            import sounddevice as sd
        names = [d.name for d in list_input_devices(sd)]
    except (ImportError, OSError) as e:
        return [], f"Audio input is unavailable ({e})."
    return names, "" if names else "No microphone found: connect one, then open this dialog again."


class VoiceSettingsDialog(QDialog):
    test_requested = Signal(object)  # VoiceOptions: say a test sentence with these

    def __init__(self, options: VoiceOptions, sd: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Voice settings")
        self._base = options
        names, note = _input_devices(sd)
        self.device = QComboBox()
        self.device.addItem("Default microphone", "")
        for name in names:
            self.device.addItem(name, name)
        if options.input_device and self.device.findData(options.input_device) < 0:
            self.device.addItem(f"{options.input_device} (not connected)", options.input_device)
        self.device.setCurrentIndex(max(0, self.device.findData(options.input_device)))
        self.device_note = QLabel(note)
        self.device_note.setWordWrap(True)
        self.asr = QComboBox()
        self.asr.setEditable(True)
        self.asr.setToolTip("A Whisper model id, a local folder, or demo; it downloads once with progress")
        for value, label in ASR_CHOICES:
            self.asr.addItem(label, value)
        i = self.asr.findData(options.asr_model)
        if i >= 0:
            self.asr.setCurrentIndex(i)
        else:
            self.asr.setEditText(options.asr_model)
        self.language = QComboBox()
        for value, label in LANGUAGES:
            self.language.addItem(label, value)
        self.language.setCurrentIndex(max(0, self.language.findData(options.language)))
        self.sensitivity = QSlider(Qt.Orientation.Horizontal)
        self.sensitivity.setRange(0, 100)
        self.sensitivity.setValue(options.sensitivity)
        self.sensitivity.setToolTip("Right: quieter speech counts; left: only clear speech (fewer false starts)")
        self.toggle = QCheckBox("the talk key toggles (press to start, press to stop)")
        self.toggle.setChecked(options.ptt_toggle)
        self.echo = QCheckBox("Cancel the echo of spoken answers (talk over them without headphones)")
        self.echo.setChecked(options.echo_cancellation)
        self.headphones = QCheckBox("Or: I use headphones (the microphone cannot hear the answers; no echo to cancel)")
        self.headphones.setChecked(options.headphones)
        self.voice = QComboBox()
        self.voice.addItem("Default voice", "")
        try:
            from app.voice.synth import voices

            for vid, name in voices():
                self.voice.addItem(name, vid)
        except Exception as e:  # noqa: BLE001 - no speech engine: the dialog still opens
            self.voice.addItem(f"No speech engine ({e})", "")
            self.voice.setEnabled(False)
        self.voice.setCurrentIndex(max(0, self.voice.findData(options.tts_voice)))
        self.rate = QSpinBox(minimum=0, maximum=400, singleStep=10, suffix=" words/min", value=options.tts_rate)
        self.rate.setSpecialValueText("default speed")
        self.volume = QSlider(Qt.Orientation.Horizontal)
        self.volume.setRange(0, 100)
        self.volume.setValue(round(options.tts_volume * 100))
        self.answers = QCheckBox("answers to questions")
        self.answers.setChecked(options.speak_answers)
        self.narration = QCheckBox("narration of the task")
        self.narration.setChecked(options.speak_narration)
        test = QPushButton("Test voice")
        test.clicked.connect(lambda: self.test_requested.emit(self.options()))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Microphone", self.device)
        if note:
            form.addRow("", self.device_note)
        form.addRow("Recognition", self.asr)
        form.addRow("Language", self.language)
        form.addRow("Sensitivity", self.sensitivity)
        form.addRow("Push to talk", self.toggle)
        form.addRow("Talking over", self.echo)
        form.addRow("", self.headphones)
        form.addRow("Voice", self.voice)
        form.addRow("Speed", self.rate)
        form.addRow("Volume", self.volume)
        form.addRow("Speak", self.answers)
        form.addRow("", self.narration)
        form.addRow("", test)
        form.addRow(buttons)

    def options(self) -> VoiceOptions:
        asr = self.asr.currentData() if self.asr.currentText() == self.asr.itemText(self.asr.currentIndex()) else None
        return replace(
            self._base,
            input_device=self.device.currentData() or "",
            asr_model=asr if asr is not None else self.asr.currentText().strip(),
            language=self.language.currentData() or "",
            sensitivity=self.sensitivity.value(),
            ptt_toggle=self.toggle.isChecked(),
            headphones=self.headphones.isChecked(),
            echo_cancellation=self.echo.isChecked(),
            tts_voice=self.voice.currentData() or "",
            tts_rate=self.rate.value(),
            tts_volume=self.volume.value() / 100,
            speak_answers=self.answers.isChecked(),
            speak_narration=self.narration.isChecked(),
        )

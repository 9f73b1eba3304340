"""The window's voice wiring: the Live tab's voice row, the Voice menu, the talk key, spoken answers.

Spoken questions come from :class:`app.voice.qt.VoiceHost` timed on the monotonic clock and enter the
stream through the live controller, whose one stream clock places them (origin "voice", at the
second the speaker stopped; the paused second during a pause; the next run's first turn outside a run). Answers are
spoken when they answer a question you asked (and the task's narration too, if chosen); a newer
answer, Stop, the talk key or talking over it (with headphones) interrupts the one being spoken.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QMenu

from app.live.clock import Spoken
from app.settings import Settings, VoiceOptions
from app.voice.qt import VoiceHost
from ui.menus import menu_action
from ui.voice_panel import TALK_KEY, VoicePanel


class VoiceControl(QObject):
    def __init__(
        self,
        window: Any,
        panel: VoicePanel,
        settings: Settings,
        sd: Any = None,
        recognizer_factory: Any = None,
    ) -> None:
        super().__init__(window)
        self.window, self.panel, self.settings = window, panel, settings
        self.options = settings.load(VoiceOptions)
        self.sd = sd
        self.host = VoiceHost(self.options, sd, recognizer_factory, self)
        self._asking_origin = ""  # origin of the question the model is answering (typed | voice | preset)

        panel.set_hands_free(self.options.hands_free)
        panel.set_speak(self.options.speak_answers)
        panel.set_toggle(self.options.ptt_toggle)
        panel.talk_pressed.connect(self.host.press)
        panel.talk_released.connect(self.host.release)
        panel.hands_free_toggled.connect(self.set_hands_free)
        panel.speak_toggled.connect(lambda on: self.update(replace(self.options, speak_answers=on)))
        panel.settings_requested.connect(self.open_settings)
        self.host.level.connect(panel.on_level)
        self.host.state.connect(panel.on_state)
        self.host.speaking.connect(panel.on_speaking)
        self.host.download.connect(panel.on_download)
        self.host.question.connect(self.on_heard)
        self.host.error.connect(lambda text: window.show_message("warning", text, "voice"))
        self.host.partial.connect(panel.on_partial)
        self.host.notice.connect(lambda text: window.show_message("info", text, "voice"))
        self.host.microphone.connect(self.on_microphone)
        c = window.controller
        c.step_finished.connect(self.on_step)
        if self.options.hands_free:
            self.host.start_listening()  # checks the microphone first
        else:
            self.host.check_microphone()

    # -- the Voice menu
    def build_menu(self, menu: QMenu) -> None:
        self.hands_free_action = self._action(menu, "Listen &hands-free", self.set_hands_free, checkable=True)
        self.hands_free_action.setChecked(self.options.hands_free)
        talk = self._action(menu, f"&Push to talk (hold {TALK_KEY})", self._talk_once)
        talk.setToolTip("Hold the key (or the Talk button) while you speak")
        self.speak_action = self._action(
            menu, "&Speak answers", lambda on: self.update(replace(self.options, speak_answers=on)), checkable=True
        )
        self.speak_action.setChecked(self.options.speak_answers)
        self._action(menu, "Stop &speaking", self.host.stop_speaking, QKeySequence("Ctrl+."))
        menu.addSeparator()
        self._action(menu, "Voice &settings...", self.open_settings)
        self._action(menu, "&Test voice", self.host.test_voice)

    def _action(self, menu, text, slot, shortcut=None, checkable=False) -> QAction:  # noqa: ANN001
        return menu_action(self.window, menu, text, slot, shortcut, checkable)

    def _talk_once(self) -> None:
        self.window.show_message("info", f"Hold {TALK_KEY} (or the Talk button) while you speak.", "voice")

    # -- what the user does
    def set_hands_free(self, on: bool) -> None:
        self.update(replace(self.options, hands_free=on))
        self.panel.set_hands_free(on)
        if hasattr(self, "hands_free_action"):
            self.hands_free_action.setChecked(on)
        if on:
            self.host.start_listening()
        else:  # listening, or still loading its model: either way it must not listen on
            self.host.stop_listening()

    def on_microphone(self, problem: str) -> None:
        """What the microphone check found: the voice row says it (its controls off, their tooltips saying
        why), and hands-free is off without one (not ticked beside "voice off"). The notice itself comes when
        the user reaches for voice, not at every start of a computer that has no microphone."""
        self.panel.set_microphone(problem)
        if problem and hasattr(self, "hands_free_action"):
            self.hands_free_action.setChecked(False)
        if not problem:
            self.window.banner.clear_topic("voice")

    def key_pressed(self) -> None:
        """The talk key went down (held, or toggled on/off per the setting)."""
        if self.panel.microphone_problem:  # one notice (folded when repeated), no attempt to listen
            self.window.show_message("warning", self.panel.microphone_problem, "voice")
            return
        if self.options.ptt_toggle and self.host.input is not None and self.host.input.ptt.pressed:
            self.host.release()
        else:
            self.host.press()

    def key_released(self) -> None:
        if not self.options.ptt_toggle:
            self.host.release()

    def open_settings(self) -> None:
        from ui.voice_settings import VoiceSettingsDialog

        dialog = VoiceSettingsDialog(self.options, self.sd, self.window)
        dialog.test_requested.connect(self._test_with)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.update(dialog.options())
            self.host.check_microphone()  # another device, or one plugged in since
            self.panel.set_toggle(self.options.ptt_toggle)
            self.panel.set_speak(self.options.speak_answers)

    def _test_with(self, options: VoiceOptions) -> None:
        self.host.apply(options)
        self.host.test_voice()

    def update(self, options: VoiceOptions) -> None:
        self.options = options
        self.settings.save(options)
        self.host.apply(options)
        if hasattr(self, "speak_action"):
            self.speak_action.setChecked(options.speak_answers)

    # -- questions and answers
    def on_heard(self, spoken: Spoken) -> None:
        question = self.window.controller.ask_spoken(spoken)
        self.window.show_message("info", f"You asked (spoken): {question.text}", "voice")

    def on_step(self, report: Any) -> None:
        record = report.record
        if record.question is not None:
            self._asking_origin = record.question.origin
        text = record.text.strip()
        if not text:
            return
        asked = self._asking_origin in ("typed", "voice")
        if (asked and self.options.speak_answers) or (not asked and self.options.speak_narration):
            self.host.speak(text)

    def stop_speaking(self) -> None:
        self.host.stop_speaking()

    def close(self) -> None:
        self.host.close()

"""Voice on a computer with no microphone: the voice row says so (its controls off, their tooltips saying
why), hands-free is not left ticked, and the talk key gives one notice naming the microphone, not a
recognition model it never got to (and no pile of identical warnings while the key is held)."""

from __future__ import annotations

from fakes import FakeSoundDevice
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QKeyEvent


def never_loaded(options):
    raise AssertionError("the recognizer must not load without a microphone")


def test_no_microphone_is_shown_in_the_voice_row_and_the_talk_key_says_so_once(make_harness, settings):
    from app.settings import VoiceOptions

    settings.save(VoiceOptions(hands_free=True))  # ticked last time, when a microphone was there
    h = make_harness(voice={"sd": FakeSoundDevice(devices=[], default=-1), "recognizer_factory": never_loaded})
    panel = h.window.live_tab.voice
    h.qtbot.waitUntil(lambda: panel.microphone_problem != "", timeout=5000)
    assert panel.status.text() == "no microphone" and "No microphone found" in panel.status.toolTip()
    assert not panel.talk.isEnabled() and not panel.hands_free.isEnabled() and not panel.hands_free.isChecked()
    assert "No microphone found" in panel.talk.toolTip()
    assert not h.window.voice.hands_free_action.isChecked()
    for _ in range(5):  # F8 held down: presses (auto-repeat where the platform cannot tell)
        h.window.keyPressEvent(QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_F8, Qt.KeyboardModifier.NoModifier))
    assert "No microphone found" in h.window.banner.text() and "(6x)" in h.window.banner.text()  # + the start
    assert len(h.window.banner.notice_texts()) == 1  # one notice, folded
    assert not any("recognition" in t.lower() for t in h.window.banner.notice_texts())

"""Voice in the window: hands-free and push-to-talk questions reach the engine and the transcript
(marked as spoken, recorded with origin "voice"), the level meter and the indicator move, a missing
speaker is said once while answers go on as subtitles, an unplugged microphone is reported and the
run goes on, and the voice settings are kept. Spoken questions are placed by the controller's one
stream clock: voice armed before Start times a question from the run's start, pausing stops the
clock, and a question asked outside a run enters the next run's first turn."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fakes import FakeSoundDevice
from PySide6.QtCore import Qt

from app.settings import SourceOptions, VoiceOptions


@pytest.fixture(scope="module")
def spoken_clip():
    """1.5 s of quiet, a spoken question (espeak-ng), 2 s of quiet, at 16 kHz."""
    from app.voice import VoiceError
    from app.voice.audio import resample
    from app.voice.synth import synthesize

    try:
        speech, rate = synthesize("What is the red ball doing?")
    except VoiceError as e:
        pytest.skip(str(e))
    speech = resample(speech, rate, 16000)
    noise = np.random.default_rng(0).standard_normal(int(3.5 * 16000) + len(speech)).astype(np.float32) * 0.003
    audio = np.concatenate([np.zeros(24000, np.float32), speech, np.zeros(32000, np.float32)]) + noise
    return audio, 1.5, 1.5 + len(speech) / 16000


@pytest.fixture(scope="module")
def demo_asr():
    from app.voice.asr import Recognizer

    r = Recognizer("demo", device="cpu")
    r.load()
    return lambda options: r


def voice_harness(make_harness, sd, recognizer, **kwargs):
    return make_harness(voice={"sd": sd, "recognizer_factory": recognizer}, **kwargs)


@pytest.mark.slow
def test_a_hands_free_question_enters_the_stream_and_the_transcript(
    make_harness, shared_loader, tiny_options, sample_clip, spoken_clip, demo_asr
):
    audio, speech_start, speech_end = spoken_clip
    sd = FakeSoundDevice(audio, rate=16000, speed=1.0)  # a microphone in real time
    h = voice_harness(make_harness, sd, demo_asr, loader=shared_loader)
    h.load(tiny_options)
    levels, states = [], []
    host = h.window.voice.host
    host.level.connect(levels.append)
    host.state.connect(states.append)
    with h.qtbot.waitSignal(h.controller.step_finished, timeout=20_000):
        h.start(SourceOptions(spec=str(sample_clip), realtime=True))
    with h.qtbot.waitSignal(h.controller.question_asked, timeout=30_000) as heard:
        h.window.live_tab.voice.hands_free.setChecked(True)
    question = heard.args[0]  # placed in the stream by the controller's clock
    assert question.origin == "voice" and question.span[1] - question.span[0] > 0.5
    h.wait_idle(timeout=30_000)
    assert "recognising" in states and max(levels) > 0.05
    spoken = [e for e in h.window.live_tab.transcript.model.entries if e.origin == "voice"]
    assert len(spoken) == 1
    m = h.window.live_tab.transcript.model
    row = m.entries.index(spoken[0])
    assert m.data(m.index(row, 2)) == "Voice"  # marked as spoken
    records = [r for r in h.session_records() if r.get("question") and r["question"]["origin"] == "voice"]
    assert len(records) == 1 and records[0]["question"]["span"] == list(question.span)
    assert h.window.settings.load(VoiceOptions).hands_free  # kept for next time
    h.window.live_tab.voice.hands_free.setChecked(False)
    assert h.window.live_tab.voice.status.text() == "voice off"


def test_push_to_talk_with_the_talk_key(
    make_harness, shared_loader, tiny_options, spoken_clip, demo_asr, sample_source
):
    import time

    audio, speech_start, speech_end = spoken_clip
    sd = FakeSoundDevice(audio, rate=16000, speed=1.0)
    h = voice_harness(make_harness, sd, demo_asr, loader=shared_loader)
    h.load(tiny_options)
    host = h.window.voice.host
    h.qtbot.keyPress(h.window, Qt.Key.Key_F8)  # listening starts, and the press counts from then
    h.qtbot.waitUntil(lambda: host.input is not None and host.input.ptt.pressed, timeout=30_000)
    deadline = time.monotonic() + 20
    while host.input.ptt.now < speech_end + 0.3 and time.monotonic() < deadline:
        h.qtbot.wait(50)
    with h.qtbot.waitSignal(h.controller.question_asked, timeout=30_000) as heard:
        h.qtbot.keyRelease(h.window, Qt.Key.Key_F8)
    q = heard.args[0]
    assert q.origin == "voice" and q.t is None  # asked before Start: no stream second yet
    assert "You asked (spoken)" in h.window.banner.text()
    host.stop_listening()
    h.run(sample_source)  # ... it enters the next run's first turn
    questions = [(r["t"], r["question"]["origin"]) for r in h.session_records() if r.get("question")]
    # Turn 0 carries the task's instruction (one question a turn): the spoken one takes the next.
    assert questions[:2] == [(0.0, "preset"), (1.0, "voice")], questions


@pytest.mark.slow
def test_voice_armed_before_start_times_questions_from_the_runs_start(
    make_harness, shared_loader, tiny_options, sample_clip, demo_asr
):
    """Hands-free on while no run goes (as the window opens with it ticked); Start comes ~1.5 s later and
    the question ends ~4.5 s into the microphone: it enters at the run's second, not the microphone's."""
    from app.voice.audio import resample
    from app.voice.synth import synthesize

    speech, rate = synthesize("What is the red ball doing?")
    speech = resample(speech, rate, 16000)
    lead = 4.0
    audio = np.concatenate([np.zeros(int(lead * 16000), np.float32), speech, np.zeros(32000, np.float32)])
    audio += np.random.default_rng(1).standard_normal(len(audio)).astype(np.float32) * 0.003
    speech_end = lead + len(speech) / 16000
    h = voice_harness(make_harness, FakeSoundDevice(audio, rate=16000, speed=1.0), demo_asr, loader=shared_loader)
    h.load(tiny_options)
    host = h.window.voice.host
    with h.qtbot.waitSignal(host.state, check_params_cb=lambda s: s == "listening", timeout=30_000):
        h.window.live_tab.voice.hands_free.setChecked(True)
    assert h.controller.stream_time() is None  # armed, no run
    h.qtbot.wait(1500)
    opened: list[float] = []
    h.controller.source_opened.connect(lambda info: opened.append(time.monotonic()))
    with h.qtbot.waitSignal(h.controller.question_asked, timeout=30_000) as asked:
        h.start(SourceOptions(spec=str(sample_clip), realtime=True))
    q = asked.args[0]
    heard_end = host.input.times.at(0.0) + speech_end  # when the microphone heard the speech end
    assert q.t == pytest.approx(heard_end - opened[0], abs=0.5), (q, heard_end - opened[0])
    assert q.t < speech_end - 1.0  # not the microphone's own time since it opened (a clock frozen at 0)
    # Pausing stops the one clock; resuming runs it on.
    h.controller.pause(True)
    paused = h.controller.stream_time()
    h.qtbot.wait(400)
    assert h.controller.stream_time() == pytest.approx(paused)
    h.controller.pause(False)
    h.wait_idle(timeout=30_000)
    records = [r for r in h.session_records() if r.get("question") and r["question"]["origin"] == "voice"]
    assert len(records) == 1 and records[0]["question"]["t"] == q.t
    # The turn covering it, or (recognition takes a moment, and a busy CPU skips live frames) a next one.
    assert int(q.t) <= records[0]["t"] <= int(q.t) + 3
    h.window.live_tab.voice.hands_free.setChecked(False)


def test_no_speaker_is_said_once_and_answers_go_on(make_harness, shared_loader, tiny_options, sample_source, demo_asr):
    h = voice_harness(make_harness, FakeSoundDevice(devices=[], default=-1), demo_asr, loader=shared_loader)
    h.load(tiny_options)
    h.window.live_tab.controls.question.setText("What moves?")
    h.window.live_tab.controls.question.returnPressed.emit()
    h.run(sample_source)
    answers = [r for r in h.reports if r.record.text.strip()]
    assert answers  # the talkative tiny model answered, as subtitles
    warnings = [m.text for m in h.window.banner.history if m.topic == "voice"]
    assert len(warnings) == 1 and "No audio output device" in warnings[0]


@pytest.mark.slow
def test_an_unplugged_microphone_is_reported_and_the_run_goes_on(
    make_harness, shared_loader, tiny_options, sample_clip, spoken_clip, demo_asr
):
    audio, _, _ = spoken_clip
    sd = FakeSoundDevice(audio, rate=16000, speed=1.0, unplug_after=25)
    h = voice_harness(make_harness, sd, demo_asr, loader=shared_loader)
    h.load(tiny_options)
    host = h.window.voice.host
    with h.qtbot.waitSignal(h.controller.step_finished, timeout=20_000):
        h.start(SourceOptions(spec=str(sample_clip), realtime=True))
    with h.qtbot.waitSignal(host.error, timeout=30_000) as failed:
        h.window.live_tab.voice.hands_free.setChecked(True)
    assert "Fake USB Mic" in failed.args[0] and "typed questions still work" in failed.args[0]
    steps = len(h.reports)
    h.wait_idle(timeout=30_000)
    assert len(h.reports) > steps  # the run went on
    assert h.window.live_tab.voice.status.text() == "voice off"


def test_voice_settings_are_kept(make_harness, demo_asr, qtbot):
    from ui.voice_settings import VoiceSettingsDialog

    sd = FakeSoundDevice(name="Desk Mic")
    dialog = VoiceSettingsDialog(VoiceOptions(), sd)
    qtbot.addWidget(dialog)
    assert [dialog.device.itemText(i) for i in range(dialog.device.count())] == ["Default microphone", "Desk Mic"]
    dialog.device.setCurrentIndex(1)
    dialog.asr.setCurrentIndex(dialog.asr.findData("demo"))
    dialog.language.setCurrentIndex(dialog.language.findData("en"))
    dialog.sensitivity.setValue(80)
    dialog.headphones.setChecked(True)
    dialog.narration.setChecked(True)
    o = dialog.options()
    assert (o.input_device, o.asr_model, o.language, o.headphones, o.speak_narration) == (
        "Desk Mic", "demo", "en", True, True,
    )  # fmt: skip
    assert o.vad_threshold() == pytest.approx(0.32)
    none = VoiceSettingsDialog(VoiceOptions(), FakeSoundDevice(devices=[], default=-1))
    qtbot.addWidget(none)
    assert "No microphone found" in none.device_note.text()
    h = voice_harness(make_harness, sd, demo_asr)
    h.window.voice.update(o)
    assert h.window.settings.load(VoiceOptions) == o


def test_the_recognition_model_downloads_with_progress_in_the_voice_row(make_harness, spoken_clip, monkeypatch):
    """A Whisper id not yet cached downloads through the model manager's downloader on first listen;
    the voice row shows how far it is, then listening starts."""
    import model.hub
    from model.tiny_whisper import ensure_demo_whisper

    folder = ensure_demo_whisper()
    asked = []

    def fake_download(repo_id, progress=None, **kwargs):  # the hub's signature: bytes done, total, file
        asked.append(repo_id)
        for done in (0, 50_000_000, 100_000_000, 145_000_000):
            progress(done, 145_000_000, "model.safetensors")
            time.sleep(0.15)
        return folder

    monkeypatch.setattr(model.hub, "download_model", fake_download)
    audio, _, _ = spoken_clip
    h = voice_harness(make_harness, FakeSoundDevice(audio, rate=16000, speed=1.0), None)
    panel = h.window.live_tab.voice
    h.window.voice.update(VoiceOptions(asr_model="openai/whisper-base", hands_free=False))
    seen = []
    h.window.voice.host.download.connect(lambda *a: seen.append(panel.status.text()))
    with h.qtbot.waitSignal(h.window.voice.host.state, check_params_cb=lambda s: s == "listening", timeout=30_000):
        panel.hands_free.setChecked(True)
    assert asked == ["openai/whisper-base"]
    assert seen[0] == "downloading speech model 0%" and seen[-1] == "downloading speech model 100%"
    assert len(seen) >= 3
    assert panel.status.text() == "listening"
    panel.hands_free.setChecked(False)


def test_the_voice_row_shows_the_words_so_far_and_a_question_not_caught(make_harness, spoken_clip, demo_asr):
    """While you talk the voice row shows what was understood so far (partial transcripts), cleared once the
    question is entered; a transcript that is only Whisper's phrase for noise is not a question: the banner
    says "I didn't catch that"."""
    from app.voice.asr import Transcript

    audio, _, _ = spoken_clip
    h = voice_harness(make_harness, FakeSoundDevice(audio, rate=16000, speed=1.0), demo_asr)
    panel, host = h.window.live_tab.voice, h.window.voice.host
    shown = []
    host.partial.connect(lambda text: shown.append(panel.heard.text()) if text else None)
    with h.qtbot.waitSignal(host.question, timeout=30_000):
        panel.hands_free.setChecked(True)
    h.qtbot.waitUntil(lambda: panel.status.text() == "listening", timeout=10_000)
    assert shown and all(s.startswith("\u201c") and len(s) > 2 for s in shown)  # the words, quoted
    assert panel.heard.text() == ""  # entered: the words so far are gone
    panel.hands_free.setChecked(False)

    class Noise:
        """The demo model, hearing only Whisper's sign-off."""

        def load(self) -> None:
            pass

        warm_up = load

        def recognise(self, samples) -> Transcript:
            return Transcript("Thanks for watching!")

    h2 = voice_harness(make_harness, FakeSoundDevice(audio, rate=16000), lambda options: Noise())
    with h2.qtbot.waitSignal(h2.window.voice.host.notice, timeout=30_000):
        h2.window.live_tab.voice.hands_free.setChecked(True)
    notes = [m.text for m in h2.window.banner.history if m.topic == "voice"]
    assert notes and notes[-1].startswith("I didn't catch that") and "say it again" in notes[-1]
    h2.window.live_tab.voice.hands_free.setChecked(False)


def test_voice_turned_off_while_its_model_loads_does_not_start_listening(make_harness, spoken_clip, demo_asr):
    """Hands-free off (or the window closed) while the recognition model still loads: when the load ends the
    microphone is not left listening, unseen, behind a voice row that says off; turning it on again listens."""
    import threading

    audio, _, _ = spoken_clip
    loading, go_on = threading.Event(), threading.Event()

    class SlowLoad:
        """The demo model, whose load waits until the test lets it go on."""

        def __init__(self) -> None:
            self.model = demo_asr(None)

        def load(self) -> None:
            loading.set()
            go_on.wait(30)

        def __getattr__(self, name):
            return getattr(self.model, name)

    slow = SlowLoad()
    h = voice_harness(make_harness, FakeSoundDevice(audio, rate=16000, speed=1.0), lambda options: slow)
    panel, host = h.window.live_tab.voice, h.window.voice.host
    panel.hands_free.setChecked(True)
    assert loading.wait(10)
    panel.hands_free.setChecked(False)  # while the model loads
    go_on.set()
    h.qtbot.waitUntil(lambda: not any(t.name == "voice-start" for t in threading.enumerate()), timeout=10_000)
    assert host.input is None and not host.listening
    assert not any(t.name == "voice-listen" and t.is_alive() for t in threading.enumerate())
    assert panel.status.text() != "listening"
    with h.qtbot.waitSignal(host.state, check_params_cb=lambda s: s == "listening", timeout=30_000):
        panel.hands_free.setChecked(True)  # on again: it listens
    assert host.listening
    panel.hands_free.setChecked(False)

"""The sample clip through the real worker path: subtitles reach the preview, the overlay and the
transcript; the session is on disk; exports parse; pause, questions, reopening."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from app.live.records import clean_text
from app.session import RESPONSE, list_sessions, load_session
from app.settings import SourceOptions
from model.protocol import STATE_TOKENS

SRT_TIMING = re.compile(r"^(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)$")
VTT_TIMING = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) --> (\d\d):(\d\d):(\d\d)\.(\d\d\d)$")


def _seconds(groups: tuple[str, ...]) -> float:
    h, m, s, ms = (int(g) for g in groups)
    return h * 3600 + m * 60 + s + ms / 1000


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    cues = []
    for i, block in enumerate(text.strip().split("\n\n"), start=1):
        lines = block.split("\n")
        assert lines[0] == str(i), f"cue {i} is numbered {lines[0]!r}"
        m = SRT_TIMING.match(lines[1])
        assert m, f"bad SRT timing line {lines[1]!r}"
        start, end = _seconds(m.groups()[:4]), _seconds(m.groups()[4:])
        assert 0 <= start <= end
        assert len(lines) > 2 and all(line.strip() for line in lines[2:])
        cues.append((start, end, "\n".join(lines[2:])))
    assert [c[0] for c in cues] == sorted(c[0] for c in cues)
    return cues


def parse_vtt(text: str) -> list[tuple[float, float, str]]:
    assert text.startswith("WEBVTT\n\n"), text[:20]
    cues = []
    for block in text[len("WEBVTT\n\n") :].strip().split("\n\n"):
        lines = block.split("\n")
        m = VTT_TIMING.match(lines[1])
        assert m, f"bad WebVTT timing line {lines[1]!r}"
        cues.append((_seconds(m.groups()[:4]), _seconds(m.groups()[4:]), "\n".join(lines[2:])))
    return cues


def check_json_schema(doc: dict) -> None:
    assert doc["format"] == "streamo-live-transcript" and doc["schema"] == 2
    assert {"id", "started", "source", "model", "task", "fps"} <= set(doc["session"])
    for e in doc["entries"]:
        assert set(e) == {"kind", "t", "end", "wall", "text", "origin"}
        assert e["kind"] in ("response", "question") and isinstance(e["text"], str) and e["text"]
        assert isinstance(e["t"], float) and e["end"] >= e["t"] and e["wall"] > 1e9
    for s in doc["states"]:
        assert set(s) == {"t", "end", "state"} and s["state"] in STATE_TOKENS


def test_sample_clip_subtitles_reach_preview_overlay_and_transcript(
    make_harness, tiny_options, sample_source, tmp_path
):
    h = make_harness()
    info = h.load(tiny_options)  # the real loader, on the engine thread
    assert info.device == "cpu" and info.precision == "fp32"
    h.window.toggle_overlay(True)
    assert h.window.overlay.isVisible()

    h.run(sample_source)

    responses = [r.record.text for r in h.reports if r.record.text]
    assert len(h.reports) == 10  # 10 s of video at 1 fps, every sample stepped
    assert responses, "the talkative tiny model should answer at least once"
    # Tokens streamed in before each answer was complete.
    assert len(h.tokens) > len(responses)
    feed = h.window.feed
    assert feed.history == [t.strip() for t in responses]
    # Drawn on the preview and on the overlay, not just held in the feed.
    h.qtbot.waitUntil(lambda: bool(h.window.live_tab.preview.painted_texts), timeout=5000)
    h.qtbot.waitUntil(lambda: bool(h.window.overlay.painted_texts), timeout=5000)
    assert h.window.live_tab.preview.frames_shown > 0
    # Every response is in the transcript panel and in the session file on disk.
    panel = h.window.live_tab.transcript
    # Shown cleaned (no control characters or U+FFFD from the random model); the record keeps the raw text.
    shown = [clean_text(t).strip() for t in responses if clean_text(t).strip()]
    assert [e.text for e in panel.model.entries if e.kind == RESPONSE] == shown
    assert all("\ufffd" not in e.text for e in panel.model.entries)
    assert len(panel.timeline.spans) == 10
    on_disk = load_session(h.controller.session.path)
    assert [e.text for e in on_disk.entries] == [e.text for e in panel.model.entries]
    assert on_disk.ended
    # The status bar shows latency, rate, context, memory and the kernel path.
    fields = h.window.status.fields()
    assert fields["latency"].startswith("step ") and "context 10 turns" in fields["context"]
    assert "RSS" in fields["memory"] and fields["kernel"] == "runs on PyTorch"

    # Exports parse.
    srt = parse_srt(panel.export_to(tmp_path / "out.srt").read_text(encoding="utf-8"))
    vtt = parse_vtt(panel.export_to(tmp_path / "out.vtt").read_text(encoding="utf-8"))
    assert len(srt) == len(vtt) == len(shown)
    assert [c[0] for c in srt] == [r.record.t for r in h.reports if clean_text(r.record.text).strip()]
    check_json_schema(json.loads(panel.export_to(tmp_path / "out.json").read_text(encoding="utf-8")))


def test_question_typed_before_start_enters_the_stream(make_harness, shared_loader, tiny_options, sample_source):
    h = make_harness(loader=shared_loader)
    h.load(tiny_options)
    controls = h.window.live_tab.controls
    controls.question.setText("What colour is the circle?")
    controls.question.returnPressed.emit()
    assert "when you press Start" in h.window.banner.text()
    h.run(sample_source)
    # Both enter: the task's instruction on the first second, the question on the next one.
    questions = [e for e in h.window.live_tab.transcript.model.entries if e.kind == "question"]
    assert [(q.text, q.t, q.origin) for q in questions[:2]] == [
        ("Find all significant events in the video and describe them.", 0.0, "preset"),
        ("What colour is the circle?", 1.0, "typed"),
    ]
    assert [r["question"]["origin"] for r in h.session_records() if r.get("question")][:2] == ["preset", "typed"]


def test_pause_holds_the_model_and_stop_closes_the_session(make_harness, shared_loader, tiny_options, sample_source):
    h = make_harness(loader=shared_loader)
    h.load(tiny_options)
    c = h.controller
    with h.qtbot.waitSignal(c.step_finished, timeout=20_000):
        h.start(sample_source)
    with h.qtbot.waitSignal(c.pause_applied, timeout=20_000):  # after a step in flight
        h.window.live_tab.transport.pause_button.click()
    assert c.state == "paused"
    steps = len(h.reports)
    with h.qtbot.assertNotEmitted(c.step_finished, wait=1000):
        pass
    assert len(h.reports) == steps
    with h.qtbot.waitSignal(c.step_finished, timeout=20_000):
        h.window.live_tab.transport.pause_button.click()  # resume
    with h.qtbot.waitSignal(c.run_finished, timeout=20_000):
        h.window.live_tab.transport.stop_button.click()
    assert c.state == "idle"
    records = h.session_records()
    assert records[0]["type"] == "session" and records[-1]["type"] == "end"
    assert 0 < len(h.reports) < 10


def test_saved_sessions_reopen_in_the_transcript(make_harness, shared_loader, tiny_options, sample_source):
    h = make_harness(loader=shared_loader)
    h.load(tiny_options)
    h.run(sample_source)
    live_entries = list(h.window.live_tab.transcript.model.entries)
    path = Path(h.controller.session.path)
    summaries = list_sessions(path.parent.parent)
    assert [s.path for s in summaries] == [path]
    assert summaries[0].responses == sum(1 for e in live_entries if e.kind == RESPONSE)

    h.window.live_tab.transcript.set_session(load_session(path))  # clear, then reopen from disk
    assert h.window.open_session(str(path))
    panel = h.window.live_tab.transcript
    assert panel.model.entries == live_entries
    assert "reopened" in panel.title.text()
    assert len(panel.timeline.spans) == 10


def test_options_reach_the_running_engine(make_harness, shared_loader, tiny_options, sample_source, talkative):
    h = make_harness(loader=shared_loader)
    h.load(tiny_options)
    quiet = replace(talkative, talkativeness=0)  # threshold 0.98: never answers
    with h.qtbot.waitSignal(h.controller.step_finished, timeout=20_000):
        h.start(sample_source, quiet)
    h.window.live_tab.controls.talk.setValue(100)  # threshold 0.02: answers every second
    h.wait_idle()
    states = [r.record.state for r in h.reports]
    assert states[0] != "</Response>" and states[-1] == "</Response>"


def test_stop_right_after_start_then_start_again(make_harness, shared_loader, tiny_options, sample_source):
    h = make_harness(loader=shared_loader)
    h.load(tiny_options)
    with h.qtbot.waitSignal(h.controller.run_finished, timeout=20_000):
        h.start(sample_source)
        h.controller.stop()  # the capture request may still wait in its thread's queue
    assert h.controller.state == "idle"
    h.reports.clear()
    h.run(sample_source)
    assert len(h.reports) == 10


@pytest.mark.slow
def test_pause_on_a_file_at_real_speed_pauses_the_video(make_harness, shared_loader, tiny_options, sample_clip):
    """The video's clock stops too: after a pause no second was skipped, and Resume stays possible."""
    h = make_harness(loader=shared_loader)
    h.load(tiny_options)
    c = h.controller
    with h.qtbot.waitSignal(c.step_finished, timeout=20_000):
        h.start(SourceOptions(spec=str(sample_clip), realtime=True))
    with h.qtbot.waitSignal(c.pause_applied, timeout=20_000):
        h.window.live_tab.transport.pause_button.click()
    with h.qtbot.assertNotEmitted(c.step_finished, wait=3000):  # longer than a second of video
        pass
    assert h.window.live_tab.transport.pause_button.isEnabled()  # Resume is there
    with h.qtbot.waitSignal(c.run_finished, timeout=30_000):
        h.window.live_tab.transport.pause_button.click()
    assert [r.record.t for r in h.reports] == [float(t) for t in range(10)]


def test_a_quiet_model_gets_explained(make_harness, shared_loader, tiny_options, sample_source, monkeypatch):
    from fakes import FakeEngine

    monkeypatch.setattr("ui.main_window.HINT_AFTER_SECONDS", 5)
    h = make_harness(loader=shared_loader, engine_factory=lambda loaded, options: FakeEngine(["</Standby>"]))
    h.load(tiny_options)
    h.run(sample_source)
    hints = [m.text for m in h.window.banner.history if m.topic == "hint"]
    assert len(hints) == 1 and "No answer for 5 seconds" in hints[0] and "Talkativeness" in hints[0]

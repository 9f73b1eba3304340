"""One runtime, two front ends: the sample clip through ``narrate`` and through the desktop app's
runtime (offscreen, the real threads and loader) with the demo model gives the same step records
(wall clock and latencies aside) and byte-identical SRT."""

from __future__ import annotations

import pytest

from app.cli import main as cli_main
from app.exports import read_jsonl
from app.live.records import StepRecord, comparable
from app.settings import LiveOptions, ModelOptions, SourceOptions

# Talkative (answers when P(Response) >= 0.2) and short answers: the random demo model says something.
LIVE = LiveOptions(model_decides=False, talkativeness=80, max_answer_tokens=8)


def steps_of(path) -> list[StepRecord]:
    return [StepRecord.from_json(r) for r in read_jsonl(path) if r.get("type") == "step"]


@pytest.fixture
def controller(qtbot, tmp_path):
    from app.live.qt import LiveController

    c = LiveController(sessions_root=tmp_path / "gui")
    yield c
    c.shutdown()


def test_narrate_and_the_app_write_the_same_records_and_srt(controller, qtbot, sample_clip, tmp_path):
    out = tmp_path / "cli"
    rc = cli_main([
        "narrate", "--source", str(sample_clip), "--model", "demo", "--device", "cpu", "--quiet",
        "--threshold", "0.2", "--max-answer-tokens", "8",
        "--jsonl", str(out / "steps.jsonl"), "--srt", str(out / "sample.srt"),
    ])  # fmt: skip
    assert rc == 0
    cli_steps = steps_of(out / "steps.jsonl")

    with qtbot.waitSignal(controller.model_ready, timeout=120_000):
        controller.load_model(ModelOptions(source="demo", device="cpu"))
    with qtbot.waitSignal(controller.run_finished, timeout=120_000):
        assert controller.start(SourceOptions(spec=str(sample_clip), realtime=False), LIVE)
    gui_steps = steps_of(controller.session.path)

    assert len(cli_steps) == len(gui_steps) == 10  # 10 s at 1 fps
    assert any(s.text for s in cli_steps), "the talkative demo should answer at least once"
    assert [comparable(s) for s in gui_steps] == [comparable(s) for s in cli_steps]
    gui_srt = controller.session.export_text("srt", hold=LIVE.subtitle_seconds)
    assert gui_srt.encode() == (out / "sample.srt").read_bytes()

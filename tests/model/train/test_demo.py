"""The demo shapes adapter: built by the real trainer on first use (a few minutes on 2 cores),
cached, and with it the demo model narrates the bundled sample clip's shapes at the right seconds."""

from __future__ import annotations

import json
import logging

import pytest

from app.cli import main as cli_main
from model.train import demo
from model.train.synthetic import SHAPES

BALL, SQUARE = SHAPES["ball"].caption, SHAPES["square"].caption


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    """A fresh data folder with the demo adapter enabled (the suite turns it off elsewhere)."""
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("demo-data")
    mp.setenv("STREAMO_LIVE_DATA", str(folder))
    mp.setenv("STREAMO_LIVE_DEMO_ADAPTER", "1")
    progress: list[tuple[int, int, str]] = []
    path = demo.ensure_demo_adapter(lambda d, t, w: progress.append((d, t, w)))
    yield folder, path, progress
    mp.undo()


@pytest.mark.slow
def test_built_once_with_progress_then_cached(demo_data):
    folder, path, progress = demo_data
    assert path == folder / "demo-shapes-adapter" and (path / "adapter_model.safetensors").is_file()
    steps = [d for d, t, w in progress if "Training" in w]
    assert steps == list(range(1, demo.RECIPE["steps"] + 1))
    assert not list(folder.glob("*.build-*"))  # the private build folder is gone
    again: list = []
    assert demo.ensure_demo_adapter(lambda *a: again.append(a)) == path and not again
    card = (path / "README.md").read_text()
    assert "base_model: streamo-live demo" in card and "model/train/demo.py" in card


@pytest.mark.slow
def test_demo_narrates_the_sample_clips_shapes(demo_data, sample_clip, tmp_path, capsys):
    jsonl = tmp_path / "steps.jsonl"
    assert cli_main(["narrate", "--source", str(sample_clip), "--model", "demo", "--jsonl", str(jsonl)]) == 0
    assert "demo shapes model: a toy" in capsys.readouterr().err
    records = [r for r in map(json.loads, jsonl.read_text().splitlines()) if r["type"] == "step"]
    said = [(r["t"], r["text"]) for r in records if r["text"]]
    # Exactly the two captions, word for word, at their seconds: the ball leaves at 4 s and the square
    # at 7 s (scripts/make_sample_clip.py). The recipe's margin: bench.bench_demo (docs/training.md).
    assert len(said) == 2, said
    (t_ball, ball), (t_square, square) = said
    assert ball == BALL and 3 <= t_ball <= 5, said
    assert square == SQUARE and 6 <= t_square <= 8, said


@pytest.mark.slow
def test_the_demo_is_silent_without_its_shapes_and_narrates_one_late_in_a_long_stream(demo_data, tmp_path):
    """Issue 18 item 9: honest on any footage, for streams of any length. Two minutes of colour bars
    (red, green and blue areas that are not shapes; never in its training) get no answer, and a ball
    that appears five minutes into a grey stream (past many window drops) gets its caption, at the
    second it leaves, and nothing else (bench.bench_demo's clips)."""
    from bench.bench_demo import LATE, late_clip, late_exact, said_on
    from model.train.synthetic import write_clip

    bars = write_clip(tmp_path / "bars.mp4", [], 120, video_fps=1, counters=False, backdrop="bars")
    assert said_on(bars, tmp_path) == []
    said = said_on(late_clip(tmp_path), tmp_path)
    assert late_exact(said), (LATE, said)


def test_demo_adapter_choice(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("STREAMO_LIVE_DEMO_ADAPTER", "0")
    assert demo.demo_adapter_for("demo", None) is None
    assert demo.demo_adapter_for("demo", str(tmp_path)) == tmp_path  # the user's own adapter wins
    monkeypatch.setenv("STREAMO_LIVE_DEMO_ADAPTER", "1")
    assert demo.demo_adapter_for("Qwen/Qwen2.5-VL-3B-Instruct", None) is None

    def broken(progress=None, stop=None):
        raise OSError("No space left on device")

    monkeypatch.setattr(demo, "ensure_demo_adapter", broken)
    with caplog.at_level(logging.WARNING):
        assert demo.demo_adapter_for("demo", None) is None  # the random demo still starts
    assert "No space left on device" in caplog.text


def test_the_first_use_build_says_how_long_is_left():
    from model.train.demo import building_words

    assert building_words(-1.0) == "Training the demo shapes adapter (first use only)"  # not timed yet
    assert building_words(42.4).endswith("(first use only; about 42 s left)")
    assert building_words(150.0).endswith("(first use only; about 2 min left)")

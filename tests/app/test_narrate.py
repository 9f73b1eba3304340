import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from fakes import FakeEngine, read_until, write_video

from app.cli import main as cli_main
from app.exports import read_jsonl
from model import protocol as P

SRT_CUE = re.compile(r"(\d+)\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n(.+?)(?:\n\n|\n?$)", re.S)


def make_video(path: Path, seconds: int, fps: int = 4) -> Path:
    return write_video(path, seconds * fps, fps)


def test_narrate_file_writes_jsonl_srt_vtt(tiny_ckpt, tmp_path, capsys):
    video = make_video(tmp_path / "clip.mp4", seconds=5)
    out = tmp_path / "out"
    rc = cli_main([
        "narrate", "--source", str(video), "--model", str(tiny_ckpt), "--device", "cpu",
        "--threshold", "0.0", "--max-answer-tokens", "3",
        "--question", "what moves?", "--at", "2",
        "--jsonl", str(out / "s.jsonl"), "--srt", str(out / "s.srt"), "--vtt", str(out / "s.vtt"),
    ])  # fmt: skip
    assert rc == 0
    lines = read_jsonl(out / "s.jsonl")
    assert lines[0]["type"] == "session" and lines[0]["schema"] == 2 and lines[-1]["type"] == "end"
    records = [r for r in lines if r["type"] == "step"]
    assert [r["t"] for r in records] == [0, 1, 2, 3, 4]
    for r in records:
        assert r["state"] in P.STATE_TOKENS
        assert abs(sum(r["p"].values()) - 1) < 1e-4 and set(r["p"]) == set(P.STATE_TOKENS)
        assert {"vision", "prefill", "decision", "total"} <= set(r["latency_ms"])
        assert r["exact"] is True and r["context_turns"] == min(r["t"] + 1, 120)
    # threshold 0 makes every second a response: all five become subtitles.
    assert all(r["state"] == P.RESPONSE for r in records)
    assert records[0]["question"]["origin"] == "preset"  # the narrate task's instruction
    assert records[2]["question"] == {"text": "what moves?", "t": 2.0, "origin": "typed"}
    texts = [r["text"] for r in records if r["text"].strip()]
    cues = SRT_CUE.findall((out / "s.srt").read_text())
    assert [int(c[0]) for c in cues] == list(range(1, len(texts) + 2)) and len(texts) >= 1  # + the question
    assert cues[0][1] == "00:00:00,000"  # a response shows from the start of its second
    assert all(c[2] <= "00:00:05,000" for c in cues)  # and never past the end of the stream
    assert [c[1:] for c in cues if c[3].startswith("Q: ")] == [("00:00:02,000", "00:00:05,000", "Q: what moves?")]
    vtt = (out / "s.vtt").read_text()
    assert vtt.startswith("WEBVTT") and vtt.count(" --> ") == len(texts) + 1 and "\nQ: what moves?\n" in vtt
    # The same records are in the session store, where File > Open session finds them.
    from app.session import list_sessions, load_session

    session = load_session(list_sessions()[0].path)
    assert [s.state for s in session.states] == [r["state"] for r in records]
    printed = capsys.readouterr().out
    assert "Q: what moves?" in printed and "[00:00:00]" in printed


def test_narrate_errors_are_clear(tiny_ckpt, tmp_path, capsys):
    assert cli_main(["narrate", "--source", str(tmp_path / "none.mp4"), "--model", str(tiny_ckpt)]) == 2
    assert "none.mp4" in capsys.readouterr().err
    video = make_video(tmp_path / "c.mp4", 1)
    args = ["narrate", "--source", str(video), "--model", str(tiny_ckpt), "--question", "a", "--question", "b"]
    assert cli_main(args) == 2
    assert "--at" in capsys.readouterr().err
    assert cli_main(["narrate", "--source", str(video), "--model", str(tmp_path / "nomodel")]) == 2
    assert "nomodel" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_ctrl_c_keeps_what_was_written(tiny_ckpt, tmp_path, stop):
    """Ctrl-C, and SIGTERM and SIGHUP like it (they once ended narrate with no end record and no subtitles)."""
    video = make_video(tmp_path / "long.mp4", seconds=60)
    jsonl, srt = tmp_path / "s.jsonl", tmp_path / "s.srt"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "narrate", "--source", str(video), "--model", str(tiny_ckpt),
         "--device", "cpu", "--realtime", "--threshold", "0.0", "--max-answer-tokens", "2",
         "--jsonl", str(jsonl), "--srt", str(srt)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        seen = []  # every second answers (threshold 0): wait for the second subtitle line
        read_until(proc.stdout, lambda line: seen.append(line) or len(seen) >= 2)
        proc.send_signal(getattr(signal, stop))
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted at" in err
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    records = [r for r in lines if r["type"] == "step"]
    assert 2 <= len(records) < 60
    assert lines[-1]["type"] == "end"  # an interrupted run still closes its log
    assert len(SRT_CUE.findall(srt.read_text())) == sum(1 for r in records if r["text"].strip())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--threshold", "2"], "--threshold must be between 0 and 1"),
        (["--max-turns", "0"], "--max-turns must be >= 1"),
        (["--seconds", "-1"], "--seconds must be positive"),
        (["--at", "-2", "--question", "q"], "--at must be a stream second >= 0"),
        (["--task", "grounding"], "needs a target"),
        (["--task", "dance"], "unknown task"),
        (["--source", "webcam:x"], "Invalid source 'webcam:x'"),
    ],
)
def test_bad_values_are_one_line_errors_before_the_model_loads(tmp_path, capsys, extra, message):
    video = make_video(tmp_path / "c.mp4", 1)
    args = ["narrate", "--source", str(video), "--model", str(tmp_path / "no-model-here"), *extra]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "no-model-here" not in err  # nothing loaded yet


def test_a_question_past_the_end_is_warned_about(tiny_ckpt, tmp_path, capsys):
    video = make_video(tmp_path / "c.mp4", 3)
    args = ["narrate", "--source", str(video), "--model", str(tiny_ckpt), "--device", "cpu", "--quiet",
            "--question", "early?", "--at", "1", "--question", "too late?", "--at", "50"]  # fmt: skip
    assert cli_main(args) == 0
    captured = capsys.readouterr()
    assert "--at 50 is past the end of c.mp4 (3.0 s): 'too late?' will not be asked" in captured.err
    assert "'too late?' (at 50 s) was never asked" in captured.err
    assert "Q: early?" in captured.out


def test_help_version_and_a_bare_data_command(capsys):
    with pytest.raises(SystemExit):
        cli_main(["narrate", "--help"])
    out = capsys.readouterr().out
    assert "Narrate a video file, a webcam or the screen" in out and "(default: demo)" in out
    with pytest.raises(SystemExit) as info:
        cli_main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("streamo-live ")
    assert cli_main(["data"]) == 2
    err = capsys.readouterr().err
    assert (
        "choose a data command: to-stream, shapes, prepare or rehearsal" in err and "required: data_command" not in err
    )


def test_terminal_text_is_cleaned(tiny_ckpt, tmp_path, capsys, monkeypatch):
    """Control characters and U+FFFD from the model never reach the terminal or the subtitles."""
    from app.live import runner as runner_module

    real = runner_module.make_engine

    def dirty(loaded, options):
        engine = real(loaded, options)
        step = engine.step

        def noisy(image, t=None, on_token=None):
            if on_token is not None:
                on_token("bad\x07bytes\ufffd ")
            result = step(image, t=t)
            result.text = "A\x1b[31m red\ufffd ball"
            return result

        engine.step = noisy
        return engine

    monkeypatch.setattr("app.live.runner.make_engine", dirty)
    video = make_video(tmp_path / "c.mp4", 2)
    srt = tmp_path / "c.srt"
    args = [
        "narrate",
        "--source",
        str(video),
        "--model",
        str(tiny_ckpt),
        "--device",
        "cpu",
        "--quiet",
        "--srt",
        str(srt),
    ]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "\x07" not in out and "\ufffd" not in out and "\x1b" not in out and "badbytes" in out
    assert "A[31m red ball" in srt.read_text() and "\ufffd" not in srt.read_text()


@pytest.fixture
def stand_in(monkeypatch):
    """narrate with the test fake engine (every second answers "answer at T", token by token) instead of
    a model."""
    from model.protocol import RESPONSE

    loaded = SimpleNamespace(adapter=None, is_demo=False, source="stand-in", device="cpu", precision="fp32")
    monkeypatch.setattr("app.narrate.load_cli_model", lambda args: loaded)
    monkeypatch.setattr("app.live.runner.make_engine", lambda loaded, options: FakeEngine([RESPONSE], options.fps))


VTT_CUE = re.compile(r"(\d+)\n(\d\d:\d\d:\d\d\.\d\d\d) --> (\d\d:\d\d:\d\d\.\d\d\d)\n(.+?)(?:\n\n|\n?$)", re.S)


def test_an_asked_question_is_in_the_record_before_its_answer(stand_in, tmp_path, capsys):
    """The question asked at 2.5 s enters the second 2-3: the terminal prints it before that second's
    answer (which streams token by token), and SRT / WebVTT carry it as its own cue at 2 s, listed
    before the answer; in WebVTT its markup-like characters are escaped."""
    video = make_video(tmp_path / "clip.mp4", seconds=5)
    srt, vtt = tmp_path / "s.srt", tmp_path / "s.vtt"
    question = "Is the <b>box</b> & the ball red?"
    args = ["narrate", "--source", str(video), "--model", "stand-in", "--quiet", "--question", question,
            "--at", "2.5", "--srt", str(srt), "--vtt", str(vtt)]  # fmt: skip
    assert cli_main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "[00:00:00] answer at 0",
        "[00:00:01] answer at 1",
        f"[00:00:02] Q: {question}",
        "[00:00:02] answer at 2",
        "[00:00:03] answer at 3",
        "[00:00:04] answer at 4",
    ]
    srt_cues = [c[1:] for c in SRT_CUE.findall(srt.read_text())]
    assert srt_cues == [
        ("00:00:00,000", "00:00:01,000", "answer at 0"),
        ("00:00:01,000", "00:00:02,000", "answer at 1"),
        ("00:00:02,000", "00:00:05,000", f"Q: {question}"),  # on screen with the answers that follow it
        ("00:00:02,000", "00:00:03,000", "answer at 2"),
        ("00:00:03,000", "00:00:04,000", "answer at 3"),
        ("00:00:04,000", "00:00:05,000", "answer at 4"),
    ]
    vtt_cues = [c[1:] for c in VTT_CUE.findall(vtt.read_text())]
    assert [(a.replace(",", "."), b.replace(",", "."), text) for a, b, text in srt_cues[:2]] == vtt_cues[:2]
    assert vtt_cues[2] == ("00:00:02.000", "00:00:05.000", "Q: Is the &lt;b&gt;box&lt;/b&gt; &amp; the ball red?")
    assert vtt_cues[3][2] == "answer at 2" and "<b>" not in vtt.read_text()


def test_questions_keep_their_own_cues_until_the_next_question(stand_in, tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=6)
    srt = tmp_path / "s.srt"
    args = ["narrate", "--source", str(video), "--model", "stand-in", "--quiet", "--subtitle-seconds", "2",
            "--question", "first?", "--at", "0", "--question", "second?", "--at", "1", "--srt", str(srt)]  # fmt: skip
    assert cli_main(args) == 0
    asked = [c[1:] for c in SRT_CUE.findall(srt.read_text()) if c[3].startswith("Q: ")]
    assert asked == [("00:00:00,000", "00:00:01,000", "Q: first?"), ("00:00:01,000", "00:00:03,000", "Q: second?")]


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="espeak-ng is the engine on Linux")
def test_a_spoken_track_that_could_not_be_made_is_never_reported(stand_in, tmp_path, capsys, monkeypatch):
    """--speak-to with a speech engine that fails: the track is not claimed, the command fails with the
    engine's own words, and the subtitles and the session are kept."""
    from app.voice import synth

    program = tmp_path / "espeak-ng"
    program.write_text(f"#!{sys.executable}\nimport sys\nsys.stderr.write('Error: no voice data\\n')\nsys.exit(1)\n")
    program.chmod(0o755)
    monkeypatch.setattr(synth, "ESPEAK", str(program))
    video = make_video(tmp_path / "clip.mp4", seconds=3)
    srt, track = tmp_path / "s.srt", tmp_path / "answers.wav"
    args = ["narrate", "--source", str(video), "--model", "stand-in", "--quiet", "--srt", str(srt),
            "--speak-to", str(track)]  # fmt: skip
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert not track.exists()
    assert len(SRT_CUE.findall(srt.read_text())) == 3  # the subtitles are all there
    done = next(line for line in err.splitlines() if line.startswith("done: "))
    assert str(srt) in done and str(track) not in done
    assert (
        f"the spoken track {track} was not written: espeak-ng could not speak the answer (exit status 1): "
        "Error: no voice data" in err
    )

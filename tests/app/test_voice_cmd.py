"""Voice on the command line: `narrate --ask-audio/--speak/--speak-to` and the `voice` diagnostics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeSoundDevice, write_video

from app.cli import main as cli_main
from app.exports import read_jsonl


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """A question spoken by espeak-ng with 1.5 s of silence before it and 1 s after, as a WAV."""
    from app.voice.synth import ENGINE_MISSING, engine_installed, synthesize
    from app.voice.wav import write_wav

    if not engine_installed():  # only a missing engine skips; one that fails fails the tests
        pytest.skip(ENGINE_MISSING)
    speech, rate = synthesize("What colour is the ball?")
    audio = np.concatenate([np.zeros(int(1.5 * rate), np.float32), speech, np.zeros(rate, np.float32)])
    return write_wav(tmp_path_factory.mktemp("voice") / "question.wav", audio, rate)


def test_narrate_asks_a_recorded_question_and_writes_the_spoken_track(spoken, tiny_ckpt, tmp_path, capsys):
    video = write_video(tmp_path / "clip.mp4", 24, 4)  # 6 s
    jsonl, track, srt = tmp_path / "steps.jsonl", tmp_path / "answers.wav", tmp_path / "clip.srt"
    args = ["narrate", "--source", str(video), "--model", str(tiny_ckpt), "--device", "cpu", "--quiet",
            "--threshold", "0.0", "--max-answer-tokens", "3", "--ask-audio", str(spoken), "--at", "2",
            "--asr-model", "demo", "--jsonl", str(jsonl), "--speak", "--speak-to", str(track),
            "--srt", str(srt)]  # fmt: skip
    assert cli_main(args) == 0
    captured = capsys.readouterr()
    err = captured.err
    assert "heard in question.wav at 2-" in err
    assert "warning: No audio output device" in err or "Speakers" in err  # --speak: no speakers here, it goes on
    steps = [r for r in read_jsonl(jsonl) if r["type"] == "step"]
    asked = [r["question"] for r in steps if r["question"] and r["question"]["origin"] == "voice"]
    assert len(asked) == 1 and asked[0]["span"][0] == 2.0 and asked[0]["t"] == asked[0]["span"][1]
    entered_at = [r["t"] for r in steps if r["question"] and r["question"]["origin"] == "voice"][0]
    assert entered_at == float(int(asked[0]["t"]))  # the turn covering the second the speaker stopped
    # The spoken question is in the record: the terminal's Q: line and its own subtitle cue at that second.
    assert f"Q: {asked[0]['text']}" in captured.out
    assert f"00:00:0{int(entered_at)},000 --> " in srt.read_text() and f"\nQ: {asked[0]['text']}\n" in srt.read_text()
    assert err.rstrip().splitlines()[-1].startswith("done: ") and str(track) in err.rstrip().splitlines()[-1]
    from app.voice.wav import read_wav

    audio, rate = read_wav(track)
    assert abs(len(audio) / rate - 6.0) < 0.01  # as long as the stream: a narration track for the video
    first = next(r["t"] for r in steps if r["text"].strip())
    assert np.abs(audio[int(first * rate) : int((first + 0.5) * rate)]).max() > 0.05  # speech at its second


def test_asking_audio_needs_its_second_and_a_real_file(tmp_path, capsys):
    video = write_video(tmp_path / "clip.mp4", 4, 4)
    base = ["narrate", "--source", str(video), "--model", str(tmp_path / "no-model")]
    assert cli_main([*base, "--ask-audio", str(tmp_path / "q.wav")]) == 2
    assert "give one --at SECONDS after each --question and --ask-audio" in capsys.readouterr().err
    assert cli_main([*base, "--ask-audio", str(tmp_path / "missing.wav"), "--at", "1"]) == 2
    assert "missing.wav: no such file" in capsys.readouterr().err
    notes = tmp_path / "notes.wav"
    notes.write_text("not audio")
    assert cli_main([*base, "--ask-audio", str(notes), "--at", "1", "--asr-model", "demo"]) == 2
    err = capsys.readouterr().err
    assert "notes.wav" in err and "is not an audio file" in err and "no-model" not in err


def test_voice_segment_say_and_transcribe(spoken, tmp_path, capsys):
    assert cli_main(["voice", "segment", str(spoken), "--json"]) == 0
    [utterance] = json.loads(capsys.readouterr().out)
    assert abs(utterance["start"] - 1.5) < 0.3 and utterance["end"] > utterance["start"] + 0.5
    out = tmp_path / "said.wav"
    assert cli_main(["voice", "say", "The ball is red.", "--to", str(out)]) == 0
    from app.voice.wav import read_wav

    audio, rate = read_wav(out)
    assert 0.3 < len(audio) / rate < 5 and np.abs(audio).max() > 0.05
    capsys.readouterr()
    assert cli_main(["voice", "say", "  ", "--to", str(tmp_path / "nothing.wav")]) == 2
    assert "nothing to say" in capsys.readouterr().err and not (tmp_path / "nothing.wav").exists()
    assert cli_main(["voice", "transcribe", str(out), "--asr-model", "demo", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip()  # the tiny model's words mean nothing; some text comes back


def test_voice_devices_lists_what_portaudio_sees(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice(name="Desk Mic"))
    assert cli_main(["voice", "devices"]) == 0
    out = capsys.readouterr().out
    assert "Desk Mic" in out and "Speakers: none" in out
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice(devices=[], default=-1))
    assert cli_main(["voice", "devices"]) == 0
    assert "No audio devices found" in capsys.readouterr().out
    assert cli_main(["voice"]) == 2
    assert "choose a voice command" in capsys.readouterr().err


LONG_TEXT = (
    "A red circle appears on the left side of the screen. It moves slowly to the right. "
    "Then a blue square enters from the top and stays in the middle for a while."
)


def test_voice_say_writes_the_whole_answer_in_fresh_processes(tmp_path):
    """The first synthesis of a process is where pyttsx3's espeak driver raced (it returned before the audio
    was written); each run here is a new process with a long first text. docs/voice.md has the 50-run count."""
    from app.voice.synth import ENGINE_MISSING, engine_installed
    from app.voice.wav import read_wav

    if not engine_installed():
        pytest.skip(ENGINE_MISSING)
    root = Path(__file__).resolve().parents[2]
    for i in range(3):
        out = tmp_path / f"say{i}.wav"
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "voice", "say", LONG_TEXT, "--to", str(out)],
            cwd=root, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        audio, rate = read_wav(out)
        assert len(audio) / rate > 6.0 and np.abs(audio).max() > 0.05  # all of it (~7.4 s), not a first word

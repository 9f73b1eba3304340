"""Fault injection (issue 23), the command-line half: SIGTERM and SIGHUP to long commands, and the inputs and
outputs that were tracebacks and are now one-line errors naming the problem and what to do (rc 2). Each case
names what used to happen. The outputs, sessions and mid-run write failures are in test_faults.py."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import write_video

from app.cli import main as cli_main


def narrate(tmp_path: Path, *extra: str) -> list[str]:
    video = tmp_path / "v.mp4"
    if not video.exists():
        write_video(video, 4, 4)
    return ["narrate", "--source", str(video), "--model", str(tmp_path / "no-model"), "--quiet", *extra]


# ---------------------------------------------------------------------------------------------
# Signals: SIGTERM and SIGHUP end a long command as Ctrl-C does (model/interrupt.py, app/signals.py)


@pytest.fixture(scope="module")
def shape_clips(tmp_path_factory):
    from model.train.synthetic import make_dataset

    folder = tmp_path_factory.mktemp("clips")
    return folder, make_dataset(folder, 4, seed=4, size=(64, 48), max_events=1, counters=False)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_to_train_keeps_a_checkpoint_that_resume_continues(shape_clips, tiny_ckpt, tmp_path, stop):
    """SIGTERM (a service manager, `kill`) and SIGHUP (a closed terminal) to `train` once lost everything since
    the last checkpoint. Now as Ctrl-C: the step in progress finishes, a checkpoint is written, rc 130."""
    from fakes import read_until

    from model.train import checkpoint as ckpt

    folder, data = shape_clips
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--video-prefix", str(folder), "--model", str(tiny_ckpt), "--out", str(out),
            "--device", "cpu", "--holdout", "0"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args, "--steps", "5000"], env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(Path(__file__).resolve().parents[2]),
    )  # fmt: skip
    try:
        read_until(proc.stderr, lambda line: line.startswith("step 10/"))  # training, not loading
        proc.send_signal(getattr(signal, stop))
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Continue with --resume" in err and "Traceback" not in err
    latest = ckpt.latest_checkpoint(out)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert latest is not None and 10 <= latest.step < 5000 and steps == list(range(1, latest.step + 1))
    assert cli_main([*args, "--resume", "--steps", str(latest.step + 1)]) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, latest.step + 2))  # continued from the checkpoint, nothing lost or doubled


# ---------------------------------------------------------------------------------------------
# Tracebacks that are now one-line errors naming the problem and what to do (rc 2)


def _one_line_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err and len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def _with_header(folder: Path, change) -> None:
    """Rewrite the safetensors header of ``folder``'s weights by ``change(header) -> header``."""
    import struct

    weights = folder / "model.safetensors"
    raw = weights.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = change(json.loads(raw[8 : 8 + n]))
    text = json.dumps(header).encode()
    weights.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])


def _first_tensor(header: dict) -> str:
    return next(k for k in header if k != "__metadata__")


@pytest.mark.parametrize(
    ("case", "change", "why"),
    [
        ("a list", lambda h: list(h), "its header is a JSON list, not a table of tensors"),
        ("an unknown data type", lambda h: {**h, _first_tensor(h): {**h[_first_tensor(h)], "dtype": "Q99"}},
         "unknown variant `Q99`"),
        ("a shape its bytes do not hold", lambda h: {**h, _first_tensor(h): {**h[_first_tensor(h)], "shape": [7, 7, 7]}},
         "invalid shape, data type, or offset"),
        ("offsets that are text", lambda h: {**h, _first_tensor(h): {**h[_first_tensor(h)], "data_offsets": ["a", 1]}},
         "has no valid data_offsets"),
    ],
)  # fmt: skip
def test_a_bad_safetensors_header_is_one_line_naming_the_file(tiny_ckpt, tmp_path, capsys, case, change, why):
    """Bad safetensors headers were tracebacks (AttributeError, SafetensorError) from inside the loader."""
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_ckpt, folder)
    _with_header(folder, change)
    video = write_video(tmp_path / "v.mp4", 4, 4)
    assert cli_main(["narrate", "--source", str(video), "--model", str(folder), "--device", "cpu", "--quiet"]) == 2
    _one_line_error(capsys, f"{folder / 'model.safetensors'}: not a valid safetensors file", why, "download")


@pytest.mark.parametrize("missing", [("tokenizer.json", "tokenizer_config.json"), ("tokenizer.json",)])
def test_a_model_without_its_tokenizer_is_one_line(tiny_ckpt, tmp_path, capsys, missing):
    """A model folder without its tokenizer loaded an empty one; the first step failed with "5 is not in list"
    (or transformers printed five lines about sentencepiece)."""
    import shutil

    from model.errors import ModelLoadError
    from model.loading import check_tokenizer

    folder = tmp_path / "model"
    shutil.copytree(tiny_ckpt, folder)
    for name in missing:
        (folder / name).unlink()
    video = write_video(tmp_path / "v.mp4", 4, 4)
    assert cli_main(["narrate", "--source", str(video), "--model", str(folder), "--device", "cpu", "--quiet"]) == 2
    _one_line_error(capsys, f"{folder} has no tokenizer (tokenizer.json or vocab.json)", "download the model again")

    class OtherModels:  # a tokenizer file of another model: none of Qwen's chat tokens
        def get_vocab(self) -> dict[str, int]:
            return {"hello": 0}

    with pytest.raises(ModelLoadError, match=r"lacks the chat tokens <\|endoftext\|>, <\|im_start\|>"):
        check_tokenizer(folder, OtherModels())


@pytest.mark.parametrize("fps", ["0", "nan", "-1", "inf"])
def test_data_to_stream_refuses_an_fps_that_is_not_a_positive_number(tmp_path, capsys, fps):
    """`data to-stream --fps 0` divided by zero, `nan` could not convert to an integer (tracebacks), -1 and inf
    converted into nonsense. (narrate, train, prepare and benchmark take only 1 or 2: argparse refuses the rest.)"""
    annotations = tmp_path / "raw.json"
    annotations.write_text(json.dumps([{"video_path": "v.mp4", "question": [], "response": []}]))
    out = tmp_path / "stream.json"
    assert cli_main(["data", "to-stream", "--input", str(annotations), "--output", str(out), f"--fps={fps}"]) == 2
    _one_line_error(capsys, "--fps must be a positive number of turns per second")
    assert not out.exists()


def _special_file(tmp_path: Path) -> Path:
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    return fifo


@pytest.mark.parametrize(
    ("command", "where", "words"),
    [
        ("data shapes --out", "under a file", ["is a file, so the folder cannot be made"]),
        ("data shapes --out", "a file", ["is a file; give a folder"]),
        ("evaluate --json", "under a file", ["is a file, so the folder cannot be made"]),
        ("evaluate --json", "a folder", ["is a folder; give a file name"]),
        ("evaluate --json", "the data", ["is an input of this run"]),
        ("narrate --speak-to", "under a file", ["is a file, so the folder cannot be made"]),
        ("voice say --to", "under a file", ["is a file, so the folder cannot be made"]),
        ("voice say --to", "a special file", ["is a device or special file"]),
        ("voice say --to", "a model's file", ["is a file of the model or adapter folder"]),
    ],
)
def test_unwritable_outputs_are_one_line_errors_before_the_work(tiny_ckpt, tmp_path, capsys, command, where, words):
    """Read-only or impossible outputs for shapes, evaluate (found after the whole evaluation), --speak-to and
    `voice say` were tracebacks; `voice say --to /dev/full` as root replaced the device with a file. Now the one
    output guard (model/outputs.py) says so first, in one line."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    data = tmp_path / "raw.json"
    data.write_text("[]")
    target = {
        "under a file": a_file / "sub" / ("out" if command.startswith("data") else "out.wav"),
        "a file": a_file,
        "a folder": tmp_path,
        "the data": data,
        "a special file": _special_file(tmp_path) if where == "a special file" else None,
        "a model's file": tiny_ckpt / "model.safetensors",
    }[where]
    args = {
        "data shapes --out": ["data", "shapes", "--clips", "1", "--size", "32x32", "--out"],
        "evaluate --json": ["evaluate", "--data", str(data), "--model", str(tiny_ckpt), "--device", "cpu", "--json"],
        "narrate --speak-to": [*narrate(tmp_path), "--speak-to"],
        "voice say --to": ["voice", "say", "hello", "--to"],
    }[command]
    before = target.read_bytes() if where in ("a file", "the data", "a model's file") else None
    assert cli_main([*args, str(target)]) == 2
    _one_line_error(capsys, command.split()[-1], *words)
    if before is not None:
        assert target.read_bytes() == before


def test_outputs_that_fail_while_written_are_one_line_errors(shape_clips, tiny_ckpt, tmp_path, capsys, monkeypatch):
    """A folder made read-only (or a disk that filled) after the start check: `evaluate --json` and `data shapes`
    were tracebacks at the end of their work."""
    import model.atomic
    import model.train.synthetic

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    folder, data = shape_clips
    report = tmp_path / "eval" / "report.json"
    monkeypatch.setattr(model.atomic, "write_text_atomic", read_only)
    args = ["evaluate", "--data", str(data), "--video-prefix", str(folder), "--model", str(tiny_ckpt),
            "--device", "cpu", "--json", str(report)]  # fmt: skip
    assert cli_main(args) == 2
    _one_line_error(capsys, f"--json {report} could not be written (Read-only file system)", "printed above")
    monkeypatch.setattr(model.train.synthetic, "make_dataset", read_only)
    out = tmp_path / "shapes"
    assert cli_main(["data", "shapes", "--out", str(out), "--clips", "1", "--size", "32x32"]) == 2
    _one_line_error(capsys, f"--out {out}: cannot write the clips (Read-only file system)", "choose another folder")


@pytest.mark.parametrize("kind", ["empty", "audio-only", "wav"])
def test_empty_and_audio_only_files_are_named_for_what_they_are(tmp_path, capsys, kind):
    """0-byte and audio-only files were called "corrupt"; the one probe (model/video_probe.py) says what they are."""
    from bad_videos import audio_only_mp4

    path = tmp_path / "clip.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "audio-only":
        audio_only_mp4(path)
    else:
        import wave

        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(b"\0\0" * 1600)
    assert cli_main(["narrate", "--source", str(path), "--model", str(tmp_path / "no-model"), "--quiet"]) == 2
    line = _one_line_error(capsys, str(path))
    assert "corrupt" not in line
    assert {"empty": "empty (0 bytes)", "audio-only": "only audio", "wav": "WAV audio"}[kind] in line


def test_deeply_nested_json_in_a_session_or_a_benchmark_file_is_one_line(tmp_path, capsys):
    """JSON nested thousands of levels deep was a RecursionError traceback: a session line hid the whole session
    library, an OVO-Bench annotation or results file stopped the command."""
    from app.session import SessionLog, SessionMeta, list_sessions, load_session

    deep = "[" * 100_000 + "]" * 100_000
    log = SessionLog.create(SessionMeta(source="/v/a.mp4"), tmp_path)
    log.close()
    with open(log.path, "a", encoding="utf-8") as f:
        f.write(deep + "\n" + json.dumps({"type": "note", "wall": 0, "level": "info", "text": "after"}) + "\n")
    assert [s.path for s in list_sessions(tmp_path)] == [log.path]
    assert any("damaged line" in note for note in load_session(log.path).notes)
    (tmp_path / "deep.json").write_text(deep)
    assert cli_main(["benchmark", "ovo-score", str(tmp_path / "deep.json")]) == 2
    _one_line_error(capsys, "deep.json: not a readable JSON file (nested too deeply)")
    args = ["benchmark", "ovo", "--anno", str(tmp_path / "deep.json"), "--videos", str(tmp_path), "--model", "demo",
            "--out", str(tmp_path / "res" / "r.json")]  # fmt: skip
    assert cli_main(args) == 2
    _one_line_error(capsys, "deep.json: not a readable JSON file (nested too deeply)")

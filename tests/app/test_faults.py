"""Fault injection (issue 23): outputs that would overwrite inputs, weights or devices, outputs that cannot be
written, damaged settings and session files. Each case names what used to happen; each must now end in a
one-line error before anything loads, or go on with a warning, and lose nothing. Signals and the inputs that
were tracebacks are in test_faults_cli.py."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path

import pytest
from fakes import write_video

from app.cli import main as cli_main
from model.outputs import OutputRefused, check_output


def narrate(tmp_path: Path, *extra: str) -> list[str]:
    video = tmp_path / "v.mp4"
    if not video.exists():
        write_video(video, 4, 4)
    return ["narrate", "--source", str(video), "--model", str(tmp_path / "no-model"), "--quiet", *extra]


@pytest.mark.parametrize("flag", ["--srt", "--vtt", "--jsonl", "--speak-to"])
def test_an_output_that_is_the_video_is_refused_and_the_video_kept(tmp_path, capsys, flag):
    """`narrate --source v.mp4 --srt v.mp4` destroyed the video."""
    args = narrate(tmp_path)
    video = tmp_path / "v.mp4"
    before = video.read_bytes()
    assert cli_main([*args, flag, str(video)]) == 2
    err = capsys.readouterr().err
    assert "is an input of this run" in err and err.count("\n") == 1  # one line, before the model loads
    assert video.read_bytes() == before


def test_weights_and_devices_are_not_outputs(tmp_path, capsys):
    """`--srt ADAPTER/adapter_model.safetensors` destroyed adapter weights; as root `--srt /dev/full`
    replaced the device node with a file."""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(b"weights")
    (adapter / "adapter_config.json").write_text("{}")
    assert cli_main([*narrate(tmp_path), "--srt", str(weights)]) == 2
    assert "model or adapter folder" in capsys.readouterr().err and weights.read_bytes() == b"weights"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert cli_main([*narrate(tmp_path), "--vtt", str(fifo)]) == 2
    assert "device or special file" in capsys.readouterr().err and stat.S_ISFIFO(fifo.stat().st_mode)
    if Path("/dev/null").exists():
        with pytest.raises(OutputRefused, match="device or special file"):
            check_output("/dev/null", "--srt")


def test_a_symlinked_output_writes_its_target_and_stays_a_link(tmp_path):
    """Exports once turned a symlink into a plain file."""
    from app.exports import write_text_atomic

    real = tmp_path / "real" / "talk.srt"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "talk.srt"
    link.symlink_to(real)
    target = check_output(link, "--srt")
    assert target == real.resolve()
    write_text_atomic(target, "new")
    assert link.is_symlink() and link.read_text() == "new" and real.read_text() == "new"


def test_unwritable_places_are_said_before_the_model_loads(tmp_path, capsys):
    """--srt under a file, or on a full disk, were found only at the first response."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    assert cli_main([*narrate(tmp_path), "--srt", str(a_file / "sub" / "a.srt")]) == 2
    assert "is a file, so the folder cannot be made" in capsys.readouterr().err
    with pytest.raises(OutputRefused, match="MB free"):
        check_output(tmp_path / "a.srt", "--srt", min_free_bytes=1 << 62)  # a disk that is "full"


def test_a_read_only_folder_is_said_before_the_model_loads(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: nothing to test here
            pytest.skip("running as root: permissions do not stop writes")
        assert cli_main([*narrate(tmp_path), "--srt", str(locked / "a.srt")]) == 2
        assert "cannot be written" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def test_an_export_never_replaces_the_sessions_video(tmp_path):
    from app.session import Session, SessionMeta, StepRecord
    from model.protocol import RESPONSE

    video = tmp_path / "v.mp4"
    write_video(video, 4, 4)
    before = video.read_bytes()
    session = Session(meta=SessionMeta(source=str(video)))
    session.add(StepRecord(1.0, 2.0, RESPONSE, 0.0, text="Hello."))
    with pytest.raises(OutputRefused, match="input of this run"):
        session.export(video, "srt")
    assert video.read_bytes() == before
    assert session.export(tmp_path / "v.srt").read_text().count("Hello.") == 1


def test_a_session_still_being_written_is_not_renamed_or_deleted_under_its_writer(tmp_path):
    """Renaming a session in the window while narrate still wrote it lost 30 of 40 steps and the end record."""
    from app.session import (
        SessionBusy,
        SessionLog,
        SessionMeta,
        StepRecord,
        delete_session,
        load_session,
        rename_session,
    )
    from model.protocol import SILENCE

    log = SessionLog.create(SessionMeta(source="/v/a.mp4"), tmp_path)
    log.write_step(StepRecord(0.0, 1.0, SILENCE, 0.0))
    with pytest.raises(SessionBusy, match="still being written"):
        rename_session(log.path, "Kitchen")
    with pytest.raises(SessionBusy):
        delete_session(log.path)
    for t in range(1, 40):
        log.write_step(StepRecord(float(t), t + 1.0, SILENCE, 0.0))
    log.close()
    rename_session(log.path, "Kitchen")  # done writing: now it may
    session = load_session(log.path)
    assert len(session.states) == 40 and session.ended and session.meta.title == "Kitchen"


def test_a_huge_question_goes_in_cut_with_a_warning():
    """A 100 KB question was accepted at 46,446 tokens, past the model's positions; the stream never answered again."""
    from fakes import FakeEngine

    from app.live.records import Question
    from app.live.runner import MAX_QUESTION_CHARS, LiveRunner, RunEvents

    errors = []
    runner = LiveRunner(FakeEngine(), events=RunEvents(error=errors.append))
    asked = runner.ask(Question("why " * 25_000, None, "typed"))
    assert len(asked.text) <= MAX_QUESTION_CHARS and asked.text.startswith("why why")
    assert len(errors) == 1 and not errors[0].fatal and "100,000 characters" in errors[0].message
    assert runner.ask(Question("Short one?", None, "typed")).text == "Short one?" and len(errors) == 1


def test_a_checkpoint_missing_weights_is_refused_in_one_line(tiny_ckpt, tmp_path):
    """A model.safetensors holding 5 of its 57 tensors loaded with the rest random (rc 0, meaningless answers)."""
    import shutil

    from safetensors.torch import load_file, save_file

    from model.errors import ModelLoadError
    from model.loading import load_model

    cut = tmp_path / "cut"
    shutil.copytree(tiny_ckpt, cut)
    weights = load_file(cut / "model.safetensors")
    save_file({k: weights[k] for k in list(weights)[:5]}, cut / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"incomplete: \d+ weight\(s\) missing") as err:
        load_model(cut, precision="fp32", device="cpu")
    assert "\n" not in str(err.value) and "download it again" in str(err.value)


def test_whisper_is_read_from_safetensors_only(tmp_path):
    """A Whisper folder with only pytorch_model.bin loaded a pickle, though the README says only safetensors are read."""
    import shutil

    from app.voice import VoiceError
    from app.voice.asr import Recognizer
    from model.tiny_whisper import build_tiny_whisper

    folder = build_tiny_whisper(tmp_path / "w")
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(VoiceError, match="could not be loaded"):
        Recognizer(str(folder), device="cpu").load()
    shutil.rmtree(folder)


def test_a_fifo_or_a_url_as_the_source_is_a_one_line_error(tmp_path, capsys):
    """A FIFO as --source hung forever; a URL was reported as "file not found" with its // cut to /."""
    fifo = tmp_path / "live.mp4"
    os.mkfifo(fifo)
    base = ["narrate", "--model", str(tmp_path / "no-model"), "--quiet", "--source"]
    assert cli_main([*base, str(fifo)]) == 2
    err = capsys.readouterr().err
    assert "named pipe (FIFO), not a video file" in err and err.count("\n") == 1
    assert cli_main([*base, "https://example.com/v.mp4"]) == 2
    assert "is a web address" in capsys.readouterr().err


def test_long_speech_is_synthesised_in_pieces():
    """25,000 characters of text to speech segfaulted the engine."""
    from app.voice.synth import MAX_CHUNK_CHARS, _chunks

    text = " ".join(f"Sentence number {i} says a few words." for i in range(700))  # ~25,000 characters
    pieces = _chunks(text)
    assert all(len(p) <= MAX_CHUNK_CHARS for p in pieces) and len(pieces) > 20
    assert " ".join(pieces).split() == text.split()  # nothing lost, nothing doubled
    run_on = "word " * 600  # one "sentence" longer than a piece: cut at spaces
    assert all(len(p) <= MAX_CHUNK_CHARS for p in _chunks(run_on.strip()))


# ---------------------------------------------------------------------------------------------
# Failures that degrade, not stop: a file that cannot be written mid-run (issue 23, item 2)

NO_SPACE = "No space left on device"
SRT_CUE = re.compile(r"\d+\n\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d\n")


class _FillingFile:
    """A file on a disk that fills: ``room`` more writes fit (shared by every file the stub opens), then each
    write raises ENOSPC, and closing raises it too (what was buffered cannot be flushed), as a full disk does."""

    def __init__(self, f, room: list[int]) -> None:
        self.f, self.room, self.full = f, room, False

    def write(self, data):
        if self.room[0] <= 0:
            self.full = True
            raise OSError(errno.ENOSPC, NO_SPACE)
        self.room[0] -= 1
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()

    def fileno(self) -> int:
        return self.f.fileno()

    @property
    def closed(self) -> bool:
        return self.f.closed

    def close(self) -> None:
        self.f.close()
        if self.full:
            raise OSError(errno.ENOSPC, NO_SPACE)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _disk_fills(monkeypatch, module, hit, room: int) -> None:
    """Files ``module`` opens for writing whose path ``hit`` picks lie on a disk that fills after ``room``
    writes (a stubbed writer: the real file is opened, so a 0-byte temporary file would be left behind)."""
    real_open, left = open, [room]

    def fake_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return _FillingFile(f, left) if ("w" in mode or "a" in mode) and hit(Path(path)) else f

    monkeypatch.setattr(module, "open", fake_open, raising=False)


def _demo_narrate(tmp_path: Path, *extra: str) -> list[str]:
    video = tmp_path / "clip.mp4"
    if not video.exists():
        write_video(video, 5 * 4, 4)  # 5 s: five steps, each answering (threshold 0)
    return ["narrate", "--source", str(video), "--model", "demo", "--device", "cpu", "--quiet", "--threshold", "0",
            "--max-answer-tokens", "2", *extra]  # fmt: skip


def _parts(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if ".part" in name]


def _store_records(err: str) -> list[dict]:
    """The records of the session log the run's last line names as written."""
    from app.exports import read_jsonl

    store = Path(re.findall(r"(/\S+/sessions/\S+\.jsonl)", err)[-1].rstrip(","))
    return read_jsonl(store)


@pytest.mark.parametrize("flag", ["--srt", "--vtt", "--jsonl"])
def test_an_export_that_fills_the_disk_mid_run_is_one_warning_and_the_narration_goes_on(
    tmp_path, capsys, monkeypatch, flag
):
    """--srt/--vtt on a disk that filled after the start check: narration stopped at the first response with a
    traceback and left a 0-byte .part. Now: one warning, every step still narrated and in the session, the
    other exports written, and the end says which file was not written (rc 2: a requested file is missing)."""
    import model.atomic
    from app import exports

    out = tmp_path / "out"
    files = {"--srt": out / "s.srt", "--vtt": out / "s.vtt", "--jsonl": out / "s.jsonl"}
    failing = files[flag]
    if flag == "--jsonl":  # the header and one step fit, then the disk is full
        _disk_fills(monkeypatch, exports, lambda p: p == failing, room=2)
    else:  # the first response's subtitles fit, every later rewrite fails
        _disk_fills(monkeypatch, model.atomic, lambda p: p.name.startswith(f".{failing.name}."), room=1)
    args = _demo_narrate(tmp_path, *(a for flag_, path in files.items() for a in (flag_, str(path))))
    assert cli_main(args) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(failing) in warnings[0] and NO_SPACE in warnings[0], err
    assert len(captured.out.splitlines()) == 5  # all five answers narrated
    done = next(line for line in err.splitlines() if line.startswith("done: 5 steps"))
    assert str(failing) not in done
    last = err.splitlines()[-1]
    assert last.startswith(f"error: {flag} {failing}") and NO_SPACE in last, last
    if flag != "--jsonl":
        assert last.endswith("was not written (No space left on device); it holds the subtitles of its last good write")
    for other in set(files.values()) - {failing}:  # the other exports are complete
        assert str(other) in done and other.stat().st_size > 0
    records = _store_records(done)
    assert sum(r["type"] == "step" for r in records) == 5 and records[-1]["type"] == "end"  # the session went on
    assert not _parts(out)  # no 0-byte .part left behind
    if flag == "--jsonl":
        kept = [json.loads(line) for line in failing.read_text().splitlines()]
        assert [r["type"] for r in kept] == ["session", "step"]  # what fitted, no half line


@pytest.mark.parametrize("how", ["fills mid-run", "read-only at start", "not a folder"])
def test_a_failing_session_store_is_a_warning_and_the_exports_are_still_written(tmp_path, capsys, monkeypatch, how):
    """A full disk under the session store: narration went on, then closing the log raised and the SRT, WebVTT
    and spoken track were never written; a read-only data folder: a traceback before any narration."""
    import app.session
    from app import exports

    sessions = tmp_path / "data" / "sessions"
    monkeypatch.setattr(app.session, "sessions_dir", lambda root=None: sessions)
    if how == "fills mid-run":
        _disk_fills(monkeypatch, exports, lambda p: p.parent == sessions, room=3)
    elif how == "read-only at start":
        real_folder = app.session.private_folder

        def read_only(folder):
            if Path(folder) == sessions:
                raise OSError(errno.EROFS, "Read-only file system", str(folder))
            return real_folder(folder)

        monkeypatch.setattr(app.session, "private_folder", read_only)
    else:
        sessions.parent.mkdir()
        sessions.write_text("a file where the sessions folder goes")
    srt, vtt, jsonl = tmp_path / "s.srt", tmp_path / "s.vtt", tmp_path / "s.jsonl"
    assert cli_main(_demo_narrate(tmp_path, "--srt", str(srt), "--vtt", str(vtt), "--jsonl", str(jsonl))) == 0
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(captured.out.splitlines()) == 5  # every step narrated
    assert len(SRT_CUE.findall(srt.read_text())) == 5 and vtt.read_text().count(" --> ") == 5
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]  # --jsonl holds the whole session
    assert sum(r["type"] == "step" for r in records) == 5 and records[-1]["type"] == "end"
    done = err.splitlines()[-1]
    assert done.startswith("done: 5 steps") and str(srt) in done and str(vtt) in done and str(jsonl) in done
    if how == "fills mid-run":
        assert len(warnings) == 2, err  # when it failed, and at the end: the log is incomplete
        assert NO_SPACE in warnings[0] and "the session log" in warnings[1] and "incomplete" in warnings[1]
        assert "sessions" not in done
    else:
        assert len(warnings) == 1 and f"the session store {sessions} cannot be written" in warnings[0], err
        assert ("Read-only file system" if how == "read-only at start" else "a file is in the way") in warnings[0]
        assert f"its records go to --jsonl {jsonl}" in warnings[0]
        assert "sessions" not in done
    assert not _parts(tmp_path)


def test_the_windows_runner_warns_once_when_its_session_log_fails(tmp_path, monkeypatch):
    """The window runs the same LiveRunner and SessionLog: a log that fails mid-run is one non-fatal warning in
    the message bar; the run goes on and ending it never raises."""
    import numpy as np
    from fakes import FakeEngine

    from app import exports
    from app.live.runner import LiveRunner, RunEvents
    from app.session import SessionLog, SessionMeta, load_session
    from model.protocol import RESPONSE

    _disk_fills(monkeypatch, exports, lambda p: p.suffix == ".jsonl", room=3)  # the header and two steps fit
    log = SessionLog.create(SessionMeta(source="camera"), tmp_path)
    errors, steps = [], []
    runner = LiveRunner(FakeEngine([RESPONSE]), log, RunEvents(error=errors.append, step=steps.append))
    image = np.zeros((48, 64, 3), np.uint8)
    for t in range(6):
        runner.step(image, float(t))
    runner.close()  # raised: the disk could not take what was buffered
    assert len(steps) == 6 and not runner.failed
    assert len(errors) == 1 and errors[0].where == "session" and not errors[0].fatal
    assert str(log.path) in errors[0].message and NO_SPACE in errors[0].message
    assert len(load_session(log.path).states) == 2 and not log.stored  # what fitted is kept


def test_session_logs_and_training_runs_share_one_lock_rule(tmp_path):
    """One rule, one home (model/locks.py): the session log is locked as it is (content untouched) while
    written, by the same flock the training folders use."""
    from app.session import SessionBusy, SessionLog, SessionMeta, _try_lock
    from model.locks import LockHeld, acquire

    log = SessionLog.create(SessionMeta(source="/v/a.mp4"), tmp_path)
    before = log.path.read_bytes()
    with pytest.raises(LockHeld):
        acquire(log.path, own_file=False)
    with pytest.raises(SessionBusy):
        _try_lock(log.path)
    log.close()
    lock = acquire(log.path, own_file=False)
    assert lock.held and log.path.read_bytes().startswith(before)  # nothing written into the log by locking
    lock.release()
    lock.release()  # a second release does nothing
    assert log.path.exists()  # a data file is never removed with its lock

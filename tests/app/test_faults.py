"""Fault injection (issue 23): outputs that would overwrite inputs, weights or devices, outputs that cannot be
written, damaged settings and session files. Each case names what used to happen; each must now end in a
one-line error before anything loads, or go on with a warning, and lose nothing."""

from __future__ import annotations

import os
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
    from app.voice.tts import MAX_CHUNK_CHARS, _chunks

    text = " ".join(f"Sentence number {i} says a few words." for i in range(700))  # ~25,000 characters
    pieces = _chunks(text)
    assert all(len(p) <= MAX_CHUNK_CHARS for p in pieces) and len(pieces) > 20
    assert " ".join(pieces).split() == text.split()  # nothing lost, nothing doubled
    run_on = "word " * 600  # one "sentence" longer than a piece: cut at spaces
    assert all(len(p) <= MAX_CHUNK_CHARS for p in _chunks(run_on.strip()))

"""Fault injection for training (issue 23, the training half): `train --out` on someone else's adapter, two
runs into one folder, a run killed before its first checkpoint, a full disk while a checkpoint is written,
fsync of what a run keeps, and the frame cache's permissions. Each case names what used to happen; each
now ends in one line that names the folder and what to do, and loses nothing. Through the real command
line (``app.cli.main``) on the tiny checkpoint, a few steps on the CPU."""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from pathlib import Path

import pytest
from fakes import write_video

from app.cli import main as cli_main
from model.train import checkpoint as ckpt
from model.train.config import TrainConfig
from model.train.run_folder import LOCK_FILE, TrainingError
from model.train.synthetic import make_dataset


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return folder, make_dataset(folder, 4, seed=5, size=(64, 48), max_events=1, counters=False)


def _train(clips, tiny_ckpt, out: Path, *extra: str) -> list[str]:
    folder, data = clips
    return ["train", "--data", str(data), "--video-prefix", str(folder), "--model", str(tiny_ckpt), "--out", str(out),
            "--device", "cpu", "--holdout", "0", *extra]  # fmt: skip


def _steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def _one_line_error(capsys, before_load: bool = True) -> str:
    """The error line: the only output when refused before the model loads, else the last line."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "Traceback" not in err and lines[-1].startswith("error: ") and err.count("error: ") == 1, err
    assert len(lines) == 1 or not before_load, err
    return lines[-1]


# ---------------------------------------------------------------------------------------------
# Someone else's adapter


def test_train_out_on_someone_elses_adapter_is_refused_and_kept(clips, tiny_ckpt, tmp_path, capsys):
    """`train --out` on a downloaded adapter folder silently replaced its weights and dropped its metrics."""
    theirs = tmp_path / "downloaded"
    theirs.mkdir()
    files = {"adapter_model.safetensors": b"their weights", "adapter_config.json": b"{}", "metrics.jsonl": b"{}\n"}
    for name, data in files.items():
        (theirs / name).write_bytes(data)
    for extra in ((), ("--resume",)):
        assert cli_main(_train(clips, tiny_ckpt, theirs, "--steps", "2", *extra)) == 2
        err = _one_line_error(capsys)
        assert f"--out {theirs} holds a model or adapter this app's training did not make" in err
        assert "adapter_model.safetensors" in err and "choose another --out" in err
    assert {p.name: p.read_bytes() for p in theirs.iterdir()} == files  # not a byte changed, no lock file left


def test_out_that_is_a_file_or_an_input_is_refused(clips, tiny_ckpt, tmp_path, capsys):
    folder, data = clips
    assert cli_main(_train(clips, tiny_ckpt, data, "--steps", "2")) == 2
    assert "is an input of this run" in _one_line_error(capsys)
    assert cli_main(_train(clips, tiny_ckpt, tiny_ckpt / "adapter", "--steps", "2")) == 2  # inside the base model
    assert "is an input of this run" in _one_line_error(capsys) and not (tiny_ckpt / "adapter").exists()
    (tmp_path / "notes.txt").write_text("mine")
    assert cli_main(_train(clips, tiny_ckpt, tmp_path / "notes.txt", "--steps", "2")) == 2
    assert "is a file; give a folder" in _one_line_error(capsys) and (tmp_path / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------------------------------------
# One writer per folder


def test_a_second_run_into_the_same_out_is_refused_while_the_first_runs(clips, tiny_ckpt, tmp_path, capsys):
    """Two `train` runs into one --out both reported success, with mixed checkpoints and duplicated metrics."""
    from model.train.trainer import train

    out = tmp_path / "run"
    second: list[int] = []

    def on_event(event: dict) -> None:
        if event["event"] == "step" and event["step"] == 2:  # the first run is writing: a second starts
            second.append(cli_main(_train(clips, tiny_ckpt, out, "--steps", "3")))
            second.append(cli_main(_train(clips, tiny_ckpt, out, "--resume")))

    folder, data = clips
    config = TrainConfig(data=[str(data)], video_prefix=str(folder), model=str(tiny_ckpt), out=str(out), device="cpu",
                         holdout=0.0, steps=4, save_every=2)  # fmt: skip
    first = train(config, on_event=on_event)
    assert second == [2, 2]
    err = capsys.readouterr().err
    assert err.count(f"{out} is being written by another training run (pid {os.getpid()})") == 2, err
    assert "Traceback" not in err
    assert first.status == "done" and first.step == 4 and _steps(out) == [1, 2, 3, 4]  # one run's records, once
    assert [c.step for c in ckpt.list_checkpoints(out)] == [2, 4]
    assert not (out / LOCK_FILE).exists()  # let go at the end


def test_the_lock_goes_with_a_run_that_fails(clips, tiny_ckpt, tmp_path, capsys):
    from model.locks import hold_lock

    out = tmp_path / "run"
    out.mkdir()
    (tmp_path / "empty.json").write_text("[]")
    args = ["train", "--data", str(tmp_path / "empty.json"), "--model", str(tiny_ckpt), "--out", str(out),
            "--device", "cpu"]  # fmt: skip
    assert cli_main(args) == 2 and "no usable training samples" in capsys.readouterr().err  # fails holding the lock
    assert not (out / LOCK_FILE).exists()
    with hold_lock(out / LOCK_FILE):  # free again: taken at once
        assert (out / LOCK_FILE).read_text().strip() == str(os.getpid())
    # A kill leaves the file behind (the kernel drops the lock itself): the next run takes it.
    (out / LOCK_FILE).write_text("99999999\n")
    assert cli_main(_train(clips, tiny_ckpt, out, "--steps", "1")) == 0
    assert not (out / LOCK_FILE).exists()


# ---------------------------------------------------------------------------------------------
# Killed before the first checkpoint


def _killed_before_first_checkpoint(clips, tiny_ckpt, out: Path) -> None:
    """What `train` leaves when killed at step 2 while writing its first checkpoint (due at step 4): its
    settings, two metrics records, the checkpoint's temporary folder, the lock file with the dead pid."""
    folder, data = clips
    config = TrainConfig(data=[str(data)], video_prefix=str(folder), model=str(tiny_ckpt), out=str(out), device="cpu",
                         holdout=0.0, steps=3, save_every=4, lr=0.001, accum=1)  # fmt: skip
    out.mkdir(parents=True)
    (out / "train_config.json").write_text(config.to_json())
    (out / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2)))
    partial = out / "checkpoints" / ".step-000002.part-99999999"
    partial.mkdir(parents=True)
    (partial / "adapter_model.safetensors").write_bytes(b"half")
    (out / LOCK_FILE).write_text("99999999\n")


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_afresh(clips, tiny_ckpt, tmp_path, capsys,
                                                                              caplog):  # fmt: skip
    """`train` said "use --resume", `train --resume` said "no checkpoint": only deleting files by hand got out."""
    out = tmp_path / "killed"
    _killed_before_first_checkpoint(clips, tiny_ckpt, out)
    with caplog.at_level(logging.WARNING, logger="model.train.run_folder"):
        assert cli_main(_train(clips, tiny_ckpt, out, "--resume")) == 0  # its saved settings: 3 steps
    said = [r.getMessage() for r in caplog.records if "afresh" in r.getMessage()]
    assert len(said) == 1 and f"{out} was stopped before its first checkpoint; starting it afresh" in said[0]
    assert f"adapter written to {out} (3 steps)" in capsys.readouterr().err
    assert _steps(out) == [1, 2, 3]  # the killed start's records are gone, each step once
    assert [c.step for c in ckpt.list_checkpoints(out)] == [3]
    assert not list((out / "checkpoints").glob(".*")) and not (out / LOCK_FILE).exists()  # the partial folder went


def test_messages_say_what_works(clips, tiny_ckpt, tmp_path, capsys):
    """A plain start on a killed run starts it afresh; a finished adapter with no checkpoint left is never
    "continue with --resume" (which then said "no checkpoint")."""
    out = tmp_path / "killed"
    _killed_before_first_checkpoint(clips, tiny_ckpt, out)
    assert cli_main(_train(clips, tiny_ckpt, out, "--steps", "2")) == 0
    assert _steps(out) == [1, 2] and "Traceback" not in capsys.readouterr().err
    for path in ckpt.list_checkpoints(out):  # finished; its checkpoints deleted to save space
        import shutil

        shutil.rmtree(path.path)
    assert cli_main(_train(clips, tiny_ckpt, out, "--steps", "2")) == 2
    err = _one_line_error(capsys)
    assert "already holds a finished adapter" in err and "--resume" not in err and "choose another --out" in err
    assert cli_main(_train(clips, tiny_ckpt, out, "--resume")) == 2
    assert "holds a finished adapter and no checkpoint to continue from" in _one_line_error(capsys)


# ---------------------------------------------------------------------------------------------
# A full disk


def test_a_full_disk_keeps_the_last_good_checkpoint_and_removes_the_partial_one(clips, tiny_ckpt, tmp_path, capsys,
                                                                                 monkeypatch):  # fmt: skip
    """Training on a full disk: a torch traceback, and the partial checkpoint folder stayed, keeping the disk full."""
    import safetensors.torch

    real = safetensors.torch.save_file
    calls: list[str] = []

    def full_disk(tensors, filename, *args, **kwargs):
        if "checkpoints" in Path(filename).parts:
            calls.append(str(filename))
            if len(calls) == 2:  # the second checkpoint: a few bytes, then the disk is full
                Path(filename).write_bytes(b"partial")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))
        return real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    out = tmp_path / "run"
    assert cli_main(_train(clips, tiny_ckpt, out, "--steps", "4", "--save-every", "2")) == 2
    err = _one_line_error(capsys, before_load=False)
    assert f"could not write the checkpoint of step 4 in {out} (No space left on device)" in err
    assert f"the last good checkpoint is kept ({out / 'checkpoints' / 'step-000002'})" in err
    assert "Free some space" in err and "choose another --out" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000002"]  # no partial folder
    assert not (out / ckpt.ADAPTER_WEIGHTS).exists() and not (out / LOCK_FILE).exists()
    monkeypatch.setattr(safetensors.torch, "save_file", real)  # space freed: the run continues
    assert cli_main(_train(clips, tiny_ckpt, out, "--resume")) == 0
    assert [c.step for c in ckpt.list_checkpoints(out)] == [2, 4] and (out / ckpt.ADAPTER_WEIGHTS).is_file()


def test_a_failing_final_adapter_write_leaves_no_partial_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "adapter_config.json").write_text("old")
    with pytest.raises(TrainingError, match=r"could not write the final adapter .*No space left on device.*--out"):
        with ckpt.final_folder(out) as tmp:
            (tmp / "adapter_config.json").write_text("new")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json"]
    assert (out / "adapter_config.json").read_text() == "old"


# ---------------------------------------------------------------------------------------------
# Durable: fsynced files and folders


class _AdapterConfig:
    def save_pretrained(self, folder: str) -> None:
        (Path(folder) / "adapter_config.json").write_text("{}")


def test_checkpoints_the_final_adapter_and_the_settings_are_fsynced(tmp_path, monkeypatch):
    """Checkpoints, the final adapter and train_config.json were never fsynced (safe against a kill, not
    against power loss)."""
    import torch

    import model.atomic
    from model.train.run_folder import write_settings

    synced: list[Path] = []
    for module in (ckpt, model.atomic):
        monkeypatch.setattr(module, "_fsync_file", lambda p: synced.append(Path(p)))
        monkeypatch.setattr(module, "_fsync_folder", lambda p: synced.append(Path(p)))
    out = tmp_path / "run"
    saved = ckpt.save_checkpoint(out, 3, {"w": torch.ones(2)}, _AdapterConfig(), None, None, {"total_steps": 3}, 2)
    part = out / "checkpoints" / f".step-000003.part-{os.getpid()}"
    assert {part / p.name for p in saved.path.iterdir()} | {part} <= set(synced)  # every file, the folder
    assert {out / "checkpoints", out} <= set(synced)  # and the rename into place
    synced.clear()
    with ckpt.final_folder(out) as tmp:
        (tmp / "adapter_model.safetensors").write_bytes(b"w")
        (tmp / "README.md").write_text("card")
    assert {tmp / "adapter_model.safetensors", tmp / "README.md", tmp, out} <= set(synced)
    synced.clear()
    write_settings(out, TrainConfig(out=str(out)))
    assert any(p.parent == out and p.name.startswith(".train_config.json.") for p in synced)  # its temporary file
    assert out in synced


# ---------------------------------------------------------------------------------------------
# Private: the frame cache


def test_the_frame_cache_is_owner_only(tiny_loaded, tmp_path):
    """Frames of the user's videos were cached world-readable."""
    from model.train.prepare import CacheSpec, prepare_cache
    from model.train.video import FrameCache, VideoError

    video = tmp_path / "v.mp4"
    write_video(video, 8, 4)
    root = tmp_path / "cache" / "frames"
    cache = FrameCache(root, tiny_loaded.processor)
    prepare_cache([video], CacheSpec.of(cache), workers=1, say=lambda line: None, check_space=False)
    cache.get(video)
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoError):  # a recorded failure: an entry of its own
        cache.get(tmp_path / "bad.mp4")
    other = FrameCache(tmp_path / "second", tiny_loaded.processor)  # made by the cache itself, not by prepare
    other.get(video)
    for folder in (root, tmp_path / "second"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        entries = list(folder.iterdir())
        assert entries and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in entries), entries
    assert any(p.name.endswith(".failed.json") for p in root.iterdir())

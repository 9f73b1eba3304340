"""`streamo-live train` and `streamo-live evaluate` from the terminal: runs, errors before the
model loads, Ctrl-C saving a checkpoint, resume, and the evaluation report's JSON layout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from fakes import read_until

from app.cli import main as cli_main
from model.train import checkpoint as ckpt
from model.train.synthetic import make_dataset

REPO_ARGS = {"cwd": str(__import__("pathlib").Path(__file__).resolve().parents[2])}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return folder, make_dataset(folder, 4, seed=4, size=(64, 48), max_events=1, counters=False)


def _train_args(clips, tiny_ckpt, out, *extra) -> list[str]:
    folder, data = clips
    return ["train", "--data", str(data), "--video-prefix", str(folder), "--model", str(tiny_ckpt), "--out", str(out),
            "--device", "cpu", "--holdout", "0", *extra]  # fmt: skip


def test_train_writes_an_adapter_and_says_where(clips, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "a"
    assert cli_main(_train_args(clips, tiny_ckpt, out, "--steps", "3", "--rank", "4", "--alpha", "8")) == 0
    err = capsys.readouterr().err
    assert f"adapter written to {out} (3 steps)" in err
    assert "3 steps from step 0" in err and "4 clips" in err
    card = (out / "README.md").read_text()
    assert "streamo-live train --data" in card and "--rank 4" in card  # the exact command
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    # Resuming a finished run with a longer budget continues its step count.
    assert cli_main(_train_args(clips, tiny_ckpt, out, "--resume", "--steps", "5")) == 0
    assert "5 steps from step 3" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lr", "5"], "--lr must be in (0, 1)"),
        (["--max-turns", "0"], "--max-turns must be >= 1"),
        (["--holdout", "1"], "--holdout must be in [0, 1)"),
        (["--resume"], "no checkpoint to continue from"),
        (["--fps", "2"], "Live at 2 steps a second shows half-second turns"),  # trained != what Live shows
    ],
)
def test_bad_settings_are_one_line_errors(clips, tiny_ckpt, tmp_path, capsys, extra, message):
    assert cli_main(_train_args(clips, tiny_ckpt, tmp_path / "x", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_held_out_clips_by_name_and_early_stop_from_the_command_line(clips, tiny_ckpt, tmp_path, capsys):
    folder, data = clips
    args = ["train", "--data", str(data), "--video-prefix", str(folder), "--model", str(tiny_ckpt), "--device", "cpu",
            "--steps", "2", "--eval-every", "1"]  # fmt: skip
    assert cli_main([*args, "--out", str(tmp_path / "a"), "--heldout", "nope.mp4", "--heldout", "shapes_000.mp4"]) == 2
    err = capsys.readouterr().err
    assert "not among the usable clips: 'nope.mp4'" in err and "Traceback" not in err
    assert cli_main([*args, "--out", str(tmp_path / "b"), "--holdout", "0", "--early-stop", "2"]) == 2
    assert "--early-stop needs held-out clips" in capsys.readouterr().err

    out = tmp_path / "c"
    assert cli_main([*args, "--out", str(out), "--heldout", "videos/shapes_002.mp4", "--early-stop", "5"]) == 0
    err = capsys.readouterr().err
    assert "3 clips, 1 held out" in err and "held out: shapes_002.mp4" in err
    assert "warning: Only 1 clip is held out" in err
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["heldout"] == ["videos/shapes_002.mp4"] and saved["early_stop"] == 5 and saved["min_heldout"] == 1


def test_no_usable_data_names_the_problems(tiny_ckpt, tmp_path, capsys):
    (tmp_path / "broken.json").write_text("[{]")
    args = ["train", "--data", str(tmp_path / "broken.json"), "--model", str(tiny_ckpt), "--out", str(tmp_path / "o"),
            "--device", "cpu"]  # fmt: skip
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "broken.json: not valid JSON" in err and "no usable training samples" in err


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_saves_a_checkpoint_and_resume_continues(clips, tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", *_train_args(clips, tiny_ckpt, out, "--steps", "5000")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **REPO_ARGS,
    )  # fmt: skip
    metrics = out / "metrics.jsonl"
    try:
        read_until(proc.stderr, lambda line: line.startswith("step 10/"))  # the progress line every 10 steps
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Continue with --resume" in err and "Traceback" not in err
    latest = ckpt.latest_checkpoint(out)
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert latest is not None and 10 <= latest.step < 5000 and steps == list(range(1, latest.step + 1))
    assert cli_main(_train_args(clips, tiny_ckpt, out, "--resume", "--steps", str(latest.step + 2))) == 0
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == list(range(1, latest.step + 3))


def test_evaluate_prints_the_table_and_writes_the_report(clips, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "a"
    assert cli_main(_train_args(clips, tiny_ckpt, out, "--steps", "2")) == 0
    folder, data = clips
    report_path = tmp_path / "eval" / "report.json"
    args = ["evaluate", "--data", str(data), "--video-prefix", str(folder), "--model", str(tiny_ckpt),
            "--adapter", str(out), "--compare", "--device", "cpu", "--json", str(report_path)]  # fmt: skip
    capsys.readouterr()
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert "base F1" in printed and "adapter F1" in printed and "macro-F1" in printed
    report = json.loads(report_path.read_text())
    for key in ("states", "macro_f1", "state_accuracy", "timing_error_s", "answer_f1", "clips"):
        assert key in report
    assert set(report["states"]) == {"</Silence>", "</Standby>", "</Response>"}
    assert set(report["states"]["</Silence>"]) == {"precision", "recall", "f1", "support"}
    assert len(report["clips"]) == 4 and report["adapter"] == str(out) and report["base"]["adapter"] is None
    seconds = sum(c["seconds"] for c in report["clips"])
    assert sum(s["support"] for s in report["states"].values()) == seconds
    # The cautions in plain words (4 clips, fewer than 5 labelled answers) in the output and the JSON.
    assert report["cautions"] and report["cautions"][0].startswith("only 4 clips and")
    assert f"caution: {report['cautions'][0]}" in printed
    # Per clip: the labelled strip with the base's and the adapter's under it, and the answers.
    strips = {"</Silence>": ".", "</Standby>": "-", "</Response>": "!"}
    lines = printed.splitlines()
    for entry, base_entry in zip(report["clips"], report["base"]["clips"], strict=True):
        assert len(entry["labelled_states"]) == len(entry["predicted_states"]) == entry["seconds"]
        assert all(isinstance(a["second"], int) for a in entry["answers"])
        head = lines.index(next(line for line in lines if line.startswith(f"{entry['video']} (")))
        rows = {line.split()[0]: line.split()[1] for line in lines[head + 3 : head + 6]}
        assert rows == {
            "labelled": "".join(strips[s] for s in entry["labelled_states"]),
            "base": "".join(strips[s] for s in base_entry["predicted_states"]),
            "adapter": "".join(strips[s] for s in entry["predicted_states"]),
        }
    assert printed.count("  answers:") == 4
    labelled_answer = next(a for e in report["clips"] for a in e["answers"] if a["labelled"])
    assert any(line.split()[:1] == [str(labelled_answer["second"])] and labelled_answer["labelled"].split()[0] in line
               for line in lines)  # fmt: skip

    assert cli_main(["evaluate", "--data", str(data), "--model", str(tiny_ckpt), "--compare"]) == 2
    assert "--compare needs --adapter" in capsys.readouterr().err


def _steps_and_adapter(out):
    """(checkpoint steps, the final adapter's bytes) of a run folder."""
    return [c.step for c in ckpt.list_checkpoints(out)], (out / "adapter_model.safetensors").read_bytes()


def test_resume_continues_the_copy_it_is_given_and_leaves_the_original(clips, tiny_ckpt, tmp_path, capsys):
    import shutil

    original = tmp_path / "original"
    assert cli_main(_train_args(clips, tiny_ckpt, original, "--steps", "3")) == 0
    before = _steps_and_adapter(original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    assert cli_main(_train_args(clips, tiny_ckpt, copy, "--resume", "--steps", "5")) == 0
    assert f"adapter written to {copy} (5 steps)" in capsys.readouterr().err
    assert ckpt.latest_checkpoint(copy).step == 5
    assert _steps_and_adapter(original) == before  # the original run is untouched
    assert json.loads((copy / "train_config.json").read_text())["out"] == str(copy)


def test_resume_of_a_moved_run_with_its_data_moved_too(clips, tiny_ckpt, tmp_path, capsys):
    import shutil

    folder, data = clips
    data_copy = tmp_path / "data"
    shutil.copytree(folder, data_copy)
    first = tmp_path / "first"
    args = ["train", "--data", str(data_copy / data.name), "--video-prefix", str(data_copy), "--model", str(tiny_ckpt),
            "--device", "cpu", "--holdout", "0"]  # fmt: skip
    assert cli_main([*args, "--out", str(first), "--steps", "3"]) == 0
    moved, moved_data = tmp_path / "moved", tmp_path / "data-moved"
    first.rename(moved)
    data_copy.rename(moved_data)  # the saved paths are gone: the ones given now are used
    assert cli_main(["train", "--data", str(moved_data / data.name), "--video-prefix", str(moved_data), "--model",
                     str(tiny_ckpt), "--device", "cpu", "--out", str(moved), "--resume", "--steps", "5"]) == 0  # fmt: skip
    assert "5 steps from step 3" in capsys.readouterr().err
    assert ckpt.latest_checkpoint(moved).step == 5 and not first.exists()
    saved = json.loads((moved / "train_config.json").read_text())
    assert saved["data"] == [str(moved_data / data.name)] and saved["video_prefix"] == str(moved_data)


def test_a_run_started_with_relative_paths_resumes_from_another_folder(clips, tiny_ckpt, tmp_path, capsys,
                                                                        monkeypatch):  # fmt: skip
    import shutil

    folder, data = clips
    work = tmp_path / "work"
    shutil.copytree(folder, work / "clips")
    monkeypatch.chdir(work)
    args = ["train", "--data", f"clips/{data.name}", "--video-prefix", "clips", "--model", str(tiny_ckpt),
            "--device", "cpu", "--holdout", "0", "--out", "run"]  # fmt: skip
    assert cli_main([*args, "--steps", "3"]) == 0
    saved = json.loads((work / "run" / "train_config.json").read_text())
    assert saved["data"] == [str(work / "clips" / data.name)] and saved["out"] == str(work / "run")  # absolute
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli_main(["train", "--out", str(work / "run"), "--resume", "--steps", "5", "--data", str(work / "clips"),
                     "--model", str(tiny_ckpt), "--device", "cpu"]) == 0  # fmt: skip
    assert "5 steps from step 3" in capsys.readouterr().err
    assert ckpt.latest_checkpoint(work / "run").step == 5 and not (elsewhere / "run").exists()


def test_the_active_model_is_named_with_its_adapter(clips, tmp_path, capsys, monkeypatch):
    """A user's adapter on the demo base is the user's, not "demo shapes model": named in narrate's
    header and in the session record (the status bar uses the same label)."""
    from model.catalog import active_model_label
    from model.train.demo import demo_adapter_dir

    assert active_model_label("demo") == "demo model (random)"
    assert active_model_label("demo", str(demo_adapter_dir())) == "demo shapes model"
    assert (
        active_model_label("Qwen/Qwen2.5-VL-3B-Instruct", "/x/my-clips") == "Qwen2.5-VL-3B-Instruct + adapter my-clips"
    )

    folder, data = clips
    adapter = tmp_path / "my-clips"
    assert cli_main(["train", "--data", str(data), "--video-prefix", str(folder), "--model", "demo", "--out",
                     str(adapter), "--device", "cpu", "--holdout", "0", "--steps", "2"]) == 0  # fmt: skip
    capsys.readouterr()
    jsonl = tmp_path / "steps.jsonl"
    video = next((folder / "videos").rglob("*.mp4"))
    assert cli_main(["narrate", "--source", str(video), "--model", "demo", "--adapter", str(adapter),
                     "--jsonl", str(jsonl), "--quiet"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    # with its card in one line: the steps (no evaluation on the card yet)
    assert "model: demo + adapter my-clips (2 steps)" in err and "demo shapes model" not in err
    session = json.loads(jsonl.read_text().splitlines()[0])
    assert session["type"] == "session" and session["model"] == "demo + adapter my-clips (2 steps)"

    from model.adapters import adapter_summary, read_adapter
    from model.train.lora import card_with_evaluation

    report = {"macro_f1": 0.5, "state_accuracy": 0.5, "answer_f1": None, "timing_error_s": None}
    card = adapter / "README.md"
    card.write_text(card_with_evaluation(card.read_text(), {"base": report, "adapter": {**report, "macro_f1": 0.875},
                                                            "split": "heldout", "clips": ["a", "b"]}))  # fmt: skip
    assert adapter_summary(adapter) == "2 steps · macro-F1 0.50 -> 0.88 on 2 held-out clips"
    assert (
        active_model_label("demo", str(adapter), card=True) == f"demo + adapter my-clips ({adapter_summary(adapter)})"
    )
    assert adapter_summary(adapter) in read_adapter(adapter).summary()  # the model manager's list

"""Data-parallel training through accelerate, on this CPU: two processes (gloo) see different windows,
their synced gradients and parameters agree after every step, and one adapter comes out.

accelerate's own ``--cpu`` flag starts a single process (its simple launcher), so the two CPU
processes are started the way a multi-GPU run is (``--multi_gpu --num_processes 2``) with the
trainer told ``--device cpu``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from model.train import checkpoint as ckpt
from model.train.synthetic import make_dataset

REPO = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_share_the_data_and_agree(tiny_ckpt, tmp_path):
    data = make_dataset(tmp_path / "clips", 8, seed=2, size=(64, 48), max_events=1, counters=False)
    out, trace = tmp_path / "adapter", tmp_path / "trace"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        "-m", "app.cli", "train", "--data", str(data), "--video-prefix", str(tmp_path / "clips"),
        "--model", str(tiny_ckpt), "--out", str(out), "--steps", "3", "--holdout", "0", "--device", "cpu",
        "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    env = {**os.environ, "STREAMO_TRAIN_TRACE": str(trace), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stderr
    assert proc.stderr.count("adapter written to") == 1  # the main process reports

    ranks = [
        [json.loads(line) for line in (tmp_path / f"trace.rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)
    ]
    assert [r["step"] for r in ranks[0]] == [r["step"] for r in ranks[1]] == [1, 2, 3]
    for a, b in zip(*ranks, strict=True):
        assert not set(a["windows"]) & set(b["windows"]), "both processes trained on the same window"
        assert a["grad_sq"] == b["grad_sq"] and a["grad_sq"] > 0  # the all-reduced gradients agree
        assert (a["param_sum"], a["param_sq"]) == (b["param_sum"], b["param_sq"])  # and so do the weights
    seen = {w for r in ranks for rec in r for w in rec["windows"]}
    assert len(seen) == 6  # 3 steps x 2 processes: 6 different windows of the 8 clips

    # One adapter, one set of checkpoints and one metrics file, written by the main process only.
    assert (out / "adapter_model.safetensors").is_file() and (out / "README.md").is_file()
    assert [c.step for c in ckpt.list_checkpoints(out)] == [2, 3]
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert json.loads((out / "checkpoints" / "step-000003" / "trainer_state.json").read_text())["processes"] == 2
    leftovers = [p.name for p in out.iterdir() if ".part" in p.name]
    assert not leftovers

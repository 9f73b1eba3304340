"""Data-parallel and sharded training through accelerate, on this CPU, on the rehearsal set
(model/train/rehearsal.py: nested folders, raw and stream annotations, broken videos): two-process
`data prepare`, then two-process training. No rank waits at a barrier while another decodes
(timestamps of every barrier and decode), the two processes see different windows and agree after
every step, and the adapter equals a one-process run on the same data and seed with the
accumulation doubled. The FSDP config (configs/accelerate/fsdp.yaml) gives the same adapter.

accelerate's own ``--cpu`` flag starts a single process (its simple launcher), so the two CPU
processes are started the way a multi-GPU run is (``--multi_gpu --num_processes 2``) with the
trainer told ``--device cpu``. Every launch runs ``dist_cli.py``: app.cli with the test-only wait
trace, and FSDP forced on for the CPU (accelerate enables it only on GPU backends).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from app.cli import main
from model.train import checkpoint as ckpt
from model.train.rehearsal import write_rehearsal_set

REPO = Path(__file__).resolve().parents[3]
DIST_CLI = Path(__file__).with_name("dist_cli.py")
CLIPS, BROKEN = 24, 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], env: dict[str, str] | None = None, config_file: Path | None = None):
    """``accelerate launch`` of two CPU processes running ``app.cli args``; fails the test unless it exits 0."""
    how = ["--config_file", str(config_file)] if config_file else ["--multi_gpu"]
    command = [
        sys.executable, "-m", "accelerate.commands.launch", *how, "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        str(DIST_CLI), *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def records(prefix: Path, rank: int) -> list[dict]:
    path = Path(f"{prefix}.rank{rank}.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def same_adapter(a: Path, b: Path) -> None:
    x, y = load_file(str(a / ckpt.ADAPTER_WEIGHTS)), load_file(str(b / ckpt.ADAPTER_WEIGHTS))
    assert x.keys() == y.keys()
    for key in x:  # measured: bit-identical here (fp32, one thread); the tolerance allows other reduction orders
        torch.testing.assert_close(x[key], y[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_ckpt):
    """The rehearsal set through two-process prepare and training, and the one-process reference."""
    root = tmp_path_factory.mktemp("distributed")
    made = write_rehearsal_set(root / "set", n_clips=CLIPS, broken=BROKEN)
    common = ["--data", str(made.root / "annotations" / "raw"), "--data", str(made.root / "annotations" / "stream"),
              "--video-prefix", str(made.root), "--model", str(tiny_ckpt), "--cache-dir", str(root / "cache")]  # fmt: skip
    prepared = launch(["data", "prepare", *common, "--workers", "1"],
                      env={"STREAMO_PREPARE_TRACE": str(root / "prep"), "STREAMO_WAIT_TRACE": str(root / "prep-wait")})  # fmt: skip
    # Same data, seed and effective batch: 2 processes x accum 1 here, 1 process x accum 2 below.
    # No LoRA dropout: each process draws its own masks, so with dropout the runs differ by design.
    train = [*common, "--steps", "3", "--holdout", "0", "--device", "cpu", "--dropout", "0", "--seed", "0"]
    trained = launch(["train", *train, "--out", str(root / "two"), "--accum", "1"],
                     env={"STREAMO_TRAIN_TRACE": str(root / "train"), "STREAMO_PREPARE_TRACE": str(root / "train-prep"),
                          "STREAMO_WAIT_TRACE": str(root / "train-wait")})  # fmt: skip
    assert main(["train", *train, "--out", str(root / "one"), "--accum", "2"]) == 0
    return SimpleNamespace(root=root, made=made, train=train, prepared=prepared, trained=trained)


@pytest.mark.slow
def test_prepare_then_training_no_rank_waits_on_a_decode(runs):
    root = runs.root
    assert runs.prepared.stdout.count(f"{CLIPS - BROKEN} of {CLIPS} videos are in the frame cache") == 1
    # data prepare: each rank decodes its own share (the product's trace), every video once...
    shares = [{r["video"] for r in records(root / "prep", rank)} for rank in (0, 1)]
    assert shares[0] and shares[1] and not shares[0] & shares[1]
    assert shares[0] | shares[1] == {str(v) for v in runs.made.videos}
    # ...and waits only after it: every decode of a rank ends before that rank's one barrier begins.
    for rank in (0, 1):
        events = records(root / "prep-wait", rank)
        decodes = [e for e in events if e["event"] == "decode"]
        barriers = [e for e in events if e["event"] == "barrier"]
        assert len(decodes) == len(shares[rank]) and len(barriers) == 1
        assert max(d["end"] for d in decodes) <= barriers[0]["start"]
    # training on the prepared cache decodes nothing, on any rank, so no barrier waits on a decode.
    waits = [e for rank in (0, 1) for e in records(root / "train-wait", rank)]
    assert [e for e in waits if e["event"] == "barrier"] and not [e for e in waits if e["event"] == "decode"]
    assert not records(root / "train-prep", 0) and not records(root / "train-prep", 1)


@pytest.mark.slow
def test_two_processes_share_the_data_and_equal_one_process(runs):
    proc, out = runs.trained, runs.root / "two"
    assert "2 process(es)" in proc.stderr
    assert proc.stderr.count("adapter written to") == 1  # the main process reports
    ranks = [records(runs.root / "train", rank) for rank in (0, 1)]
    assert [r["step"] for r in ranks[0]] == [r["step"] for r in ranks[1]] == [1, 2, 3]
    for a, b in zip(*ranks, strict=True):
        assert not set(a["windows"]) & set(b["windows"]), "both processes trained on the same window"
        assert a["grad_sq"] == b["grad_sq"] and a["grad_sq"] > 0  # the all-reduced gradients agree
        assert (a["param_sum"], a["param_sq"]) == (b["param_sum"], b["param_sq"])  # and so do the weights
    assert len({w for r in ranks for rec in r for w in rec["windows"]}) == 6  # 3 steps x 2 processes

    # One adapter, one set of checkpoints and one metrics file, written by the main process only.
    assert (out / "adapter_model.safetensors").is_file() and (out / "README.md").is_file()
    assert [c.step for c in ckpt.list_checkpoints(out)] == [2, 3]
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert json.loads((out / "checkpoints" / "step-000003" / "trainer_state.json").read_text())["processes"] == 2
    assert not [p.name for p in out.iterdir() if ".part" in p.name]
    same_adapter(out, runs.root / "one")  # = one process, accumulation 2


@pytest.mark.slow
def test_fsdp_config_trains_the_same_adapter(runs):
    """configs/accelerate/fsdp.yaml (FSDP2: fully_shard per decoder layer) on two CPU processes over
    gloo, in fp32 (the sharded default is bf16, which the CPU reference is not)."""
    out = runs.root / "fsdp"
    proc = launch(["train", *runs.train, "--out", str(out), "--accum", "1", "--precision", "fp32"],
                  env={"STREAMO_FORCE_FSDP": "1", "STREAMO_TRAIN_TRACE": str(runs.root / "fsdp")},
                  config_file=REPO / "configs" / "accelerate" / "fsdp.yaml")  # fmt: skip
    assert "sharding: FSDP2 over 2 processes, wrapping Qwen2_5_VLDecoderLayer" in proc.stderr
    ranks = [records(runs.root / "fsdp", rank) for rank in (0, 1)]
    for a, b in zip(*ranks, strict=True):  # the sharded weights gathered whole agree on both processes
        assert (a["param_sum"], a["param_sq"]) == (b["param_sum"], b["param_sq"])
    assert [c.step for c in ckpt.list_checkpoints(out)] == [2, 3]
    same_adapter(out, runs.root / "one")

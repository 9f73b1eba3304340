"""bench/bench_kernels.py: exits 0 saying so without a GPU, and its measuring code runs end to end (tiny shapes,
Triton interpreter, `--dry-run-cpu`). Subprocesses: the benchmark decides compiled vs interpreted kernels itself."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[3]


def _bench(*args: str, interpret: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    cmd = [sys.executable, "-m", "bench.bench_kernels", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU exit; a GPU runs the real benchmark")
def test_without_gpu_says_so_and_exits_0():
    proc = _bench(interpret=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no CUDA GPU" in proc.stdout


@pytest.mark.slow
def test_dry_run_exercises_every_table(tmp_path):
    out = tmp_path / "dry.json"
    proc = _bench("--dry-run-cpu", "--json", str(out), interpret=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    rows = res["models"]["tiny"]["rows"]
    ops = {r["op"] for r in rows}
    assert {"nf4 matvec", "nf4 matmul M=19", "rmsnorm", "add+rmsnorm", "silu*mul", "state head"} <= ops, ops
    assert {r["impl"] for r in rows if r["op"] == "nf4 matvec"} == {"triton", "bitsandbytes", "bf16 cuBLAS"}
    for r in rows:
        assert r["ms"] > 0 and r["gbps"] > 0, r
        if "rel_err_vs_bnb" in r["extra"]:  # the benchmarked kernel computes what bitsandbytes computes
            assert r["extra"]["rel_err_vs_bnb"] < 5e-3, r
    assert "targets: not evaluated (dry run)" in proc.stdout

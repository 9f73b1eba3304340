"""bench/gpu_check.py without a GPU: --describe (meta-device sizes), the dry run of every part at
tiny shapes on the CPU (the same code a GPU run executes), and no PySide6 anywhere in its imports."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=900)


def test_describe_prints_the_published_sizes():
    p = _run("-m", "bench.gpu_check", "--describe")
    assert p.returncode == 0, p.stderr
    for hub_id, total in (("Qwen/Qwen2.5-VL-3B-Instruct", "3,754,622,976"), ("Qwen/Qwen2.5-VL-7B-Instruct", "8,292,166,656"),
                          ("openai/whisper-base", "72,593,920"), ("openai/whisper-small", "241,734,912")):  # fmt: skip
        (line,) = [ln for ln in p.stdout.splitlines() if ln.startswith(hub_id)]
        assert f"{total} = " in line, line


def test_the_check_imports_without_pyside6():
    code = (
        "import sys; sys.modules['PySide6'] = None\n"  # any import of PySide6 now raises ImportError
        "import bench.gpu_check, bench.bench_kernels, bench.bench_train, bench.bench_voice, model.real_shapes\n"
        "import model.kernels.selfcheck, model.loading, model.engine, model.train.trainer, app.voice.input, app.voice.asr\n"
        "print('ok')"
    )
    p = _run("-c", code)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]


@pytest.mark.slow
def test_dry_run_runs_every_part(tmp_path):
    p = _run("-m", "bench.gpu_check", "--dry-run", "--out", str(tmp_path), STREAMO_LIVE_DATA=str(tmp_path / "data"))
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert data["dry_run"] is True
    res = data["results"]
    assert set(res) == {"selfcheck", "kernels", "engine", "memory", "train", "voice", "vision"}
    assert not any("error" in v for v in res.values())
    assert res["selfcheck"]["failed"] == {}
    eng = res["engine"]["tiny"]
    assert eng["nf4_kernels"]["path"].startswith("triton (") and eng["nf4_bnb"]["path"] == "bitsandbytes"
    assert all(eng[k]["silent_ms"] > 0 for k in ("nf4_kernels", "nf4_bnb", "bf16"))
    assert set(eng["per_second_ms"]) == {"4", "8"}
    memory = {k: v for k, v in res["memory"].items() if k != "seconds"}  # each part also records its seconds
    assert memory and all(v["fits"] for v in memory.values())
    train = {k: v for k, v in res["train"].items() if k != "seconds"}
    assert train and all(r["s_per_step"] > 0 for r in train.values())
    assert res["vision"]["tiny"]["frames_per_s_batch8"] > 0
    md = (tmp_path / "gpu_check.md").read_text()
    assert "DRY RUN" in md and "| engine | tiny silent second" in md

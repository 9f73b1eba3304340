"""OVO-Bench on several processes: the videos split by whole video and balanced by queries, each
process's part file written atomically, the main process's merge equal to a single-process run,
and --resume across a changed number of processes.

Processes are simulated in one interpreter (one store per process, the same files on disk) for the
resume cases, and started for real by ``accelerate launch`` for the two-process check. accelerate's
``--cpu`` flag starts ONE process (its simple launcher), so two CPU processes are launched as a
multi-GPU run is (``--multi_gpu --num_processes 2``) with the benchmark told ``--device cpu``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from ovo_testdata import ovo_entries, write_ovo

import model.atomic
from app.benchmark.ovo_data import queries_for
from app.benchmark.ovo_run import run_benchmark, share_of
from app.benchmark.ovo_score import score_results
from app.benchmark.ovo_store import RunStore, StoreError, outside, part_paths
from app.cli import main as cli_main
from model.engine_types import EngineOptions

REPO = Path(__file__).resolve().parents[3]
SETTINGS = {"protocol": "offline", "fps": 1.0, "model": "tiny"}
OPTIONS = EngineOptions(task="question", max_answer_tokens=6)


def _queries(entries):
    return [q for i, e in enumerate(entries) for q in queries_for(e, i)]


def test_share_splits_by_whole_video_balanced_by_queries():
    qs = _queries(ovo_entries())  # COIN: 5 queries, Ego4D: 4, REC: 3
    for n in (1, 2, 3, 5):
        shares = [share_of(qs, r, n) for r in range(n)]
        assert sorted(q.key for s in shares for q in s) == sorted(q.key for q in qs)  # each query once
        owners = {q.video: r for r, s in enumerate(shares) for q in s}
        assert all(owners[q.video] == r for r, s in enumerate(shares) for q in s)  # a video in one share
        assert [share_of(qs, r, n) for r in range(n)] == shares  # every process computes the same split
    assert [len(share_of(qs, r, 2)) for r in range(2)] == [5, 7]  # COIN | Ego4D + REC
    assert [len(share_of(qs, r, 3)) for r in range(3)] == [5, 4, 3]
    assert [len(share_of(qs, r, 5)) for r in range(5)] == [5, 4, 3, 0, 0]  # more processes than videos
    with pytest.raises(ValueError, match="process 2 of 2"):
        share_of(qs, 2, 2)


class _Recorder:
    """on_event: the keys a process ran; sets ``stop`` after ``stop_after`` of them (a kill)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.keys: list[str] = []
        self.stop = threading.Event()
        self.stop_after = stop_after

    def __call__(self, event: dict) -> None:
        if event["event"] == "query":
            self.keys.append(event["key"])
            if self.stop_after is not None and len(self.keys) >= self.stop_after:
                self.stop.set()


def _run(loaded, store, queries, videos, share=(0, 1), stop_after=None) -> list[str]:
    rec = _Recorder(stop_after)
    run_benchmark(loaded, queries, store, videos, "offline", OPTIONS, on_event=rec, stop=rec.stop, share=share)
    return rec.keys


def _stores(out, entries, processes, resume):
    """One store per process, all made before any of them writes (as the processes' start-up wait ensures)."""
    if processes == 1:
        return [RunStore(out, entries, SETTINGS, resume=resume)]
    return [RunStore(out, entries, SETTINGS, resume=resume, part=f"{r}of{processes}-t") for r in range(processes)]


@pytest.fixture(scope="module")
def reference(tiny_loaded, ovo_videos_procs):
    """A single-process run of every query: its results file and responses."""
    _, videos, entries = ovo_videos_procs
    out = ovo_videos_procs[0].parent / "one" / "RESULTS.json"
    (store,) = _stores(out, entries, 1, resume=False)
    _run(tiny_loaded, store, _queries(entries), videos)
    return out.read_text(), dict(store.responses)


@pytest.fixture(scope="module")
def ovo_videos_procs(tmp_path_factory):
    return write_ovo(tmp_path_factory.mktemp("ovo"))


def _killed_two_process_run(loaded, out, videos, entries) -> set[str]:
    """Process 0 finishes its share, process 1 is killed after one query: no merge, two parts."""
    queries = _queries(entries)
    stores = _stores(out, entries, 2, resume=False)
    done = _run(loaded, stores[0], queries, videos, (0, 2))
    done += _run(loaded, stores[1], queries, videos, (1, 2), stop_after=1)
    assert len(part_paths(out)) == 2 and not out.exists() and not outside(out, ".run.json").exists()
    return set(done)


@pytest.mark.parametrize("processes", [3, 1])
def test_resume_with_another_process_count_skips_finished_queries(
    tiny_loaded, ovo_videos_procs, reference, tmp_path, processes
):
    _, videos, entries = ovo_videos_procs
    queries = _queries(entries)
    out = tmp_path / "res" / "RESULTS.json"
    finished = _killed_two_process_run(tiny_loaded, out, videos, entries)
    assert 5 < len(finished) < len(queries)
    # Without --resume the parts are a run to continue, never overwritten.
    with pytest.raises(StoreError, match=r"part-0of2-t\.json exists: add --resume"):
        RunStore(out, entries, SETTINGS, resume=False)

    stores = _stores(out, entries, processes, resume=True)
    ran = [_run(tiny_loaded, s, queries, videos, (r, processes)) for r, s in enumerate(stores)]
    assert sorted(k for keys in ran for k in keys) == sorted(q.key for q in queries if q.key not in finished)
    if processes > 1:
        assert out.exists() is False  # the processes write parts only, until the merge
        stores[0].merge_parts()
    assert not part_paths(out)  # merged into the run file and deleted
    assert out.read_text() == reference[0]  # the single-process results file, byte for byte
    run = json.loads(outside(out, ".run.json").read_text())
    assert run["responses"] == reference[1] and not run["errors"]
    statuses = [(r["process"], r["processes"], r["status"]) for r in run["info"]["runs"]]
    assert statuses[:2] == [(0, 2, "done"), (1, 2, "stopped")]
    assert statuses[2:] == [(r, processes, "done") for r in range(processes)]


def test_merged_parts_score_as_one_process(tiny_loaded, ovo_videos_procs, reference, tmp_path):
    _, videos, entries = ovo_videos_procs
    out = tmp_path / "res" / "RESULTS.json"
    stores = _stores(out, entries, 2, resume=False)
    for r, store in enumerate(stores):
        _run(tiny_loaded, store, _queries(entries), videos, (r, 2))
    parts = part_paths(out)
    assert [json.loads(p.read_text())["info"]["runs"][0]["process"] for p in parts] == [0, 1]
    assert sorted(k for p in parts for k in json.loads(p.read_text())["responses"]) == sorted(reference[1])
    stores[0].merge_parts()
    assert out.read_text() == reference[0]
    assert score_results(json.loads(out.read_text())) == score_results(json.loads(reference[0]))


def test_a_part_file_is_never_half_written(tiny_loaded, ovo_videos_procs, tmp_path, monkeypatch):
    """The write of a part dies after its bytes went out, before the rename: the part on disk is the
    previous whole one, and no temporary file is left."""
    _, videos, entries = ovo_videos_procs
    out = tmp_path / "res" / "RESULTS.json"
    (store, _) = _stores(out, entries, 2, resume=False)
    writes = {"n": 0}
    real_fsync = model.atomic._fsync_file

    def dying_fsync(path):
        writes["n"] += 1
        if writes["n"] >= 2:  # the disk is full from the second write on
            raise OSError(28, "No space left on device")
        real_fsync(path)

    monkeypatch.setattr(model.atomic, "_fsync_file", dying_fsync)
    with pytest.raises(StoreError, match=r"cannot write .*part-0of2-t\.json"):
        _run(tiny_loaded, store, _queries(entries), videos, (0, 2))
    (part,) = part_paths(out)
    kept = json.loads(part.read_text())
    assert len(kept["responses"]) == 1  # the first query's part, whole
    assert [p.name for p in part.parent.iterdir() if p.name.endswith(".part")] == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_write_the_results_of_one(ovo_videos_procs, tiny_ckpt, tmp_path, capsys):
    anno, videos, _ = ovo_videos_procs
    args = ["benchmark", "ovo", "--anno", str(anno), "--videos", str(videos), "--model", str(tiny_ckpt),
            "--device", "cpu", "--max-answer-tokens", "8"]  # fmt: skip
    one, two = tmp_path / "one" / "RESULTS.json", tmp_path / "two" / "RESULTS.json"
    assert cli_main([*args, "--out", str(one)]) == 0
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()), "-m", "app.cli", *args, "--out", str(two),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Each process ran its share of the videos; the main one merged and scored once.
    assert "process 0/2: 5 queries on 1 videos to run" in proc.stderr
    assert "process 1/2: 7 queries on 2 videos to run" in proc.stderr
    assert proc.stderr.count("wrote ") == 1 and proc.stdout.count("Total avg.") == 1
    # The same files as one process: results byte for byte, the same scores, the same run record.
    assert two.read_text() == one.read_text()
    assert outside(two, ".scores.json").read_text() == outside(one, ".scores.json").read_text()
    run1, run2 = (json.loads(outside(p, ".run.json").read_text()) for p in (one, two))
    for key in ("settings", "responses", "errors", "queries"):
        assert run2[key] == run1[key], key
    assert [(r["process"], r["queries"]) for r in run2["info"]["runs"]] == [(0, 5), (1, 7)]
    assert not part_paths(two) and [p.name for p in two.parent.iterdir()] == ["RESULTS.json"]

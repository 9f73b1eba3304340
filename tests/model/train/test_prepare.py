"""Frame preparation as its own step (model/train/prepare.py, `streamo-live data prepare`): a pool
fills the same cache as one process, a second run decodes nothing, a killed run resumes, unreadable
videos are named, ranks share the videos (each decoded once), and training decodes nothing inside a
barrier. On the rehearsal set (model/train/rehearsal.py): nested folders, raw and stream, some broken."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from model.train import prepare as PR
from model.train.data import load_clips
from model.train.prepare import CacheSpec, PrepareError, annotation_videos, prepare_cache, shard, unreadable
from model.train.rehearsal import write_rehearsal_set
from model.train.video import FrameCache
from model.video_probe import inspect_video

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """14 clips of 2-3 s at 64x48, three of them broken (empty, cut off, random bytes)."""
    return write_rehearsal_set(tmp_path_factory.mktemp("rehearsal"), n_clips=14, broken=3)


@pytest.fixture(scope="module")
def spec_of(tiny_loaded):
    def make(root: Path) -> CacheSpec:
        return CacheSpec.of(FrameCache(root, tiny_loaded.processor, 1.0, tiny_loaded.min_pixels,
                                       tiny_loaded.max_pixels))  # fmt: skip

    return make


def _data(r) -> list[str]:
    return [str(r.root / "annotations" / "raw"), str(r.root / "annotations" / "stream")]


def _snapshot(root: Path) -> dict[str, object]:
    """Every entry of a cache: frames as arrays, metadata and failures as JSON."""
    out: dict[str, object] = {}
    for p in sorted(root.iterdir()):
        out[p.name] = np.load(p) if p.suffix == ".npy" else json.loads(p.read_text())
    return out


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    return all(np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k] for k in a)


def _quiet(line: str) -> None:
    pass


def test_rehearsal_set_has_the_release_layout(rehearsal):
    videos, issues = annotation_videos(_data(rehearsal), rehearsal.root)
    assert not issues and sorted(videos) == sorted(rehearsal.videos) and len(videos) == 14
    assert all(len(v.relative_to(rehearsal.root).parts) == 4 for v in videos)  # videos/<source>/<part>/x.mp4
    assert {p.parent.name for p in rehearsal.annotations} == {"raw", "stream"}
    assert sorted(rehearsal.broken.values()) == ["empty", "noise", "truncated"]
    for video in videos:
        assert inspect_video(video).ok == (video not in rehearsal.broken)
    clips, issues = load_clips(_data(rehearsal), rehearsal.root)
    assert len({c.video for c in clips}) == 11  # the good ones; raw samples of broken ones are issues
    assert all(c.turns >= 2 for c in clips)


def test_shards_cover_every_video_once():
    videos = [Path(f"v{i}") for i in range(11)]
    parts = [shard(videos, r, 3) for r in range(3)]
    assert sorted(v for p in parts for v in p) == sorted(videos)
    assert parts[1] == [Path("v1"), Path("v4"), Path("v7"), Path("v10")]


def test_second_run_decodes_nothing_and_unreadable_videos_are_named(rehearsal, spec_of, tmp_path):
    videos, _ = annotation_videos(_data(rehearsal), rehearsal.root)
    spec = spec_of(tmp_path / "cache")
    first = prepare_cache(videos, spec, workers=1, say=_quiet)
    assert (first.videos, first.already, first.decoded) == (14, 0, 11)
    assert sorted(Path(v) for v, _ in first.failed) == sorted(rehearsal.broken)
    assert first.frames == sum(len(np.load(p)) for p in (tmp_path / "cache").glob("*.npy"))

    again = prepare_cache(videos, spec, workers=1, say=_quiet)
    assert (again.already, again.decoded, again.failed) == (14, 0, [])  # failures are recorded, not retried
    cache = spec.open()
    for video in videos:
        assert cache.cached(video)
    bad = unreadable(videos, cache)
    assert sorted(Path(v) for v, _ in bad) == sorted(rehearsal.broken) and cache.decoded == 0
    reasons = dict(bad)
    for video, kind in rehearsal.broken.items():
        assert str(video) in reasons[str(video)]
        assert {"empty": "empty", "truncated": "cut off", "noise": "cannot open"}[kind] in reasons[str(video)]


def test_killed_run_resumes(rehearsal, spec_of, tmp_path):
    videos, _ = annotation_videos(_data(rehearsal), rehearsal.root)
    reference = tmp_path / "reference"
    prepare_cache(videos, spec_of(reference), workers=1, say=_quiet)

    root = tmp_path / "cache"
    spec = spec_of(root)
    prepare_cache(videos[:5], spec, workers=1, say=_quiet)  # the run killed after five videos...
    good = [v for v in videos[5:] if v not in rehearsal.broken]
    key = spec.open().key(good[0])
    (root / f"{key}.npy").write_bytes(b"\x93NUMPY half")  # ...in the middle of an entry (no metadata yet)
    stale = root / f".{key}.npy.123-456.part"
    stale.write_bytes(b"half")  # and a temporary file left behind
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    fresh = root / f".{key}.npy.789-1.part"  # a live writer's: not touched
    fresh.write_bytes(b"being written")

    report = prepare_cache(videos, spec, workers=1, say=_quiet)
    assert report.already == 5  # decoded, or recorded as unreadable
    assert report.decoded == len(good)  # the half entry is decoded again, the rest is new
    assert not stale.exists() and fresh.exists()
    fresh.unlink()
    assert _same(_snapshot(root), _snapshot(reference))


def test_disk_estimate_and_refusal(rehearsal, spec_of, tmp_path, monkeypatch):
    videos, _ = annotation_videos(_data(rehearsal), rehearsal.root)
    spec = spec_of(tmp_path / "cache")
    estimate = PR.estimate_disk(videos, spec)
    prepare_cache(videos, spec, workers=1, say=_quiet, check_space=False)
    written = sum(p.stat().st_size for p in (tmp_path / "cache").glob("*.npy"))
    assert 0.9 * written <= estimate.bytes <= 1.5 * written  # frames x resized size, + headers
    sampled = PR.estimate_disk(videos, spec, sample=6)
    assert sampled.sampled == 6 and sampled.videos == 14 and sampled.bytes > 0
    assert PR.estimate_disk(videos, spec, world=2).bytes == pytest.approx(2 * estimate.bytes)

    monkeypatch.setattr(PR, "_free_bytes", lambda folder: int(estimate.bytes / 4))
    with pytest.raises(PrepareError, match="does not fit.*--cache-dir"):
        prepare_cache(videos, spec_of(tmp_path / "other"), workers=1, say=_quiet)
    assert not (tmp_path / "other").exists()  # refused before anything was written


def test_command_prepares_and_warns(rehearsal, tiny_ckpt, tmp_path, capsys):
    args = ["data", "prepare", *sum((["--data", d] for d in _data(rehearsal)), []), "--video-prefix",
            str(rehearsal.root), "--model", str(tiny_ckpt), "--cache-dir", str(tmp_path / "cache"), "--workers", "1"]  # fmt: skip
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "about 0.0 GB in" in err and "GB free" in err and "decoded 14/14 videos (3 unreadable)" in err
    assert "11 of 14 videos are in the frame cache" in out
    assert "warning: 3 video(s) cannot be read" in err
    for video in rehearsal.broken:
        assert f"  {video}: " in err
    assert main(args) == 0  # resumed: nothing to decode, the same summary
    out, err = capsys.readouterr()
    assert "to decode" not in err and "11 of 14 videos" in out and "3 video(s) cannot be read" in err

    only_broken = tmp_path / "broken.json"
    only_broken.write_text(json.dumps([{"videos": [str(v)], "messages": []} for v in rehearsal.broken]))
    assert main(["data", "prepare", "--data", str(only_broken), "--model", str(tiny_ckpt), "--cache-dir",
                 str(tmp_path / "cache2"), "--workers", "1"]) == 1  # fmt: skip
    assert "no video could be read" in capsys.readouterr().err


def test_command_refuses_when_the_frames_do_not_fit(rehearsal, tiny_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(PR, "_free_bytes", lambda folder: 10)
    code = main(["data", "prepare", "--data", _data(rehearsal)[0], "--video-prefix", str(rehearsal.root),
                 "--model", str(tiny_ckpt), "--cache-dir", str(tmp_path / "cache"), "--workers", "1"])  # fmt: skip
    assert code == 2
    assert "error: the frame cache does not fit" in capsys.readouterr().err


@pytest.mark.slow
def test_pool_fills_the_same_cache_as_one_process(rehearsal, spec_of, tmp_path):
    videos, _ = annotation_videos(_data(rehearsal), rehearsal.root)
    trace = tmp_path / "trace.jsonl"
    one = prepare_cache(videos, spec_of(tmp_path / "one"), workers=1, say=_quiet)
    two = prepare_cache(videos, spec_of(tmp_path / "two"), workers=2, say=_quiet, trace=trace)
    assert (one.decoded, len(one.failed)) == (two.decoded, len(two.failed)) == (11, 3)
    assert _same(_snapshot(tmp_path / "one"), _snapshot(tmp_path / "two"))
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert sorted(r["video"] for r in records) == sorted(map(str, videos))  # each video once
    pids = {r["pid"] for r in records}  # the pool's (one worker may take all: these decode in ms)
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_split_the_videos_and_equal_one_process(rehearsal, spec_of, tiny_ckpt, tmp_path):
    videos, _ = annotation_videos(_data(rehearsal), rehearsal.root)
    prepare_cache(videos, spec_of(tmp_path / "one"), workers=1, say=_quiet)
    trace = tmp_path / "trace"
    # accelerate's --cpu starts one process; --multi_gpu with gloo starts two on the CPU
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()), "-m", "app.cli", "data", "prepare",
        *sum((["--data", d] for d in _data(rehearsal)), []), "--video-prefix", str(rehearsal.root),
        "--model", str(tiny_ckpt), "--cache-dir", str(tmp_path / "two"), "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "STREAMO_PREPARE_TRACE": str(trace), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [[json.loads(x) for x in Path(f"{trace}.rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert [r["video"] for r in ranks[0]] == [str(v) for v in videos[0::2]]
    assert [r["video"] for r in ranks[1]] == [str(v) for v in videos[1::2]]  # each video decoded once
    assert proc.stdout.count("11 of 14 videos are in the frame cache") == 1  # rank 0 sums up, for all ranks
    assert proc.stderr.count("warning: 3 video(s) cannot be read") == 1
    assert _same(_snapshot(tmp_path / "one"), _snapshot(tmp_path / "two"))


def test_training_prepares_outside_any_barrier_and_decodes_nothing_when_prepared(
    rehearsal, spec_of, tiny_ckpt, tmp_path, monkeypatch
):
    import accelerate

    from model.train.config import TrainConfig
    from model.train.trainer import train

    in_barrier = {"now": False, "decoded_inside": 0, "prepared": []}
    real_first, real_prepare, real_decode = (accelerate.Accelerator.main_process_first, PR.prepare_cache,
                                             FrameCache._decode)  # fmt: skip

    @contextlib.contextmanager
    def first(self):
        in_barrier["now"] = True
        with real_first(self):
            yield
        in_barrier["now"] = False

    def decode(self, path):
        in_barrier["decoded_inside"] += in_barrier["now"]
        return real_decode(self, path)

    def spy(videos, spec, **kw):
        in_barrier["prepared"].append((in_barrier["now"], kw["rank"], kw["world"]))
        return real_prepare(videos, spec, **{**kw, "workers": 1})  # the pool is tested above

    monkeypatch.setattr(accelerate.Accelerator, "main_process_first", first)
    monkeypatch.setattr(FrameCache, "_decode", decode)
    monkeypatch.setattr(PR, "prepare_cache", spy)
    cache = tmp_path / "cache"

    def run(out: str) -> dict:
        config = TrainConfig(data=_data(rehearsal), video_prefix=str(rehearsal.root), model=str(tiny_ckpt),
                             out=str(tmp_path / out), device="cpu", steps=1, holdout=0.0, cache_dir=str(cache))  # fmt: skip
        events: list[dict] = []
        train(config, on_event=events.append)
        return next(e for e in events if e["event"] == "start")

    start = run("cold")
    assert in_barrier["prepared"] == [(False, 0, 1)] and in_barrier["decoded_inside"] == 0
    assert start["frames_decoded"] == 11
    start = run("warm")  # a prepared cache: nothing decoded anywhere
    assert in_barrier["decoded_inside"] == 0 and start["frames_decoded"] == 0
    monkeypatch.setattr(FrameCache, "_decode", lambda self, path: pytest.fail(f"decoded {path} again"))
    run("warm2")

"""VideoFileSource against real decoders: generated video files and the sample clip."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import decode_all_rgb, write_video

from app.sources import SourceError, VideoFileSource, open_source

W, H = 64, 48  # write_video's frame size


def make_video(path: Path, n_frames: int, fps: float) -> Path:
    return write_video(path, n_frames, fps, (W, H))


@pytest.mark.parametrize(
    ("fps", "step", "expected_t"),
    [
        (1.0, 10, [0.0, 1.0, 2.0]),
        (2.0, 5, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]),
    ],
)
def test_file_samples_frame_at_start_of_each_interval(video10: Path, fps: float, step: int, expected_t: list[float]):
    ref = decode_all_rgb(video10)
    assert len(ref) == 35
    with VideoFileSource(video10) as src:
        assert src.info.kind == "file"
        assert (src.info.width, src.info.height, src.info.fps, src.info.frame_count) == (W, H, 10.0, 35)
        assert src.info.duration == pytest.approx(3.5)
        assert src.sample_count(fps) == 35 // step  # whole intervals of 3.5 s
        frames = list(src.frames(fps))
    assert [f.t for f in frames] == pytest.approx(expected_t)
    assert [f.index for f in frames] == [k * step for k in range(len(expected_t))]
    for f in frames:
        assert f.image.shape == (H, W, 3) and f.image.dtype == np.uint8
        assert np.array_equal(f.image, ref[f.index]), f"sample {f.t}s is not frame {f.index}"
    assert all(a.wall_time <= b.wall_time for a, b in zip(frames, frames[1:], strict=False))


def test_file_samples_by_time_not_by_the_training_datas_integer_step(tmp_path: Path):
    # 2.4 s of 25 fps video at 2 fps: the training data's rule (step int(12.5) = 12) would take frames
    # 0, 12, 24, 36, 48 (0.48 s per sample, drifting); by time it is the frame nearest each k / 2 s
    # (a tie at 12.5 goes to the earlier frame) and the whole half-seconds the clip covers.
    path = make_video(tmp_path / "pal.mp4", 60, 25)
    with VideoFileSource(path) as src:
        assert src.sample_count(2.0) == 4
        frames = list(src.frames(2.0))
    assert [f.index for f in frames] == [0, 12, 25, 37]
    assert [f.t for f in frames] == pytest.approx([0.0, 0.5, 1.0, 1.5])


def test_file_frames_restart_from_the_beginning_and_latest_tracks_samples(video10: Path):
    with VideoFileSource(video10) as src:
        first = src.latest()
        assert first is not None and first.index == 0  # a preview image is there right after open()
        gen = src.frames(1.0)
        next(gen)
        second = next(gen)
        assert src.latest() is second
        gen.close()
        again = [f.index for f in src.frames(1.0)]
    assert again == [0, 10, 20]


@pytest.mark.parametrize("realtime", [False, True])
def test_file_new_frames_iteration_supersedes_the_old_one(video10: Path, realtime: bool):
    with VideoFileSource(video10, realtime=realtime) as src:
        old = src.frames(10.0 if realtime else 1.0)
        next(old)
        new = src.frames(2.0)
        assert [f.index for f in itertools.islice(new, 3)] == [0, 5, 10]  # restarted from frame 0
        new.close()
        with pytest.raises(StopIteration):
            next(old)


def test_file_fast_mode_is_not_paced(video10: Path):
    start = time.monotonic()
    with VideoFileSource(video10, realtime=False) as src:
        n = len(list(src.frames(2.0)))
    assert n == 7
    assert time.monotonic() - start < 1.5  # 3.5 s of video; real-time pacing would take > 3 s


def test_file_realtime_is_paced_by_the_clock_and_previews_every_frame(tmp_path: Path):
    path = make_video(tmp_path / "rt.mp4", 20, 10)  # 2 s
    with VideoFileSource(path, realtime=True) as src:
        start = time.monotonic()
        arrivals = []
        frames = []
        for f in src.frames(2.0):
            arrivals.append(time.monotonic() - start)
            frames.append(f)
        elapsed = time.monotonic() - start
        last = src.latest()
    assert [f.index for f in frames] == [0, 5, 10, 15]
    assert [f.t for f in frames] == pytest.approx([0.0, 0.5, 1.0, 1.5])
    # Sample k is not handed out before its presentation time (loose: scheduling jitter only delays).
    for f, arrived in zip(frames, arrivals, strict=True):
        assert arrived >= f.index / 10 - 0.05
    assert 1.7 <= elapsed < 6.0
    # The player decoded every frame for the preview, not only the samples.
    assert last is not None and last.index == 19


def test_file_realtime_slow_consumer_drops_samples_like_a_live_stream(tmp_path: Path):
    path = make_video(tmp_path / "rt.mp4", 30, 20)  # 1.5 s
    with VideoFileSource(path, realtime=True) as src:
        seen = []
        for f in src.frames(10.0):  # a sample every 0.1 s ...
            seen.append(f)
            time.sleep(0.35)  # ... but the "model" needs 0.35 s per frame
    ts = [f.t for f in seen]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    assert 2 <= len(seen) < 15  # fewer than the 15 samples: stale ones were skipped
    assert max(b - a for a, b in zip(ts, ts[1:], strict=False)) > 0.15


def test_file_close_from_another_thread_ends_realtime_frames(video10: Path):
    src = VideoFileSource(video10, realtime=True).open()
    got = []
    timer = threading.Timer(0.3, src.close)
    timer.start()
    start = time.monotonic()
    for f in src.frames(1.0):
        got.append(f)
    timer.join()
    assert time.monotonic() - start < 2.5  # the file is 3.5 s long
    assert [f.index for f in got] == [0]


def test_corrupt_file_is_a_source_error_naming_the_path(tmp_path: Path):
    bad = tmp_path / "broken clip.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError) as exc:
        VideoFileSource(bad).open()
    assert str(bad) in str(exc.value)
    assert "corrupt" in str(exc.value)


def test_truncated_file_is_a_source_error(tmp_path: Path, video10: Path):
    data = video10.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(SourceError, match="cut.mp4"):
        open_source(str(cut))


def test_missing_file_and_folder_are_source_errors(tmp_path: Path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceError) as exc:
        open_source(str(missing))
    assert str(missing) in str(exc.value) and "not found" in str(exc.value)
    with pytest.raises(SourceError, match="folder"):
        open_source(str(tmp_path))


def test_info_before_open_is_a_programming_error(video10: Path):
    src = VideoFileSource(video10)
    with pytest.raises(RuntimeError, match="not open"):
        _ = src.info
    assert src.latest() is None


def test_bad_fps_rejected(video10: Path):
    with VideoFileSource(video10) as src, pytest.raises(ValueError):
        next(src.frames(0))


def test_sample_asset_plays_at_one_fps(sample_clip: Path):
    asset = sample_clip
    if not asset.exists():
        pytest.skip("assets/sample.mp4 not generated (python scripts/make_sample_clip.py)")
    assert asset.stat().st_size < 1_000_000
    with open_source(str(asset)) as src:
        assert (src.info.width, src.info.height, src.info.fps, src.info.frame_count) == (320, 240, 10.0, 100)
        frames = list(src.frames(1.0))
    assert [f.t for f in frames] == pytest.approx(list(range(10)))
    # At t=2 s the red ball is on screen; at t=0 s the frame is plain grey around the counter.
    red = lambda img: int(((img[..., 0] > 180) & (img[..., 1] < 80) & (img[..., 2] < 80)).sum())  # noqa: E731
    assert red(frames[0].image) == 0 and red(frames[2].image) > 500

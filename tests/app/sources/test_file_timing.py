"""Files are sampled by time (model.frame_times): the sample of second k / fps is the frame whose
presentation time is nearest k / fps, checked against the container's own timestamps read by a second
decoder (PyAV), for 29.97 fps, 23.976 fps and variable-frame-rate files of any length."""

from __future__ import annotations

import fractions
import math
import random
from pathlib import Path

import numpy as np
import pytest

from app.sources import VideoFileSource
from model.frame_times import Sample, TimePicker, pick_by_time, sample_times_count

av = pytest.importorskip("av")  # a test-only dependency (pyproject.toml, dev extra)

W, H = 64, 48


def level(i: int) -> int:
    return (i * 37) % 200 + 20  # a grey level per frame, far enough apart to survive the codec


def write_cfr(path: Path, n: int, rate: fractions.Fraction) -> Path:
    """``n`` frames at the exact rational ``rate`` (30000/1001 is 29.97), frame i a flat grey ``level(i)``."""
    return write_with_pts(path, [i for i in range(n)], fractions.Fraction(1, 1) / rate)


def write_with_pts(path: Path, pts: list[int], time_base: fractions.Fraction) -> Path:
    """An MPEG-4 MP4 whose frame i is presented at ``pts[i] * time_base`` seconds (any spacing: variable
    frame rate), written by PyAV with explicit timestamps."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=round(1 / time_base) if time_base.numerator == 1 else 30)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.time_base = time_base
        stream.time_base = time_base
        stream.codec_context.gop_size = 1  # every frame a key frame: flat greys stay exact
        for i, p in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), level(i), np.uint8), format="rgb24")
            frame.pts, frame.time_base = p, time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def container_times(path: Path) -> list[float]:
    """Each frame's presentation time in seconds from the stream's start, as PyAV reads the container."""
    with av.open(str(path)) as f:
        stream = f.streams.video[0]
        start = stream.start_time or 0
        return [float((frame.pts - start) * stream.time_base) for frame in f.decode(stream)]


def nearest(times: list[float], t: float) -> int:
    """The reference rule: the frame nearest ``t``, the earlier on a tie."""
    return min(range(len(times)), key=lambda i: (round(abs(times[i] - t), 9), i))


def check_samples(path: Path, fps: float) -> list:
    times = container_times(path)
    with VideoFileSource(path) as src:
        frames = list(src.frames(fps))
        count = src.sample_count(fps)
    assert len(frames) == count
    assert [f.t for f in frames] == pytest.approx([k / fps for k in range(len(frames))])
    for f in frames:
        want = nearest(times, f.t)
        assert f.index == want, f"sample {f.t} s: frame {f.index} at {times[f.index]:.4f} s, not {want}"
        assert abs(float(f.image.mean()) - level(f.index)) < 8  # that frame's pixels (its neighbours are >= 17 apart)
    return [(f.t, times[f.index]) for f in frames]


@pytest.mark.parametrize("rate", [fractions.Fraction(30000, 1001), fractions.Fraction(24000, 1001)])
@pytest.mark.parametrize("fps", [1.0, 2.0])
def test_ntsc_rates_stay_on_time_at_any_length(tmp_path: Path, rate: fractions.Fraction, fps: float):
    n = math.ceil(rate * 120)  # two minutes: the release's rule is 4 s (29.97) or 5 s (23.976) off by then
    path = write_cfr(tmp_path / "ntsc.mp4", n, rate)
    pairs = check_samples(path, fps)
    assert len(pairs) == int(120 * fps)
    assert max(abs(t - shown) for t, shown in pairs) <= 0.5 / float(rate) + 1e-6  # within half a frame
    # What training's rule would have shown for the last sample, for the record: seconds early.
    step = max(1, int(float(rate) / fps))
    assert pairs[-1][0] - (len(pairs) - 1) * step / float(rate) > 3.5


def test_variable_frame_rate_follows_the_timestamps(tmp_path: Path):
    rng = random.Random(7)
    pts, t = [], 0
    for _ in range(400):  # 40 ms to 1.5 s between frames, in milliseconds; 2 bursts and a 4 s gap
        pts.append(t)
        t += rng.choice([40, 40, 33, 17, 100, 250, 700, 1500])
    pts.append(pts[-1] + 4000)
    path = write_with_pts(tmp_path / "vfr.mp4", pts, fractions.Fraction(1, 1000))
    times = container_times(path)
    assert times == pytest.approx([p / 1000 for p in pts])  # the file holds what was written
    for fps in (1.0, 2.0):
        pairs = check_samples(path, fps)
        assert pairs[-1][0] >= times[-2]  # the whole clip is sampled, the gap included
    # The release's index rule at the container's average rate lands far from the time on such a file.


def test_opencv_mp4v_writer_at_29_97(tmp_path: Path):
    """The helper most tests use (OpenCV's writer) also keeps exact 30000/1001 timestamps."""
    from fakes import write_video

    path = write_video(tmp_path / "cv.mp4", 900, 30000 / 1001)
    times = container_times(path)
    assert times[899] == pytest.approx(899 * 1001 / 30000, abs=1e-4)
    with VideoFileSource(path) as src:
        frames = list(src.frames(1.0))
    assert len(frames) == 30  # 900 frames = 30.03 s
    assert [f.index for f in frames] == [nearest(times, k) for k in range(30)]
    assert frames[-1].index == 869  # the release's rule takes frame 29 * 29 = 841 (28.06 s) for second 29


def test_picker_rules():
    def run(times, fps, count=None, nominal=None):
        frames = iter([(i, t) for i, t in enumerate(times)])
        return [(s.k, s.index) for s in pick_by_time(frames, fps, count, nominal)]

    assert run([0.0, 0.4, 0.6, 1.0, 1.5], 1.0) == [(0, 0), (1, 3)]  # 1.5 + 0.5 (last interval) ends at 2.0
    assert run([0.0, 0.5, 1.5, 2.5], 1.0) == [(0, 0), (1, 1), (2, 2), (3, 3)]  # 1.0 ties 0.5/1.5: the earlier
    assert run([0.0, 3.0], 1.0, count=3) == [(0, 0), (1, 0), (2, 1)]  # a gap repeats its nearest neighbour
    assert run([0.0, 0.1, 0.2], 1.0, count=5) == [(0, 0)]  # a file shorter than it said: nothing invented
    assert run([0.0, 0.0, 0.0, 0.0], 2.0, nominal=4.0) == [(0, 0), (1, 2)]  # no timestamps: by the nominal rate
    picker: TimePicker[int] = TimePicker(1.0, 3)
    assert picker.push(0, 0.0) == [Sample(0, 0, 0.0, 0)]
    assert picker.push(1, 5.0) == [Sample(1, 0, 0.0, 0), Sample(2, 0, 0.0, 0)] and picker.done
    assert sample_times_count(17982 * 1001 / 30000, 1.0) == 600  # 600.0006 s
    assert sample_times_count(3.5, 2.0) == 7 and sample_times_count(0.4, 1.0) == 0
    with pytest.raises(ValueError):
        TimePicker(0.0)


def test_realtime_playback_hands_out_the_same_samples(tmp_path: Path):
    """Played at its own speed (the window's "real time"), a variable-rate file gives the samples the
    fast path gives, each not before its time."""
    import time

    pts = [0, 40, 80, 500, 540, 1200, 1240, 1280, 1900, 2000, 2040]  # ms: 2.04 s, uneven
    path = write_with_pts(tmp_path / "rt.mp4", pts, fractions.Fraction(1, 1000))
    with VideoFileSource(path) as src:
        fast = [(f.t, f.index) for f in src.frames(2.0)]
    with VideoFileSource(path, realtime=True) as src:
        start = time.monotonic()
        played = []
        for f in src.frames(2.0):
            played.append((f.t, f.index))
            assert time.monotonic() - start >= f.t - 0.05
    times = [p / 1000 for p in pts]
    assert fast == [(k / 2, nearest(times, k / 2)) for k in range(len(fast))] and len(fast) >= 4
    assert played == fast

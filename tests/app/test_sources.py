"""Frame sources against real decoders: generated video files, a video file standing in for a
camera, and mss on a real (virtual) X server."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakes import DeadCamera, write_video

from app.sources import (
    Frame,
    ScreenSource,
    SourceError,
    VideoFileSource,
    WebcamSource,
    list_cameras,
    list_monitors,
    open_source,
    parse_source,
)

W, H = 64, 48


def make_video(path: Path, n_frames: int, fps: float) -> Path:
    return write_video(path, n_frames, fps, (W, H))


def decode_all_rgb(path: Path) -> list[np.ndarray]:
    """Reference decode with plain OpenCV: same decoder, so sampled frames must match exactly."""
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return out


@pytest.fixture(autouse=True)
def no_leftover_threads():
    """Every source must have stopped its reader/player thread once closed."""
    before = set(threading.enumerate())
    yield
    ours = ("webcam:", "screen:", "player:")
    left = [t for t in set(threading.enumerate()) - before if t.name.startswith(ours)]
    for t in left:
        t.join(2.0)
    assert not [t.name for t in left if t.is_alive()]


@pytest.fixture
def video10(tmp_path: Path) -> Path:
    """3.5 s at 10 fps: 35 frames."""
    return make_video(tmp_path / "ten.mp4", 35, 10)


# ---------------------------------------------------------------------------------------------
# Video files


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
        assert src.step_for(fps) == step
        assert src.sample_count(fps) == 35 // step
        frames = list(src.frames(fps))
    assert [f.t for f in frames] == pytest.approx(expected_t)
    assert [f.index for f in frames] == [k * step for k in range(len(expected_t))]
    for f in frames:
        assert f.image.shape == (H, W, 3) and f.image.dtype == np.uint8
        assert np.array_equal(f.image, ref[f.index]), f"sample {f.t}s is not frame {f.index}"
    assert all(a.wall_time <= b.wall_time for a, b in zip(frames, frames[1:], strict=False))


def test_file_frame_count_uses_integer_step_like_training_data(tmp_path: Path):
    # 2.4 s of 25 fps video at 2 fps: step = int(12.5) = 12 gives 60 // 12 = 5 samples, the training
    # data's rule, where a duration-based count would give int(2.4 * 2) = 4.
    path = make_video(tmp_path / "pal.mp4", 60, 25)
    with VideoFileSource(path) as src:
        frames = list(src.frames(2.0))
    assert [f.index for f in frames] == [0, 12, 24, 36, 48]
    assert [f.t for f in frames] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


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


# ---------------------------------------------------------------------------------------------
# Webcam, with a video file standing in for the camera


class FileCamera:
    """cv2.VideoCapture look-alike over a video file; ``pace`` seconds per read (0 = as fast as
    the decoder goes), optionally looping like an endless camera."""

    def __init__(self, path: Path, pace: float = 0.0, loop: bool = False) -> None:
        self.path, self.pace, self.loop = path, pace, loop
        self.cap = cv2.VideoCapture(str(path))
        self.reads = 0
        self.settings: dict[int, float] = {}
        self.released = threading.Event()

    def isOpened(self) -> bool:  # noqa: N802
        return self.cap.isOpened()

    def read(self):
        if self.pace:
            time.sleep(self.pace)
        ok, img = self.cap.read()
        if not ok and self.loop:
            self.cap.release()
            self.cap = cv2.VideoCapture(str(self.path))
            ok, img = self.cap.read()
        if ok:
            self.reads += 1
        return ok, img

    def set(self, prop: int, value: float) -> bool:
        self.settings[prop] = value
        return True

    def get(self, prop: int) -> float:
        return self.cap.get(prop)

    def release(self) -> None:
        self.cap.release()
        self.released.set()


class SilentCamera(DeadCamera):
    """Opens but never returns a frame (camera held by another program)."""

    def isOpened(self) -> bool:  # noqa: N802
        return True

    def read(self):
        time.sleep(0.01)
        return False, None


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_webcam_reader_keeps_only_the_newest_frame(video10: Path):
    ref = decode_all_rgb(video10)
    cams: list[FileCamera] = []

    def factory(index: int) -> FileCamera:
        cams.append(FileCamera(video10))
        return cams[-1]

    src = WebcamSource(0, capture_factory=factory)
    src.read_failure_grace = 0.2
    with src:
        assert src.info.kind == "webcam" and (src.info.width, src.info.height) == (W, H)
        # Nobody consumes, yet the reader runs through the whole "camera" stream and the source
        # holds exactly one frame: the newest.
        assert wait_until(lambda: src.latest() is not None and src.latest().index == 34)
        newest = src.latest()
        assert np.array_equal(newest.image, ref[34])
        assert cams[0].reads == 35
        # The stream then ended: for a camera that means it went away, which frames() reports.
        assert wait_until(lambda: src.error is not None, 2.0)
        assert "stopped delivering" in src.error
        with pytest.raises(SourceError, match="stopped delivering"):
            next(src.frames(1.0))
    assert cams[0].released.wait(2.0)


def test_webcam_frames_are_sampled_on_the_wall_clock(video10: Path):
    cam = FileCamera(video10, pace=0.02, loop=True)  # a 50 fps camera
    with WebcamSource(2, capture_factory=lambda i: cam) as src:
        start = time.monotonic()
        gen = src.frames(5.0)
        frames: list[Frame] = [next(gen) for _ in range(3)]
        elapsed = time.monotonic() - start
        gen.close()
    assert [f.t for f in frames] == pytest.approx([0.0, 0.2, 0.4])
    assert 0.35 <= elapsed < 2.0
    idx = [f.index for f in frames]
    # Capture counters move on by about 10 frames per 0.2 s: newest frame, no backlog.
    assert idx[0] < idx[1] < idx[2] and idx[2] - idx[0] >= 10
    assert all(f.image.shape == (H, W, 3) for f in frames)


def test_webcam_slow_consumer_skips_intervals(video10: Path):
    cam = FileCamera(video10, pace=0.02, loop=True)
    with WebcamSource(0, capture_factory=lambda i: cam) as src:
        gen = src.frames(10.0)
        ts = []
        for _ in range(3):
            ts.append(next(gen).t)
            time.sleep(0.25)
        gen.close()
    assert ts[0] == 0.0
    assert ts[1] >= 0.2 and ts[2] - ts[1] >= 0.2  # 0.1 s intervals were skipped, not queued


def test_webcam_requested_resolution_is_passed_to_the_camera(video10: Path):
    cam = FileCamera(video10)
    with open_source("webcam:0@1280x720", capture_factory=lambda i: cam) as src:
        assert isinstance(src, WebcamSource)
        # The fake ignores the request; info reports what the camera really delivers.
        assert (src.info.width, src.info.height) == (W, H)
    assert cam.settings[cv2.CAP_PROP_FRAME_WIDTH] == 1280
    assert cam.settings[cv2.CAP_PROP_FRAME_HEIGHT] == 720


def test_missing_camera_is_a_source_error_listing_the_cameras_found(video10: Path):
    def factory(index: int):
        return FileCamera(video10) if index == 0 else DeadCamera(index)

    with pytest.raises(SourceError) as exc:
        WebcamSource(1, capture_factory=factory).open()
    msg = str(exc.value)
    assert "No camera at index 1" in msg
    assert "found cameras: Camera 0" in msg

    with pytest.raises(SourceError, match="found cameras: none"):
        open_source("webcam:3", capture_factory=DeadCamera)


def test_camera_that_delivers_no_frames_is_a_source_error():
    src = WebcamSource(0, capture_factory=SilentCamera, first_frame_timeout=0.3)
    with pytest.raises(SourceError, match="returned no frames.*another application"):
        src.open()
    assert not src.is_open


def test_list_cameras_with_factory(video10: Path):
    cams = list_cameras(4, capture_factory=lambda i: FileCamera(video10) if i in (0, 2) else DeadCamera(i))
    assert [(c.index, c.width, c.height, c.spec) for c in cams] == [(0, W, H, "webcam:0"), (2, W, H, "webcam:2")]


# ---------------------------------------------------------------------------------------------
# Screen


@pytest.fixture
def xvfb_display(monkeypatch: pytest.MonkeyPatch):
    """A private Xvfb server (640x480) as $DISPLAY; skips when Xvfb is not installed."""
    binary = shutil.which("Xvfb")
    if binary is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb) - screen capture needs an X server")
    read_fd, write_fd = os.pipe()
    # -displayfd: the server picks a free display and writes its number once it accepts clients,
    # so there is no guessing of free numbers and no sleep-polling for the socket.
    proc = subprocess.Popen(
        # -noreset: like a desktop session, keep running when the last client disconnects.
        [binary, "-displayfd", str(write_fd), "-screen", "0", "640x480x24", "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as r:
            number = r.readline().strip()
        if not number:
            pytest.skip(f"Xvfb failed to start (exit code {proc.poll()})")
        monkeypatch.setenv("DISPLAY", f":{number}")
        yield f":{number}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_list_monitors_under_xvfb(xvfb_display: str):
    monitors = list_monitors()
    assert monitors[0].index == 0 and (monitors[0].width, monitors[0].height) == (640, 480)
    assert len(monitors) >= 2
    assert (monitors[1].width, monitors[1].height) == (640, 480)
    assert monitors[1].spec == "screen:1"


def test_screen_capture_under_xvfb(xvfb_display: str):
    with open_source("screen") as src:
        assert isinstance(src, ScreenSource)
        assert (src.info.kind, src.info.width, src.info.height) == ("screen", 640, 480)
        first = src.latest()
        assert first is not None and first.image.shape == (480, 640, 3) and first.image.dtype == np.uint8
        # The capture thread keeps grabbing on its own.
        assert wait_until(lambda: src.latest().index > first.index, 3.0)
        gen = src.frames(10.0)
        frames = [next(gen) for _ in range(2)]
        gen.close()
    assert [f.t for f in frames] == pytest.approx([0.0, 0.1])
    assert all(f.image.shape == (480, 640, 3) for f in frames)


def test_screen_region_under_xvfb(xvfb_display: str):
    with open_source("screen:1@10,20,100,50") as src:
        assert src.latest().image.shape == (50, 100, 3)
        assert src.info.spec == "screen:1@10,20,100,50"


def test_screen_bad_monitor_and_region_under_xvfb(xvfb_display: str):
    with pytest.raises(SourceError, match=r"No monitor 5\. Available monitors: 0 = All monitors.*1 = Monitor 1"):
        open_source("screen:5")
    with pytest.raises(SourceError, match="does not fit on monitor 1"):
        open_source("screen:1@600,0,100,100")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY only matters on X11")
def test_screen_without_display_is_a_clear_source_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SourceError, match="DISPLAY is unset"):
        open_source("screen:1")
    with pytest.raises(SourceError, match="DISPLAY is unset"):
        list_monitors()


def test_screen_with_injected_grabber_samples_newest_frame():
    counter = iter(range(10_000))

    def grab() -> np.ndarray:
        return np.full((30, 40, 3), next(counter) % 256, np.uint8)

    with ScreenSource(1, capture_fps=50, grabber=grab) as src:
        assert (src.info.width, src.info.height, src.info.fps) == (40, 30, 50)
        gen = src.frames(5.0)
        a, b = next(gen), next(gen)
        gen.close()
    assert (a.t, b.t) == pytest.approx((0.0, 0.2))
    assert b.index > a.index  # new grabs happened in between


# ---------------------------------------------------------------------------------------------
# Specs


def test_parse_source_specs(tmp_path: Path):
    cam = parse_source("webcam")
    assert isinstance(cam, WebcamSource) and cam.index == 0 and not cam.is_open
    cam = parse_source("webcam:2@640x480", realtime=True)  # realtime is meaningless for a camera
    assert (cam.index, cam.width, cam.height) == (2, 640, 480)
    scr = parse_source("screen")
    assert isinstance(scr, ScreenSource) and scr.monitor == 1 and scr.region is None
    scr = parse_source("screen:0")
    assert scr.monitor == 0
    scr = parse_source("screen:2@10,20,300,200")
    assert (scr.monitor, scr.region, scr.spec) == (2, (10, 20, 300, 200), "screen:2@10,20,300,200")
    f = parse_source(str(tmp_path / "a.mp4"), realtime=True)
    assert isinstance(f, VideoFileSource) and f.realtime and f.path == tmp_path / "a.mp4"
    for bad in ("webcam:x", "screen:1@1,2,3", "screen:a", ""):
        with pytest.raises(SourceError):
            parse_source(bad)


def test_sample_asset_plays_at_one_fps():
    asset = Path(__file__).resolve().parents[2] / "assets" / "sample.mp4"
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

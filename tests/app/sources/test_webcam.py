"""WebcamSource and list_cameras, with a video file standing in for the camera (fakes.FileCamera)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakes import DeadCamera, FileCamera, decode_all_rgb, wait_until

from app.sources import Frame, SourceError, WebcamSource, list_cameras, open_source

W, H = 64, 48  # write_video's frame size


class SilentCamera(DeadCamera):
    """Opens but never returns a frame (camera held by another program)."""

    def isOpened(self) -> bool:  # noqa: N802
        return True

    def read(self):
        time.sleep(0.01)
        return False, None


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

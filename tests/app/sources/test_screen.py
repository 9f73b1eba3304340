"""ScreenSource and list_monitors: mss on a real (virtual) X server, and an injected grabber."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from fakes import wait_until

from app.sources import ScreenSource, SourceError, list_monitors, open_source


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

"""Fixtures of the frame source tests: a generated video and a check that every source stopped
its threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fakes import write_video


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
    """3.5 s at 10 fps: 35 frames of write_video's 64x48."""
    return write_video(tmp_path / "ten.mp4", 35, 10)

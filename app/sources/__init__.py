"""Frame sources: a video file, a webcam or the screen behind one interface.

Every source hands out :class:`Frame` objects holding an RGB ``uint8`` image. Two ways to read:

* ``latest()`` - the newest captured frame, cheap and non-blocking, for a 25-30 fps preview;
* ``frames(fps)`` - a generator of *sampled* frames (1 fps by default) for the model.

Stream time ``Frame.t`` is the start of the frame's sampling interval, ``k / fps`` for the
``k``-th interval, which is what the model's ``<Xs-Ys>`` labels count. For video files the
sample of interval ``k`` is the decoded frame whose presentation time (the container's timestamp)
is nearest ``k / fps``, variable frame rate included, and there are ``floor(duration * fps)``
samples: the one inference rule, ``model.frame_times``, so a subtitle at ``t`` is at the second
it happened. (Training samples frame ``k * int(video_fps / fps)``, the release's rule, which
drifts 3 % early at 29.97 fps; docs/training.md compares the two.)

Live sources (webcam, screen, and files with ``realtime=True``) are paced by the wall clock and
never queue up: when the consumer is slower than ``fps`` the missed intervals are skipped, so
``t`` keeps tracking the wall clock the way a live stream must.

A source is named by a spec string, ``FILE | webcam[:N][@WxH] | screen[:N][@x,y,w,h]``, which
only :class:`SourceSpec` parses and prints; :func:`open_source` opens one.

Modules: ``base`` (the interface and the live-source base), ``file``, ``webcam``, ``screen``
and ``spec``. No Qt here: the GUI polls ``latest()`` from a timer and runs ``frames()`` on a
worker thread.
"""

from app.sources.base import Frame, FrameSource, SourceError, SourceInfo
from app.sources.file import VideoFileSource
from app.sources.screen import Grabber, MonitorInfo, ScreenSource, list_monitors
from app.sources.spec import SourceSpec, open_source, parse_source
from app.sources.webcam import (
    COMMON_RESOLUTIONS,
    CameraInfo,
    CaptureFactory,
    CaptureLike,
    WebcamSource,
    list_cameras,
)

__all__ = [
    "COMMON_RESOLUTIONS",
    "CameraInfo",
    "CaptureFactory",
    "CaptureLike",
    "Frame",
    "FrameSource",
    "Grabber",
    "MonitorInfo",
    "ScreenSource",
    "SourceError",
    "SourceInfo",
    "SourceSpec",
    "VideoFileSource",
    "WebcamSource",
    "list_cameras",
    "list_monitors",
    "open_source",
    "parse_source",
]

"""Frame sources: a video file, a webcam or the screen behind one interface.

Every source hands out :class:`Frame` objects holding an RGB ``uint8`` image. Two ways to read:

* ``latest()`` - the newest captured frame, cheap and non-blocking, for a 25-30 fps preview;
* ``frames(fps)`` - a generator of *sampled* frames (1 fps by default) for the model.

Stream time ``Frame.t`` is the start of the frame's sampling interval, ``k / fps`` for the
``k``-th interval, which is what the model's ``<Xs-Ys>`` labels count. For video files the
sampled frame of interval ``k`` is frame ``k * step`` with ``step = max(1, int(video_fps / fps))``
and there are ``frame_count // step`` samples, exactly as the training data were built
(``model.protocol.turn_count``). The true media time of a file frame is ``index / info.fps``;
it differs from ``t`` only when ``video_fps / fps`` is not an integer (29.97 fps video, say).

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

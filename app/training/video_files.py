"""Video files for the clip library: which ones it takes (the one probe, ``model.video_probe``),
thumbnails, and random access for the annotator's player."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from app.training.clips import LibraryError
from model import protocol as P
from model.video_probe import inspect_video

# What a folder import picks up (a file named on its own is judged by the probe alone). A superset
# of what Live's preview takes by drag and drop.
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts",
                  ".m2ts", ".3gp", ".ogv")  # fmt: skip

__all__ = ["VIDEO_SUFFIXES", "FrameReader", "probe_clip", "thumbnail"]


def probe_clip(path: str | os.PathLike[str]) -> tuple[P.VideoMeta | None, str]:
    """(frame count and rate as the trainer's converter counts them, "") or (None, why not and what
    to do): ``model.video_probe.inspect_video``, the rule Live and the trainer apply too."""
    facts = inspect_video(path)
    return (P.VideoMeta(facts.frames, facts.fps), "") if facts.ok else (None, facts.reason)


_THUMBS: OrderedDict[tuple, np.ndarray | None] = OrderedDict()
_THUMBS_LOCK = threading.Lock()
_THUMBS_MAX = 512


def thumbnail(path: str | os.PathLike[str], box: tuple[int, int] = (96, 64)) -> np.ndarray | None:
    """A small RGB frame (one second in, or the middle of a shorter clip) fitting ``box``, cached by
    the file's path, size and modification time; None when the video cannot be read."""
    import cv2

    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path.absolute()), st.st_size, st.st_mtime_ns, box)
    with _THUMBS_LOCK:
        if key in _THUMBS:
            _THUMBS.move_to_end(key)
            return _THUMBS[key]
    image = None
    cap = cv2.VideoCapture(str(path))
    try:
        if cap.isOpened():
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            target = min(int(fps) if fps > 0 else 0, frames // 2) if frames > 0 else 0
            if target > 0:
                cap.set(cv2.CAP_PROP_POS_FRAMES, target)
            ok, bgr = cap.read()
            if not ok and target > 0:  # a seek the container does not support: the first frame then
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = cap.read()
            if ok and bgr is not None:
                h, w = bgr.shape[:2]
                scale = min(box[0] / w, box[1] / h)
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                image = np.ascontiguousarray(
                    cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
                )
    finally:
        cap.release()
    with _THUMBS_LOCK:
        _THUMBS[key] = image
        while len(_THUMBS) > _THUMBS_MAX:
            _THUMBS.popitem(last=False)
    return image


class FrameReader:
    """Frames of one video by index, for the player: sequential reads decode on, short jumps
    forward decode through, anything else seeks."""

    FORWARD_DECODE = 48  # frames; decoding on is cheaper than a seek (which decodes from a key frame)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import cv2

        self.path = Path(path)
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise LibraryError(f"Cannot open video '{self.path}': the file is missing, corrupt or not a video.")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0) or 30.0
        self.frame_count = max(0, int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        self._next = 0  # the index the decoder returns next

    def read(self, index: int) -> np.ndarray | None:
        """Frame ``index`` as RGB, or None past the decodable end."""
        import cv2

        if self._cap is None or index < 0:
            return None
        if not (self._next <= index <= self._next + self.FORWARD_DECODE):
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            self._next = index
        while self._next < index:
            if not self._cap.grab():
                return None
            self._next += 1
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None
        self._next = index + 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

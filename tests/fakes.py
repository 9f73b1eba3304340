"""Hardware stand-ins shared by the test folders (imported as ``fakes``: pytest puts tests/ on
sys.path for its conftest)."""

import threading
import time


class DeadCamera:
    """What cv2.VideoCapture(i) gives for an absent camera."""

    def __init__(self, index: int) -> None:
        self.index = index

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return False

    def read(self):
        return False, None

    def set(self, prop: int, value: float) -> bool:
        return False

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        pass


def write_video(path, n_frames: int, fps: float, size: tuple[int, int] = (64, 48)):
    """A small mp4 standing in for a camera or a user's clip. Frame i is a flat grey of level
    7*i (mod 256) with a white bar at column i, so consecutive frames differ."""
    import cv2
    import numpy as np

    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for i in range(n_frames):
        img = np.full((h, w, 3), (7 * i) % 256, np.uint8)
        img[:, i % w] = 255
        writer.write(img)
    writer.release()
    return path


class FileCamera:
    """cv2.VideoCapture look-alike over a video file: a live camera for WebcamSource's
    ``capture_factory``. ``pace`` seconds per read (0 = as fast as the decoder goes), optionally
    looping like an endless camera; ``settings`` records what the source asked for (resolution)."""

    def __init__(self, path, pace: float = 0.0, loop: bool = False) -> None:
        import cv2

        self.path, self.pace, self.loop = path, pace, loop
        self.cap = cv2.VideoCapture(str(path))
        self.reads = 0
        self.settings: dict[int, float] = {}
        self.released = threading.Event()

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.cap.isOpened()

    def read(self):
        import cv2

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


def decode_all_rgb(path) -> list:
    """Reference decode of a video with plain OpenCV, as RGB arrays: the sources use the same
    decoder, so their sampled frames must match these exactly."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return out


def wait_until(predicate, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()

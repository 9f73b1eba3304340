"""Hardware stand-ins shared by the test folders (imported as ``fakes``: pytest puts tests/ on
sys.path for its conftest)."""


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

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

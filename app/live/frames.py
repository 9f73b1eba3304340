"""What the model saw: every frame handed to the engine's step, kept as a PNG named by its stream
second. ``narrate --save-frames DIR`` and the window's "Keep the frames the model saw" (into the
session's frames folder, ``app.session.frames_dir``) both use :class:`FrameSaver`; the session
review finds a step's picture by :func:`frame_name`."""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.atomic import private_folder

if TYPE_CHECKING:
    import numpy as np

    from model.engine_types import Engine, StepResult


def frame_name(t: float) -> str:
    """A saved frame's file name: its stream second, ``000123.0.png`` (``000123.5.png`` at 2 steps/s)."""
    return f"{t:08.1f}.png"


def _print_warning(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


class FrameSaver:
    """Every frame exactly as it was handed to the engine's step (the RGB array, before the
    processor resizes it), as a PNG named by its stream second (:func:`frame_name`), each written
    atomically (a temporary name renamed; not fsynced: these are for looking at, and a frame a crash
    loses is one second's picture). PNG encoding takes tens of milliseconds for a large frame, so it
    runs on a thread of its own behind a short queue: the stepping thread only hands the array over,
    and waits only when the disk falls ``depth`` frames behind (every frame is kept).

    ``label`` names the saver in its one error message (``--save-frames``, "Keeping frames");
    ``on_error`` gets that message, on the saver's thread (default: a warning on stderr)."""

    def __init__(
        self,
        folder: Path,
        depth: int = 8,
        label: str = "--save-frames",
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.folder = Path(folder)
        private_folder(self.folder)  # owner-only: frames of the camera or the screen
        self.saved = 0
        self.error: str | None = None
        self._label = label
        self._on_error = on_error or _print_warning
        self._queue: queue.Queue[tuple[float, np.ndarray] | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._write_all, name="save-frames", daemon=True)
        self._thread.start()

    def wrap(self, engine: Engine) -> None:
        """Save each image ``engine.step`` is given, then step."""
        step = engine.step

        def step_and_save(image: np.ndarray, t: float | None = None, **kwargs: Any) -> StepResult:
            if self.error is None and t is not None:
                self._queue.put((float(t), image))
            return step(image, t=t, **kwargs)

        engine.step = step_and_save  # type: ignore[method-assign]

    def _write_all(self) -> None:
        import cv2

        from model.atomic import write_bytes_atomic

        while (item := self._queue.get()) is not None:
            if self.error is not None:
                continue  # drain: the stepping thread must never block on a saver that gave up
            t, image = item
            path = self.folder / frame_name(t)
            try:
                ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                if not ok:
                    raise OSError("PNG encoding failed")
                write_bytes_atomic(path, png.tobytes(), fsync=False, private=True)
                self.saved += 1
            except (OSError, cv2.error) as e:
                self.error = f"{self._label}: could not write {path} ({e}); no more frames are saved"
                self._on_error(self.error)

    def close(self) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)
        self._thread.join()

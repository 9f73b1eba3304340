"""Run under a real X server with a window manager (tests/ui/test_overlay_wm.py starts Xvfb and openbox):
Pick a window... in the source picker, then a real click (xdotool) on another window. Prints one JSON
object: the region the picker filled in and that window's frame on the screen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from PySide6.QtWidgets import QApplication, QLabel  # noqa: E402

app = QApplication([])

from ui.source_picker import SCREEN, SourcePicker  # noqa: E402


def pump(seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.02)


target = QLabel("the window to share")
target.setGeometry(300, 200, 400, 260)
target.show()
picker = SourcePicker()
picker.setGeometry(900, 50, 360, 160)
picker.show()
picker.kind.setCurrentIndex(SCREEN)
pump(1.0)
started = picker.pick_window()
pump(1.0)  # xwininfo is waiting for the click
subprocess.run(["xdotool", "mousemove", "500", "330", "click", "1"], check=True)
end = time.time() + 10
while time.time() < end and not picker.region.text():
    pump(0.1)
g = target.frameGeometry()
print(json.dumps({"started": started, "region": picker.region.text(), "monitor": picker.monitor.currentData(),
                  "frame": [g.x(), g.y(), g.width(), g.height()]}), flush=True)  # fmt: skip
os._exit(0)

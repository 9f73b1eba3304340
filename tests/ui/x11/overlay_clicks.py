"""Run under a real X server with a window manager (tests/ui/test_overlay_wm.py starts Xvfb and openbox):
real clicks (XTest, through xdotool) on the overlay, and whether they reach the window below. Prints one
JSON object: {case: reached_below}."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from PySide6.QtWidgets import QApplication, QPushButton  # noqa: E402

app = QApplication([])

from app.live.qt import TokenChunk  # noqa: E402
from app.settings import OverlayOptions  # noqa: E402
from ui.overlay import OverlayWindow  # noqa: E402
from ui.subtitles import SubtitleFeed  # noqa: E402

clicks: list[int] = []
below = QPushButton("below")
below.setGeometry(0, 0, 1280, 800)
below.clicked.connect(lambda: clicks.append(1))
below.show()


def pump(n: int = 25) -> None:
    for _ in range(n):
        app.processEvents()
        time.sleep(0.02)


def reached(x: int, y: int) -> bool:
    clicks.clear()
    subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", "1"], check=True)
    pump()
    return bool(clicks)


pump(50)
feed = SubtitleFeed()
results = {}
for click_through in (False, True):
    o = OverlayWindow(feed, OverlayOptions(font_size=28, width=800, x=240, y=500, click_through=click_through))
    o.set_enabled(True)
    feed.on_token_streamed(TokenChunk(1.0 + click_through, "A red ball rolls across the frame."))
    pump(40)
    g = o.geometry()
    results[f"text, click-through {click_through}"] = reached(g.center().x(), g.bottom() - 20)
    results[f"beside the text, click-through {click_through}"] = reached(g.left() + 5, g.top() + 5)
    o.close()
    pump()
feed.clear()
o = OverlayWindow(feed, OverlayOptions(font_size=28, width=800, x=240, y=500))
o.set_enabled(True)
o._hint_until = 0.0
o.refresh()
pump()
results["empty"] = reached(640, 560)
print(json.dumps(results), flush=True)
os._exit(0)

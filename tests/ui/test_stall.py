"""The GUI thread is never blocked: a 5 ms timer measures the longest gap in the event loop while
the demo model narrates the sample clip in real time through the real app (fresh process, real
loader, engine and capture threads, overlay shown, answers of up to 64 tokens streamed).

Run directly (``python tests/ui/test_stall.py MODEL CLIP``) it prints the measurement as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BUDGET_MS = 50.0
ONCE_MS = 150.0  # one stall between BUDGET_MS and this is the machine's, not the app's (see the test)
REPO = Path(__file__).resolve().parents[2]


def probe_app(model: str, clip: str) -> dict:
    """Open the main window, load ``model``, narrate ``clip`` in real time; the largest stalls."""
    from PySide6.QtCore import QCoreApplication, QObject, QSettings, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from app.settings import LiveOptions, ModelOptions, Settings, SourceOptions
    from ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    QCoreApplication.setApplicationName(f"stall-probe-{os.getpid()}")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, os.environ["STREAMO_LIVE_DATA"])
    window = MainWindow(Settings())
    window.show()
    window.toggle_overlay(True)
    live = LiveOptions(model_decides=False, talkativeness=85, max_answer_tokens=64)
    window.live_tab.set_options(SourceOptions(spec=clip, realtime=True), live)

    class Probe(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.phase, self.last, self.ticks = "load", None, 0
            self.worst = {"load": 0.0, "narrate": 0.0}
            self.over: list[float] = []  # stalls over BUDGET_MS while narrating, ms
            self.timer = QTimer(self)
            self.timer.setTimerType(Qt.TimerType.PreciseTimer)
            self.timer.timeout.connect(self.tick)
            self.timer.start(5)

        def tick(self) -> None:
            now = time.perf_counter()
            if self.last is not None:
                gap = (now - self.last - 0.005) * 1000
                self.worst[self.phase] = max(self.worst[self.phase], gap)
                if self.phase == "narrate" and gap >= BUDGET_MS:
                    self.over.append(round(gap, 1))
            self.last = now
            self.ticks += self.phase == "narrate"

    probe = Probe()
    controller = window.controller

    def on_ready(info: object) -> None:
        probe.phase = "narrate"
        window.live_tab.start()

    controller.model_ready.connect(on_ready)
    controller.load_failed.connect(lambda text: app.exit(3))
    controller.run_finished.connect(app.quit)
    QTimer.singleShot(0, lambda: window.load_model(ModelOptions(source=model, precision="fp32", device="cpu")))
    QTimer.singleShot(120_000, lambda: app.exit(4))
    code = app.exec()
    result = {
        "code": code,
        "load_ms": round(probe.worst["load"], 1),
        "narrate_ms": round(probe.worst["narrate"], 1),
        "narrate_over_ms": probe.over,
        "ticks": probe.ticks,
        "subtitles": len(window.feed.history),
        "preview_frames": window.live_tab.preview.frames_shown,
        "overlay_painted": len(window.overlay.painted_texts),
    }
    window.close()
    return result


@pytest.mark.slow
def test_event_loop_never_stalls_while_the_demo_model_narrates(tiny_ckpt, sample_clip, tmp_path):
    env = dict(os.environ, STREAMO_LIVE_DATA=str(tmp_path))
    out = subprocess.run(
        [sys.executable, __file__, str(tiny_ckpt), str(sample_clip)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=180,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert out.returncode == 0 and lines, out.stdout + out.stderr
    r = json.loads(lines[-1])
    print(f"largest event-loop stall: {r['narrate_ms']} ms narrating, {r['load_ms']} ms loading (first torch import)")
    assert r["code"] == 0
    assert r["subtitles"] > 0 and r["overlay_painted"] > 0
    assert r["preview_frames"] > 50  # the 10 fps clip previewed at its own rate, not the model's
    assert r["ticks"] > 1000  # the probe itself ran throughout the 10 s
    # Work on the GUI thread (a decode, a load, a wait) recurs with the frames, answers or paints that cause it: two
    # stalls over the budget fail, and so does any over ONCE_MS. A single one under it is taken for the machine (a
    # full-suite run on this 2-core machine once saw 77 ms, where 8 runs of this test alone peaked at 9-25 ms).
    assert len(r["narrate_over_ms"]) <= 1 and r["narrate_ms"] < ONCE_MS, r["narrate_over_ms"]
    # Loading may stall once, while torch's C extension initialises on the engine thread with the
    # GIL held; the first second of a cold start. Everything after that is bounded above.
    assert r["load_ms"] < 1500


if __name__ == "__main__":
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    print(json.dumps(probe_app(sys.argv[1], sys.argv[2])))

"""Under a real X server and a reparenting window manager (Xvfb and openbox), with real clicks: the overlay's
click-through passes clicks on the text to the window below (it once did not, under openbox), the rest of
the window never takes clicks, and an empty overlay is not there at all; Pick a window... shares the area of
the window clicked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).with_name("x11")


def run_under_openbox(script: str, tmp_path: Path) -> dict:
    """Run ``x11/<script>`` under a fresh Xvfb with openbox; the JSON object it printed last."""
    run = tmp_path / "run.sh"
    run.write_text(f"openbox >/dev/null 2>&1 &\nsleep 1\n{sys.executable} {SCRIPTS / script}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY")}
    out = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", "bash", str(run)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, out.stdout + out.stderr
    return json.loads(lines[-1])


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("xvfb-run", "openbox", "xdotool")),
    reason="needs xvfb, openbox and xdotool (scripts/setup.sh installs them)",
)
def test_clicks_pass_where_they_should_under_openbox(tmp_path):
    reached = run_under_openbox("overlay_clicks.py", tmp_path)
    assert reached == {
        "text, click-through False": False,  # the caption takes the click: it can be dragged
        "beside the text, click-through False": True,
        "text, click-through True": True,
        "beside the text, click-through True": True,
        "empty": True,
    }


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("xvfb-run", "openbox", "xdotool", "xwininfo")),
    reason="needs xvfb, openbox, xdotool and xwininfo (scripts/setup.sh installs them)",
)
def test_pick_a_window_shares_the_clicked_windows_area(tmp_path):
    r = run_under_openbox("window_pick.py", tmp_path)
    assert r["started"] and r["monitor"] == 1
    x, y, w, h = (int(v) for v in r["region"].split(","))
    fx, fy, fw, fh = r["frame"]
    assert abs(x - fx) <= 2 and abs(y - fy) <= 2 and abs(w - fw) <= 2 and abs(h - fh) <= 2  # the window, frame and all

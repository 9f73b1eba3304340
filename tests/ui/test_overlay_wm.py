"""The overlay under a real X server and a reparenting window manager (Xvfb and openbox), clicked with
real input events: click-through passes clicks on the text to the window below (it once did not, under
openbox), the rest of the window never takes clicks, and an empty overlay is not there at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("x11") / "overlay_clicks.py"


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("xvfb-run", "openbox", "xdotool")),
    reason="needs xvfb, openbox and xdotool (scripts/setup.sh installs them)",
)
def test_clicks_pass_where_they_should_under_openbox(tmp_path):
    run = tmp_path / "run.sh"
    run.write_text(f"openbox >/dev/null 2>&1 &\nsleep 1\n{sys.executable} {SCRIPT}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY")}
    out = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", "bash", str(run)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, out.stdout + out.stderr
    reached = json.loads(lines[-1])
    assert reached == {
        "text, click-through False": False,  # the caption takes the click: it can be dragged
        "beside the text, click-through False": True,
        "text, click-through True": True,
        "beside the text, click-through True": True,
        "empty": True,
    }

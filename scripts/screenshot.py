"""Render the main window, the subtitle overlay and the voice settings into PNGs for the docs.

    .venv/bin/python scripts/screenshot.py [--out docs/screenshots]

Runs the demo shapes model over the sample clip through the real app (engine and capture threads),
then grabs the main window and the overlay (drawn over a frame of the clip, as it would sit
over another application). Without a DISPLAY it starts its own Xvfb, so it needs the Debian
package ``xvfb``. Settings and session files go to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_xvfb() -> subprocess.Popen | None:
    """An Xvfb of our own when there is no display; None when one is already there."""
    if os.environ.get("DISPLAY"):
        return None
    if shutil.which("Xvfb") is None:
        sys.exit("no DISPLAY and no Xvfb: install the Debian package 'xvfb' (apt-get install xvfb)")
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()  # Xvfb writes its display number once it accepts clients
    if not number:
        proc.kill()
        sys.exit("Xvfb did not start")
    os.environ["DISPLAY"] = f":{number}"
    return proc


def save_png(image, path: Path) -> int:  # noqa: ANN001 - a QImage
    """Save at the highest PNG compression (quality 0); UI pictures stay well under 300 KB."""
    image.save(str(path), "PNG", 0)
    return path.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        default=str(REPO / "docs" / "screenshots"),
        help="folder for main.png, overlay.png and voice_settings.png",
    )
    parser.add_argument("--clip", default=str(REPO / "assets" / "sample.mp4"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix="streamo-live-shot-"))
    os.environ["STREAMO_LIVE_DATA"] = str(tmp / "data")
    os.environ["HF_HUB_OFFLINE"] = "1"
    xvfb = start_xvfb()
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    try:
        return shoot(out, Path(args.clip), tmp)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


def shoot(out: Path, clip: Path, tmp: Path) -> int:
    from PySide6.QtCore import QCoreApplication, QEventLoop, QPoint, QSettings, QTimer
    from PySide6.QtGui import QPainter

    from app.settings import LiveOptions, ModelOptions, OverlayOptions, Settings, SourceOptions
    from ui.app import create_application
    from ui.main_window import MainWindow

    app = create_application()
    QCoreApplication.setApplicationName("streamo-live-screenshot")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / "settings"))
    window = MainWindow(Settings())
    window.resize(1280, 800)
    window.overlay.apply_options(OverlayOptions(font_size=22, width=760))
    window.show()

    def wait_for(signal, timeout_ms: int) -> None:  # noqa: ANN001
        loop = QEventLoop()
        signal.connect(loop.quit)
        QTimer.singleShot(timeout_ms, loop.quit)
        loop.exec()

    c = window.controller
    # A fresh data folder: the demo's shapes adapter trains on first use (about a minute or two).
    os.environ["STREAMO_LIVE_DEMO_ADAPTER"] = "1"
    window.load_model(ModelOptions(source="demo", device="cpu"))
    wait_for(c.model_ready, 900_000)
    if c.model is None:
        print(f"the demo model did not load: {window.banner.text()}", file=sys.stderr)
        return 1
    live = LiveOptions(subtitle_seconds=60.0)
    os.chdir(REPO)  # the picker then shows a short relative path
    spec = os.path.relpath(clip, REPO) if clip.resolve().is_relative_to(REPO) else str(clip)
    window.live_tab.set_options(SourceOptions(spec=spec, realtime=False), replace(live, fps=1.0))
    window.toggle_overlay(True)
    window.live_tab.start()
    wait_for(c.run_finished, 120_000)
    window.banner.hide()  # "the video ended" adds nothing to a picture
    QTimer.singleShot(300, app.quit)  # let the last repaint land
    app.exec()

    main_png = out / "main.png"
    size = save_png(window.grab().toImage(), main_png)
    print(f"{main_png}: {size / 1024:.0f} KB")

    # The overlay as it sits over another application: here, over a frame of the clip.
    frame = window.live_tab.preview._scaled_frame(window.live_tab.preview.image_rect())
    backdrop = frame.scaled(960, 540).convertToFormat(frame.Format.Format_ARGB32)
    overlay = window.overlay.grab().toImage()
    painter = QPainter(backdrop)
    painter.drawImage(
        QPoint((backdrop.width() - overlay.width()) // 2, backdrop.height() - overlay.height() - 30), overlay
    )
    painter.end()
    overlay_png = out / "overlay.png"
    size = save_png(backdrop, overlay_png)
    print(f"{overlay_png}: {size / 1024:.0f} KB")

    # Voice settings, as Voice > Voice settings opens them.
    from ui.voice_settings import VoiceSettingsDialog

    dialog = VoiceSettingsDialog(window.voice.options, parent=window)
    dialog.show()
    QTimer.singleShot(300, app.quit)
    app.exec()
    voice_png = out / "voice_settings.png"
    size = save_png(dialog.grab().toImage(), voice_png)
    print(f"{voice_png}: {size / 1024:.0f} KB")
    dialog.close()

    if not shoot_training(window, app, out, tmp, wait_for):
        return 1
    window.close()
    return 0


def shoot_training(window, app, out: Path, tmp: Path, wait_for) -> bool:  # noqa: ANN001
    """The Training tab: a project of synthetic shape clips (the library and the annotator), then a
    real training run of the demo model from the train panel (the curves and the evaluation)."""
    from PySide6.QtCore import QTimer

    from model.train.synthetic import make_dataset

    project = tmp / "my-clips"
    make_dataset(project, 20, seed=5, size=(320, 240), max_events=2)  # 2 held out
    tab = window.training_tab
    window.tabs.setCurrentWidget(tab)
    if not tab.clips.open_project(project):
        print("could not open the screenshot project", file=sys.stderr)
        return False
    annotator = tab.clips.annotator
    tab.clips.library_view.list.setCurrentRow(1)
    QTimer.singleShot(300, app.quit)
    app.exec()
    annotator.step_seconds(3)  # the playhead inside the first event (Standby on the timeline)
    QTimer.singleShot(500, app.quit)
    app.exec()
    size = save_png(window.grab().toImage(), out / "training_clips.png")
    print(f"{out / 'training_clips.png'}: {size / 1024:.0f} KB")

    panel = tab.panel
    tab.pages.setCurrentWidget(panel)
    panel.name.setText("my-shapes")
    panel.location.setText(str(tmp / "adapters"))
    panel.device.setCurrentText("cpu")
    panel.advanced_button.setChecked(True)
    panel.steps.setValue(400)
    panel.advanced_button.setChecked(False)
    ended = []
    panel.training_running.connect(lambda running: ended.append(running) if not running else None)
    if not panel.start():
        print(f"training did not start: {panel.error.text()}", file=sys.stderr)
        return False
    while not ended:  # training, then the evaluation of base vs adapter (a few minutes on a CPU)
        wait_for(panel.training_running, 600_000)
    wait_for(window.controller.model_ready, 60_000)  # the live model comes back
    window.banner.hide()
    QTimer.singleShot(500, app.quit)
    app.exec()
    size = save_png(window.grab().toImage(), out / "training_panel.png")
    print(f"{out / 'training_panel.png'}: {size / 1024:.0f} KB")
    return True


if __name__ == "__main__":
    sys.exit(main())

"""The issue-18 walk, as a new user does it, in the real window, with screenshots.

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python scripts/walkthrough_training.py OUT

A fresh user (settings and data in OUT): two clips, one a copy of the other; on the first an event
("A red box slides across the frame.", 3-7 s), a question at 5 s and its answer at 6 s; the dataset
preview; Start training with the tab's defaults (Balanced, the demo model); the evaluation; Use in Live;
the clip played in Live. Screenshots go to OUT/*.png, what Live said to OUT/live.txt. Exit 0 when Live
narrated the clip with its caption and nothing else.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "walkthrough").absolute()
OUT.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("XDG_CONFIG_HOME", str(OUT / "config"))
os.environ.setdefault("STREAMO_LIVE_DATA", str(OUT / "data"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CAPTION = "A red box slides across the frame."
QUESTION, ANSWER = "What colour is the box?", "It is red."


def main() -> int:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from app.settings import Settings
    from ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv)
    app.setOrganizationName("streamo-live-walkthrough")
    app.setApplicationName("streamo-live")

    def wait(predicate, seconds: float, what: str) -> None:
        end = time.monotonic() + seconds
        while not predicate():
            if time.monotonic() > end:
                raise SystemExit(f"timed out waiting for: {what}")
            app.processEvents()
            time.sleep(0.02)

    def settle(seconds: float = 0.5) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)

    def shot(name: str, widget=None) -> None:
        settle(0.3)
        (widget or window).grab().save(str(OUT / f"{name}.png"))
        print(f"screenshot {OUT / name}.png", flush=True)

    footage = OUT / "footage"
    footage.mkdir(exist_ok=True)
    from model.train.synthetic import write_sliding_box

    clip = write_sliding_box(footage / "box.mp4", size=(160, 120))
    shutil.copy(clip, footage / "box-copy.mp4")
    project = OUT / "project"
    project.mkdir(exist_ok=True)

    window = MainWindow(Settings())
    window.resize(1360, 860)
    window.show()
    settle(1.0)

    # 1. Clips: a project, two clips, annotations through the annotator's keys and form.
    window.tabs.setCurrentIndex(1)
    tab = window.training_tab
    page = tab.clips
    assert page.open_project(project)
    page.library_view.import_paths([footage / "box.mp4", footage / "box-copy.mp4"])
    wait(lambda: len(page.library.clips) == 2, 30, "the import")
    page.library_view.list.setCurrentRow(0)
    settle(1.0)
    a = page.annotator

    def type_and_enter(text: str) -> None:
        QTest.keyClicks(a.form.text, text)
        QTest.keyClick(a.form.text, Qt.Key.Key_Return)
        settle(0.3)

    def at_second(second: int) -> None:
        a.seek(second * a.clip.block)
        settle(0.2)

    a.view.setFocus()
    at_second(3)
    QTest.keyClick(a.view, Qt.Key.Key_BracketLeft)
    at_second(6)
    QTest.keyClick(a.view, Qt.Key.Key_BracketRight)
    type_and_enter(CAPTION)
    at_second(5)
    a.view.setFocus()
    QTest.keyClick(a.view, Qt.Key.Key_Q)
    type_and_enter(QUESTION)
    at_second(6)
    a.view.setFocus()
    QTest.keyClick(a.view, Qt.Key.Key_A)
    type_and_enter(ANSWER)
    at_second(4)
    shot("1-annotator")

    # 2. Train: the preview, then Start with the defaults (Balanced; the demo model).
    tab.pages.setCurrentIndex(1)
    panel = tab.panel
    panel.name.setText("my-box")
    wait(lambda: "steps" in panel.estimate_label.text(), 120, "the estimate")
    shot("2-train-form")
    dialog = panel.preview_data(offer_start=False)
    if dialog is not None:
        wait(lambda: getattr(dialog, "ready", True), 120, "the preview")
        dialog.resize(1100, 760)
        shot("3-preview", dialog)
        dialog.close()
    assert panel.start(), panel.error.text()
    wait(lambda: not panel.running and panel.last_evaluation is not None, 1800, "training and its evaluation")
    shot("4-trained-and-evaluated")
    shot("4b-evaluation", panel.eval_view)  # the whole view: cautions, scores, per-clip strips and answers

    # 3. Use in Live, and play the clip.
    QTest.mouseClick(panel.use_button, Qt.MouseButton.LeftButton)
    wait(lambda: window.controller.model is not None, 300, "the live model")
    shot("5-live-loaded")
    from app.settings import SourceOptions
    from model.protocol import RESPONSE

    live = window.live_tab
    live.set_options(SourceOptions(spec=str(clip), realtime=False), live.live_options())
    said: list[tuple[float, str]] = []
    steps: list[float] = []

    def on_step(report) -> None:
        record = report.record
        steps.append(record.t)
        if record.state == RESPONSE:
            said.append((record.t, record.text))

    window.controller.step_finished.connect(on_step)
    assert live.start()
    wait(lambda: bool(steps), 300, "the first step")
    wait(lambda: window.controller.state == "idle", 300, "the clip played")
    settle(1.0)
    shot("6-live-narrated")
    (OUT / "live.txt").write_text("".join(f"[{t:05.1f}] {text}\n" for t, text in said), encoding="utf-8")
    print("Live said:", said, flush=True)
    ok = [text.strip() for _, text in said] == [CAPTION]
    window.close()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

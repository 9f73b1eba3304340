"""The annotator on real footage: the longest GUI-thread stall while a long 1080p clip is played
forwards and backwards, sought at random, scrubbed and (where the strip zooms) zoomed.

    .venv/bin/python -m bench.bench_annotator                     # 90 s of 1080p at 30 fps (about 2 minutes)
    .venv/bin/python -m bench.bench_annotator --seconds 300       # the issue's 5-minute clip
    .venv/bin/python -m bench.bench_annotator --clip my.mp4       # any video file

The clip is written by OpenCV with the whole picture moving, so every frame costs a real decode
(MPEG-4 Part 2: OpenCV's writer puts a key frame every 12 frames whatever it is asked, so a seek
here decodes at most 12 frames; footage with a key frame every few seconds, as phones and screen
recorders write, costs more per seek: try yours with ``--clip``). It is opened in the real
Annotator (offscreen) through a real Library, then driven through phases; a 5 ms precise timer
measures the longest gap in the event loop in each (minus its own 5 ms), which is the longest the
window could not repaint or take a key. ``shown`` counts the pictures the view displayed in the
phase (the picture follows the playhead; fewer than the ticks means frames were skipped to keep
up). What must hold: no phase stalls the GUI for more than about 50 ms. The figures move with the
machine's load: compare runs made one after the other.

Measured on the 2-core development machine (shared, load about 2.5; 90 s clip, 4 s phases), the
longest stall per phase, the annotator before issue 18 (decoding on the GUI thread) -> after:
play forward 30 -> 13 ms, reverse play 1x 205 -> 7 ms, reverse 4x 188 -> 12 ms, random seeks
344 -> 11 ms, scrubbing 234 -> 8 ms (25 pictures shown in both), zoomed strip -> 21 ms; in all
344 -> 21 ms. Under a heavier load (about 5) the old annotator stalled up to 664 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def write_clip(path: Path, seconds: float, fps: float, size: tuple[int, int]) -> Path:
    """A clip whose whole picture moves: a textured backdrop panning one pixel a frame, a bar
    sweeping across and the frame number drawn large (so a wrong frame would be seen)."""
    import cv2
    import numpy as np

    w, h = size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (w + h))], -1).astype(np.uint8)
    base = cv2.add(base, rng.integers(0, 40, (h, w, 3), dtype=np.uint8))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise SystemExit(f"OpenCV cannot write {path}")
    for i in range(int(seconds * fps)):
        img = np.roll(base, i % w, axis=1)
        x = (i * 17) % w
        img[:, x : x + 40] = 255
        cv2.putText(img, str(i), (60, 200), cv2.FONT_HERSHEY_SIMPLEX, 6, (0, 0, 0), 12)
        writer.write(img)
    writer.release()
    return path


def run(clip: Path, phase_seconds: float, seed: int) -> dict:
    from PySide6.QtCore import QCoreApplication, QObject, QSettings, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from app.training.library import Library
    from ui.training.annotator import Annotator

    app = QApplication.instance() or QApplication([])
    QCoreApplication.setApplicationName(f"bench-annotator-{os.getpid()}")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    tmp = tempfile.mkdtemp(prefix="streamo-bench-annotator-")
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, tmp)
    library = Library(Path(tmp) / "project")
    report = library.import_videos([clip])
    if not report.added:
        raise SystemExit(f"the library did not import {clip}: {report.failed}")
    clip_id = report.added[0].id

    annotator = Annotator()
    annotator.set_library(library)
    annotator.resize(1280, 800)
    annotator.show()
    shown = [0]
    set_image = annotator.view.set_image

    def counting(image):  # noqa: ANN001, ANN202 - the view's own method, counted
        shown[0] += image is not None
        return set_image(image)

    annotator.view.set_image = counting
    rng = random.Random(seed)
    has_zoom = hasattr(annotator, "zoom_in")

    class Probe(QObject):
        """The 5 ms ticker: the longest gap between its ticks per phase."""

        def __init__(self) -> None:
            super().__init__()
            self.phase, self.last = "", None
            self.worst: dict[str, float] = {}
            self.ticks: dict[str, int] = {}
            self.shown: dict[str, int] = {}  # pictures displayed in the phase
            self._shown_at = 0
            self.timer = QTimer(self)
            self.timer.setTimerType(Qt.TimerType.PreciseTimer)
            self.timer.timeout.connect(self.tick)
            self.timer.start(5)

        def enter(self, phase: str) -> None:
            if self.phase:
                self.shown[self.phase] = shown[0] - self._shown_at
            self.phase, self.last, self._shown_at = phase, None, shown[0]
            if phase:
                self.worst[phase], self.ticks[phase] = 0.0, 0

        def tick(self) -> None:
            now = time.perf_counter()
            if self.phase and self.last is not None:
                self.worst[self.phase] = max(self.worst[self.phase], (now - self.last - 0.005) * 1000)
                self.ticks[self.phase] += 1
            self.last = now

    probe = Probe()
    a = annotator
    middle = lambda: a.frames // 2  # noqa: E731

    def seek_random() -> None:
        a.seek(rng.randrange(0, max(1, a.frames)))

    def scrub() -> None:  # a slider drag: a few hundred frames either way, 60 times a second
        a.slider.setValue(max(0, min(a.frames - 1, a.slider.value() + rng.randrange(-300, 300))))

    def zoom_and_scroll() -> None:
        if rng.random() < 0.3:
            (a.zoom_in if rng.random() < 0.6 else a.zoom_out)()
        a.seek(rng.randrange(0, max(1, a.frames)))

    # (name, what starts it, what repeats in it and how often in ms)
    phases: list[tuple[str, object, object, int]] = [
        ("open", lambda: a.set_clip(clip_id), None, 0),
        ("play forward 1x", lambda: (a.seek(0), a.play(1)), None, 0),
        ("reverse play 1x (J)", lambda: (a.pause(), a.seek(middle()), a.play(-1)), None, 0),
        ("reverse play 4x (J J J)", lambda: (a.pause(), a.seek(middle()), a.play(-1), a.play(-1), a.play(-1)), None, 0),
        ("random seeks (10/s)", a.pause, seek_random, 100),
        ("scrub the slider (60/s)", lambda: a.slider.setSliderDown(True), scrub, 16),
    ]
    if has_zoom:
        phases.append(("zoomed strip: zoom and seek (10/s)", None, zoom_and_scroll, 100))
    phases.append(("switch clips", lambda: (a.set_clip(None), a.set_clip(clip_id)), None, 0))
    order = iter(phases)
    repeat = QTimer()
    repeat.setTimerType(Qt.TimerType.PreciseTimer)

    def next_phase() -> None:
        repeat.stop()
        if repeat.receivers("2timeout()") > 0:
            repeat.timeout.disconnect()
        phase = next(order, None)
        if phase is None:
            probe.enter("")
            a.pause()
            app.quit()
            return
        name, start, again, every = phase
        a.slider.setSliderDown(False)  # the scrub phase's drag ends with it
        probe.enter(name)
        if start is not None:
            start()
        if again is not None:
            repeat.timeout.connect(again)
            repeat.start(every)
        QTimer.singleShot(int(phase_seconds * 1000), next_phase)

    QTimer.singleShot(500, next_phase)  # the window painted once first
    QTimer.singleShot(int((len(phases) + 2) * phase_seconds * 1000) + 60_000, lambda: app.exit(4))
    code = app.exec()
    result = {
        "code": code,
        "clip": str(clip),
        "frames": a.frames,
        "phases": {
            k: {"worst_stall_ms": round(probe.worst[k], 1), "ticks": probe.ticks[k], "shown": probe.shown.get(k, 0)}
            for k in probe.worst
        },
    }
    a.shutdown()
    a.close()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_annotator", description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", type=Path, help="an existing video instead of the generated one")
    ap.add_argument("--seconds", type=float, default=90.0, help="length of the generated clip")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--keep", type=Path, help="write the generated clip here and keep it (reused if it exists)")
    ap.add_argument("--phase", type=float, default=4.0, help="seconds per phase")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="streamo-bench-clip-") as tmp:
        clip = args.clip
        if clip is None:
            clip = args.keep or Path(tmp) / "long_1080p.mp4"
            if not clip.exists():
                w, h = (int(v) for v in args.size.split("x"))
                t0 = time.perf_counter()
                clip.parent.mkdir(parents=True, exist_ok=True)
                write_clip(clip, args.seconds, args.fps, (w, h))
                print(
                    f"wrote {clip} ({args.seconds:g} s, {w}x{h}, {args.fps:g} fps) in {time.perf_counter() - t0:.0f} s",
                    file=sys.stderr,
                )
        result = run(clip, args.phase, args.seed)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['clip']}: {result['frames']} frames")
        print(f"{'phase':<38} {'worst stall ms':>14} {'ticks':>6} {'shown':>6}")
        for name, r in result["phases"].items():
            print(f"{name:<38} {r['worst_stall_ms']:>14.1f} {r['ticks']:>6} {r['shown']:>6}")
        worst = max(r["worst_stall_ms"] for r in result["phases"].values())
        print(f"longest GUI-thread stall: {worst:.1f} ms")
    return 0 if result["code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Render assets/sample.mp4: a short deterministic clip with distinct visual events, used by the
demo, the tests and the benchmarks when no real video is at hand.

Timeline (seconds, at the default 10 s / 10 fps):
  0-1    plain grey background, frame counter only
  1-4    a red ball enters from the left, crosses the frame and leaves on the right
  4.5-7  a blue square appears in the centre, grows, then vanishes
  7-9.5  a green triangle falls from the top and lands on the floor line
  9.5-10 the triangle turns yellow and stays

Frames are pure functions of the frame index (no randomness), so the clip is reproducible; the
exact bytes may still differ across OpenCV/FFmpeg builds.

Usage:  python scripts/make_sample_clip.py [--out assets/sample.mp4] [--seconds 10] [--fps 10]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT = 320, 240
BACKGROUND = (128, 128, 128)  # BGR grey
FLOOR_Y = 200

# (start, end, description) in seconds; printed so a demo script or a human can check answers.
EVENTS = [
    (1.0, 4.0, "a red ball crosses the frame from left to right"),
    (4.5, 7.0, "a blue square appears in the centre, grows and disappears"),
    (7.0, 9.5, "a green triangle falls from the top and lands on the floor"),
    (9.5, 10.0, "the triangle turns yellow"),
]


def _lerp(a: float, b: float, u: float) -> float:
    return a + (b - a) * min(1.0, max(0.0, u))


def render(index: int, fps: float) -> np.ndarray:
    """Frame ``index`` as a BGR image."""
    t = index / fps
    img = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
    cv2.line(img, (0, FLOOR_Y), (WIDTH, FLOOR_Y), (90, 90, 90), 2)

    if 1.0 <= t < 4.0:  # red ball, left to right, fully off-screen at both ends
        r = 22
        x = int(_lerp(-r, WIDTH + r, (t - 1.0) / 3.0))
        cv2.circle(img, (x, 110), r, (0, 0, 230), -1, cv2.LINE_AA)

    if 4.5 <= t < 7.0:  # blue square growing in the centre
        half = int(_lerp(8, 60, (t - 4.5) / 2.5))
        cx, cy = WIDTH // 2, 110
        cv2.rectangle(img, (cx - half, cy - half), (cx + half, cy + half), (220, 60, 0), -1)

    if t >= 7.0:  # green triangle falls, lands at 9 s, turns yellow at 9.5 s
        size = 30
        base_y = int(_lerp(-5, FLOOR_Y, (t - 7.0) / 2.0))
        cx = 240
        pts = np.array([[cx - size, base_y], [cx + size, base_y], [cx, base_y - int(size * 1.6)]], np.int32)
        colour = (0, 220, 255) if t >= 9.5 else (40, 180, 40)
        cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)

    # Big counter: frame number and time, so a viewer (or a test) can tell frames apart.
    cv2.putText(img, f"{index:03d}", (8, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 3, cv2.LINE_AA)
    cv2.putText(img, f"t={t:4.1f}s", (8, 232), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def make_clip(out: Path, seconds: float = 10.0, fps: float = 10.0) -> int:
    """Write the clip; returns the number of frames written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    n = round(seconds * fps)
    tmp = out.with_name(out.stem + ".part" + out.suffix)  # keep the suffix: OpenCV picks the container from it
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write mp4v video to {tmp}")
    try:
        for i in range(n):
            writer.write(render(i, fps))
    finally:
        writer.release()
    tmp.replace(out)
    return n


def verify(path: Path, expected_frames: int) -> None:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise RuntimeError(f"{path}: OpenCV cannot read the clip back")
        decoded = 0
        while cap.grab():
            decoded += 1
        reported = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    if decoded != expected_frames:
        raise RuntimeError(f"{path}: decoded {decoded} frames, wrote {expected_frames} (container reports {reported})")


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=root / "assets" / "sample.mp4")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fps", type=float, default=10.0)
    args = p.parse_args(argv)
    n = make_clip(args.out, args.seconds, args.fps)
    verify(args.out, n)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({n} frames, {WIDTH}x{HEIGHT} @ {args.fps:g} fps, {size / 1024:.0f} KiB)")
    for start, end, what in EVENTS:
        if start < args.seconds:
            print(f"  {start:4.1f}-{min(end, args.seconds):4.1f} s  {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

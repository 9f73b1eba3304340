"""Synthetic captioned clips: coloured shapes that appear, move and leave, with raw annotations.

They back the learning test (a model that trains on them must narrate them) and the demo adapter
(``model/train/demo.py``), so they look like the bundled sample clip: a grey background with a
floor line, a frame counter, a red ball crossing, a blue square growing, a green triangle falling.

Timing follows the Streamo turn convention with first-frame sampling: an event visible in the
frames at seconds ``appear .. leave - 1`` is annotated ``st_time = appear + 1`` and
``end_time = leave`` ("time T" is the turn ``<T-1s-Ts>``), so the converter labels exactly the
turns whose frame shows the shape as Standby and the first turn without it as Response.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BACKGROUND = (128, 128, 128)  # BGR grey, as the sample clip
FLOOR = 0.83  # floor line height, share of the frame


@dataclass(frozen=True)
class Shape:
    key: str
    colour: tuple[int, int, int]  # BGR
    caption: str


SHAPES: dict[str, Shape] = {
    s.key: s
    for s in (
        Shape("ball", (0, 0, 230), "A red ball rolls across the frame."),
        Shape("square", (220, 60, 0), "A blue square grows in the centre and vanishes."),
        Shape("triangle", (40, 180, 40), "A green triangle falls to the floor."),
    )
}


@dataclass(frozen=True)
class Event:
    shape: str
    appear: int  # first second whose frame shows it
    leave: int  # first second whose frame no longer shows it

    @property
    def caption(self) -> str:
        return SHAPES[self.shape].caption

    def annotation(self) -> dict:
        return {"content": self.caption, "st_time": float(self.appear + 1), "end_time": float(self.leave), "time": ""}


def _lerp(a: float, b: float, u: float) -> float:
    return a + (b - a) * min(1.0, max(0.0, u))


# Footage without the demo's shapes, so the demo learns silence on it: plain frames, noise, a test
# pattern (colour bars: red, green and blue areas that are not shapes), a desktop-like screen and a
# photo-like scene.
BACKGROUNDS = ("grey", "black", "noise", "gradient", "bright", "bars", "screen", "photo")
_BARS = [(192, 192, 192), (0, 192, 192), (192, 192, 0), (0, 192, 0), (192, 0, 192), (0, 0, 192), (192, 0, 0)]  # BGR


def _photo(size: tuple[int, int]) -> np.ndarray:
    """A smooth, textured colour scene (a stand-in for a webcam photo), the same for every frame."""
    import cv2

    w, h = size
    rng = np.random.default_rng(7)
    coarse = rng.integers(20, 235, (6, 8, 3)).astype(np.uint8)
    scene = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    return np.clip(scene + rng.integers(-12, 13, (h, w, 3)), 0, 255).astype(np.uint8)


def background(kind: str, index: int, size: tuple[int, int]) -> np.ndarray:
    """A BGR frame of footage with nothing of the demo's on it (``index``: the frame, for noise, the
    screen's scrolling text and the photo's flicker)."""
    import cv2

    w, h = size
    if kind == "black":
        return np.zeros((h, w, 3), np.uint8)
    if kind == "bright":
        return np.full((h, w, 3), 230, np.uint8)
    if kind == "noise":
        return np.random.default_rng(index).integers(0, 256, (h, w, 3), dtype=np.uint8)
    if kind == "gradient":
        ramp = np.linspace(30, 220, w, dtype=np.float32)[None, :, None]
        return np.broadcast_to(ramp * np.array([1.0, 0.8, 0.6], np.float32), (h, w, 3)).astype(np.uint8).copy()
    if kind == "bars":
        img = np.zeros((h, w, 3), np.uint8)
        for i, colour in enumerate(_BARS):
            img[: int(h * 0.75), i * w // len(_BARS) : (i + 1) * w // len(_BARS)] = colour
        img[int(h * 0.75) :] = (40, 40, 40)
        return img
    if kind == "screen":  # a dark desktop, a light window with a title bar and lines of text scrolling
        img = np.full((h, w, 3), (60, 40, 30), np.uint8)
        x0, y0, x1, y1 = w // 10, h // 8, w - w // 10, h - h // 6
        cv2.rectangle(img, (x0, y0), (x1, y1), (235, 235, 235), -1)
        cv2.rectangle(img, (x0, y0), (x1, y0 + h // 14), (120, 90, 60), -1)
        for k in range(12):
            y = y0 + h // 8 + ((k * h // 20 - index * 3) % (y1 - y0 - h // 6))
            cv2.line(img, (x0 + 8, y), (x0 + 8 + (37 * (k + index // 8)) % (x1 - x0 - 16), y), (90, 90, 90), 2)
        return img
    if kind == "photo":
        return np.clip(_photo(size).astype(np.int16) + (index % 5) - 2, 0, 255).astype(np.uint8)
    return np.full((h, w, 3), BACKGROUND, np.uint8)


def render(t: float, index: int, events: Sequence[Event], size: tuple[int, int], counters: bool = True,
           backdrop: str = "grey") -> np.ndarray:  # fmt: skip
    """The BGR frame at ``t`` seconds; ``counters`` draws the sample clip's frame and time counters;
    ``backdrop`` other than grey: footage without the sample clip's floor (see BACKGROUNDS)."""
    import cv2

    w, h = size
    img = background(backdrop, index, size)
    floor = int(h * FLOOR)
    if backdrop == "grey":
        cv2.line(img, (0, floor), (w, floor), (90, 90, 90), max(1, h // 120))
    s = min(w, h)
    for e in events:
        if not e.appear <= t < e.leave:
            continue
        u = (t - e.appear) / max(1e-9, e.leave - e.appear)  # progress through the event, 0..1
        colour = SHAPES[e.shape].colour
        if e.shape == "ball":
            r = max(3, s // 11)
            cv2.circle(img, (int(_lerp(r, w - r, u)), int(h * 0.45)), r, colour, -1, cv2.LINE_AA)
        elif e.shape == "square":
            half = int(_lerp(s * 0.08, s * 0.25, u))
            cx, cy = w // 2, int(h * 0.45)
            cv2.rectangle(img, (cx - half, cy - half), (cx + half, cy + half), colour, -1)
        else:  # triangle: falls from the top to the floor
            size_px = max(4, s // 8)
            base = int(_lerp(size_px * 1.6, floor, u))
            cx = int(w * 0.75)
            pts = np.array([[cx - size_px, base], [cx + size_px, base], [cx, base - int(size_px * 1.6)]], np.int32)
            cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
    if not counters:
        return img
    scale = s / 240  # the sample clip's counters: frame number at the top, time at the bottom
    white, font = (255, 255, 255), cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, f"{index:03d}", (int(8 * scale), int(40 * scale)), font, 1.2 * scale, white,
                max(1, int(3 * scale)), cv2.LINE_AA)  # fmt: skip
    cv2.putText(img, f"t={t:4.1f}s", (int(8 * scale), h - int(8 * scale)), font, 0.6 * scale, white, 1, cv2.LINE_AA)
    return img


def write_clip(
    path: Path,
    events: Sequence[Event],
    seconds: int,
    video_fps: int = 4,
    size=(320, 240),
    counters: bool = True,
    backdrop: str = "grey",
) -> Path:
    import cv2

    from model.atomic import atomic_path

    # keep_suffix: OpenCV picks the container from it. A failed write leaves no half clip behind.
    with atomic_path(path, fsync=False, keep_suffix=True) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), video_fps, size)
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write mp4v video to {tmp}")
        try:
            for i in range(seconds * video_fps):
                writer.write(render(i / video_fps, i, events, size, counters, backdrop))
        finally:
            writer.release()
    return path


def write_sliding_box(path: Path, seconds: int = 12, fps: int = 4, size: tuple[int, int] = (64, 48)) -> Path:
    """A plain grey clip in which a red box slides across the frame from 3 s to 7 s: footage of the
    user's own, unlike the demo's shapes (the Training tab's user story: tests and the walkthrough)."""
    import cv2

    w, h = size
    side, top = int(0.3 * h), h // 3
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    try:
        for i in range(seconds * fps):
            t = i / fps
            img = np.full((h, w, 3), 128, np.uint8)
            if 3 <= t < 7:
                x = int(4 + (t - 3) / 4 * (w - side - 6))
                cv2.rectangle(img, (x, top), (x + side, top + side), (0, 0, 230), -1)
            writer.write(img)
    finally:
        writer.release()
    return path


def random_events(
    rng: random.Random,
    max_events: int = 2,
    shapes: Sequence[str] | None = None,
    min_seconds: int = 0,
    lead: int = 0,
    window: int = 0,
    gap: int = 2,
) -> list[Event]:
    """1..max_events events one after another, 2-3 s each, 1 to ``gap`` empty seconds between; more
    events while the last one ends before ``min_seconds``. The first starts 1 to ``2 + lead`` seconds
    in; with ``window`` (turns per training window) no event's turns, its answer's included, straddle
    two windows: an answer whose shape was cut off into the previous window would teach inventing."""
    shapes = list(shapes or SHAPES)
    events: list[Event] = []
    t = rng.randint(1, 2 + lead)
    count = rng.randint(1, max_events)
    while len(events) < count or t < min_seconds:
        length = rng.randint(2, 3)
        if window and t // window != (t + length) // window:
            t = (t // window + 1) * window + rng.randint(0, 1)
        events.append(Event(rng.choice(shapes), t, t + length))
        t += length + rng.randint(1, gap)
    return events


def raw_sample(video_path: str, events: Sequence[Event], question: str | None = None) -> dict:
    sample = {
        "video_name": Path(video_path).name,
        "video_path": video_path,
        "task_type": "Narration",
        "source": "synthetic-shapes",
        "question": [{"content": question, "time": "0"}] if question else [],
        "response": [e.annotation() for e in events],
    }
    return sample


def make_dataset(
    folder: str | Path,
    n_clips: int,
    seed: int = 0,
    size: tuple[int, int] = (320, 240),
    video_fps: int = 4,
    max_events: int = 2,
    question: str | None = None,
    counters: bool = True,
    min_seconds: int = 0,
    empty_clips: int = 0,
    empty_seconds: tuple[int, int] = (20, 60),
    lead: int = 0,
    window: int = 0,
    gap: int = 2,
    empty_kinds: int = len(BACKGROUNDS),
    long_clips: int = 0,
    long_seconds: int = 600,
    long_gap: int = 30,
) -> Path:
    """Write ``n_clips`` clips under ``folder/videos`` and their raw annotations to
    ``folder/annotations.json`` (video paths relative to ``folder``); returns the JSON path.
    ``counters=False`` leaves out the frame and time counters (at 64x48 they cover more pixels than
    the shapes do); ``min_seconds`` makes every clip at least that long; ``lead`` and ``window``: see
    ``random_events`` (shapes late in long clips, none cut by a training window's edge), ``gap`` too;
    ``empty_kinds``: the empty clips cycle through the first that many BACKGROUNDS; ``long_clips``: that many
    grey streams of about ``long_seconds`` with a shape every 3 to ``long_gap + 3`` seconds (time labels
    and counters far into a stream, so a shape at minute 5 is narrated as one at second 5; 2 frames a second)."""
    folder = Path(folder)
    rng = random.Random(seed)
    samples = []
    for k in range(n_clips):
        # Cycle through the shapes so every caption is seen even in a small set.
        first = list(SHAPES)[k % len(SHAPES)]
        events = random_events(rng, max_events, min_seconds=min_seconds, lead=lead, window=window, gap=gap)
        events[0] = Event(first, events[0].appear, events[0].leave)
        seconds = events[-1].leave + rng.randint(1, 2)
        rel = f"videos/shapes_{k:03d}.mp4"
        write_clip(folder / rel, events, seconds, video_fps, size, counters)
        samples.append(raw_sample(rel, events, question))
    for k in range(long_clips):
        events = random_events(rng, 1, min_seconds=long_seconds, lead=long_gap, window=window, gap=long_gap)
        rel = f"videos/long_{k:03d}.mp4"
        write_clip(folder / rel, events, events[-1].leave + rng.randint(1, 2), min(video_fps, 2), size, counters)
        samples.append(raw_sample(rel, events, question))
    for k in range(empty_clips):  # footage with nothing happening, as long as a minute: all Silence
        backdrop = BACKGROUNDS[k % empty_kinds]
        rel = f"videos/empty_{k:03d}_{backdrop}.mp4"
        write_clip(folder / rel, [], rng.randint(*empty_seconds), video_fps, size, counters and backdrop == "grey",
                   backdrop)  # fmt: skip
        samples.append(raw_sample(rel, [], question))
    out = folder / "annotations.json"
    out.write_text(json.dumps(samples, indent=2), encoding="utf-8")
    return out

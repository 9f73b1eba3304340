"""``narrate`` on files puts subtitles at the time things happen in the video (files are sampled by
their timestamps, model.frame_times), and ``--save-frames`` keeps exactly what the model got. The
model's words do not matter here: a stand-in engine answers on the first bright frame it is handed."""

from __future__ import annotations

import fractions
import math
import re
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from fakes import FakeEngine

from app.cli import main as cli_main
from model.protocol import RESPONSE, SILENCE

av = pytest.importorskip("av")  # a test-only dependency (pyproject.toml, dev extra)

W, H = 64, 48
SRT_START = re.compile(r"^(\d\d):(\d\d):(\d\d),(\d\d\d) --> ", re.M)
VTT_START = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) --> ", re.M)


class EventEngine(FakeEngine):
    """Answers "event" on the first step whose image is bright (the event), silent otherwise; keeps
    every image and time it was given."""

    def __init__(self, fps: float = 1.0) -> None:
        super().__init__(fps=fps)
        self.seen: list[tuple[float, np.ndarray]] = []
        self.answered = False

    def step(self, image, t=None, on_token=None):
        self.seen.append((t, image))
        fire = not self.answered and float(image.mean()) > 128
        self.answered |= fire
        self.script = [RESPONSE if fire else SILENCE]
        self.steps = 0
        result = super().step(image, t=t, on_token=on_token)
        if fire:
            result.text = "event"
        return result


@pytest.fixture
def event_engine(monkeypatch):
    """narrate with the stand-in engine instead of a model."""
    made: list[EventEngine] = []

    def make(loaded, options):
        made.append(EventEngine(options.fps))
        return made[-1]

    loaded = SimpleNamespace(adapter=None, is_demo=False, source="stand-in", device="cpu", precision="fp32")
    monkeypatch.setattr("app.narrate.load_cli_model", lambda args: loaded)
    monkeypatch.setattr("app.live.runner.make_engine", make)
    return made


def event_clip(path: Path, n: int, rate: fractions.Fraction, event: int) -> Path:
    """``n`` frames at the exact ``rate`` (OpenCV's mp4v writer keeps 30000/1001), dark until frame
    ``event``, bright from it on."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(rate), (W, H))
    assert writer.isOpened()
    dark, bright = np.full((H, W, 3), 30, np.uint8), np.full((H, W, 3), 225, np.uint8)
    for i in range(n):
        writer.write(bright if i >= event else dark)
    writer.release()
    return path


def vfr_event_clip(path: Path, pts_ms: list[int], event: int) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.time_base = stream.time_base = fractions.Fraction(1, 1000)
        for i, p in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), 225 if i >= event else 30, np.uint8), format="rgb24")
            frame.pts, frame.time_base = p, fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def container_time(path: Path, index: int) -> float:
    """Frame ``index``'s presentation time in seconds, as the container (PyAV) says."""
    with av.open(str(path)) as f:
        stream = f.streams.video[0]
        for i, frame in enumerate(f.decode(stream)):
            if i == index:
                return float((frame.pts - (stream.start_time or 0)) * stream.time_base)
    raise IndexError(index)


def cue_starts(text: str, pattern: re.Pattern) -> list[float]:
    return [int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000 for h, m, s, ms in pattern.findall(text)]


def narrate(video: Path, out: Path, fps: float, *extra: str) -> None:
    rc = cli_main([
        "narrate", "--source", str(video), "--model", "stand-in", "--quiet", "--fps", f"{fps:g}",
        "--srt", str(out / "s.srt"), "--vtt", str(out / "s.vtt"), *extra,
    ])  # fmt: skip
    assert rc == 0


def release_rule_second(event: int, rate: float, fps: float) -> float:
    """Where the release's index rule (frame k * int(rate / fps) for second k / fps) puts the event."""
    step = max(1, int(rate / fps))
    return math.ceil(event / step) / fps


@pytest.mark.parametrize("fps", [1.0, 2.0])
def test_ten_minutes_at_29_97_the_subtitle_lands_on_the_event(tmp_path, event_engine, fps, capsys):
    rate = fractions.Fraction(30000, 1001)
    event = math.ceil(590 * rate)  # the first frame at or after 590 s
    video = event_clip(tmp_path / "ten.mp4", math.ceil(600 * rate), rate, event)
    at = container_time(video, event)
    assert 590 <= at < 590.04
    narrate(video, tmp_path / "out", fps)
    srt, vtt = (tmp_path / "out" / "s.srt").read_text(), (tmp_path / "out" / "s.vtt").read_text()
    [start] = cue_starts(srt, SRT_START)
    assert cue_starts(vtt, VTT_START) == [start]
    assert abs(start - at) <= 1 / fps  # within one step (here: the step that shows it, 590.0 s)
    print(f"\n{fps:g} steps/s: event at {at:.3f} s, subtitle at {start:.3f} s ({start - at:+.3f} s); the "
          f"release's index rule: {release_rule_second(event, float(rate), fps) - at:+.3f} s")  # fmt: skip
    assert release_rule_second(event, float(rate), fps) - at > 19  # what it was before
    assert len(event_engine[0].seen) == 600 * fps  # 600.0006 s: 600 whole seconds


def test_23_976_and_variable_rate_subtitles_line_up(tmp_path, event_engine):
    rate = fractions.Fraction(24000, 1001)
    event = math.ceil(175.3 * rate)
    video = event_clip(tmp_path / "film.mp4", math.ceil(180 * rate), rate, event)
    narrate(video, tmp_path / "film", 1.0)
    [start] = cue_starts((tmp_path / "film" / "s.srt").read_text(), SRT_START)
    assert abs(start - container_time(video, event)) <= 1.0 and start == 176.0  # the first sample showing it

    # Variable rate: bursts at 60 fps, stretches at 5 fps and a 3 s still; the event after 150 s.
    pts, t = [], 0
    while t < 180_000:
        pts.append(t)
        t += [17, 17, 17, 200, 3000][(len(pts) // 40) % 5] if len(pts) % 40 == 39 else [17, 200][(len(pts) // 40) % 2]
    event = next(i for i, p in enumerate(pts) if p >= 150_500)
    vfr = vfr_event_clip(tmp_path / "vfr.mp4", pts, event)
    at = container_time(vfr, event)
    assert at == pytest.approx(pts[event] / 1000)
    for fps in (1.0, 2.0):
        narrate(vfr, tmp_path / f"vfr{fps:g}", fps)
        [start] = cue_starts((tmp_path / f"vfr{fps:g}" / "s.srt").read_text(), SRT_START)
        [vstart] = cue_starts((tmp_path / f"vfr{fps:g}" / "s.vtt").read_text(), VTT_START)
        assert start == vstart and abs(start - at) <= 1 / fps, (fps, start, at)


def test_save_frames_writes_what_the_engine_got(tmp_path, event_engine):
    from fakes import write_video

    video = write_video(tmp_path / "clip.mp4", 28, 8)  # 3.5 s at 8 fps: 7 half-second steps
    folder = tmp_path / "frames"
    narrate(video, tmp_path / "out", 2.0, "--save-frames", str(folder))
    seen = event_engine[0].seen
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["000000.0.png", "000000.5.png", "000001.0.png", "000001.5.png", "000002.0.png",
                     "000002.5.png", "000003.0.png"]  # fmt: skip
    assert [f"{t:08.1f}.png" for t, _ in seen] == names
    for t, image in seen:
        saved = cv2.cvtColor(cv2.imread(str(folder / f"{t:08.1f}.png")), cv2.COLOR_BGR2RGB)
        assert saved.dtype == image.dtype and np.array_equal(saved, image)  # PNG is lossless


def test_save_frames_must_be_a_folder(tmp_path, capsys):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    rc = cli_main(["narrate", "--source", "webcam:0", "--save-frames", str(a_file)])
    assert rc != 0 and "--save-frames" in capsys.readouterr().err

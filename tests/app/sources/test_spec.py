"""SourceSpec, the one parser and printer of source specs, and its users: parse_source and
open_source, the settings' SourceOptions and the GUI's source picker."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from fakes import FileCamera, write_video

import app.sources.spec as spec_module
from app.settings import Settings, SourceOptions
from app.sources import (
    ScreenSource,
    SourceError,
    SourceSpec,
    VideoFileSource,
    WebcamSource,
    open_source,
    parse_source,
)

# text -> its canonical spelling
CANONICAL = [
    ("webcam", "webcam:0"),
    ("WEBCAM", "webcam:0"),
    ("webcam:2", "webcam:2"),
    ("webcam@1280x720", "webcam:0@1280x720"),
    ("Webcam:1@640x480", "webcam:1@640x480"),
    ("  webcam:3  ", "webcam:3"),
    ("screen", "screen:1"),
    ("screen:0", "screen:0"),
    ("screen:2", "screen:2"),
    ("screen@0,0,640,480", "screen:1@0,0,640,480"),
    ("SCREEN:2@10,20,300,200", "screen:2@10,20,300,200"),
    ("screen:1@ 10, 20, 300, 200 ", "screen:1@10,20,300,200"),
    ("screen:1@-5,0,10,10", "screen:1@-5,0,10,10"),  # off the monitor: ScreenSource says so on open
    ("/videos/a clip.mp4", "/videos/a clip.mp4"),
    ("clip.mp4", "clip.mp4"),
    ("./webcam", "./webcam"),
    ("./screen:1", "./screen:1"),
    ("videos/webcam.mp4", "videos/webcam.mp4"),
]

ALL_FORMS = [
    SourceSpec.webcam(),
    SourceSpec.webcam(3),
    SourceSpec.webcam(1, 1920, 1080),
    SourceSpec.screen(),
    SourceSpec.screen(0),
    SourceSpec.screen(2, (10, 20, 300, 200)),
    SourceSpec.screen(0, (0, 0, 1, 1)),
    SourceSpec.file("/videos/a.mp4"),
    SourceSpec.file("relative/clip.mkv"),
    SourceSpec.file("webcam"),  # a file named like a live source gets its ./
    SourceSpec.file("Screen recording.mov"),
    SourceSpec.file(Path("/tmp/with space/x.webm")),
    SourceSpec("webcam", index=4, width=320, height=240),
    SourceSpec("screen", index=3),
]


@pytest.mark.parametrize(("text", "canonical"), CANONICAL)
def test_parse_prints_the_canonical_spec_and_round_trips(text: str, canonical: str):
    spec = SourceSpec.parse(text)
    assert str(spec) == canonical
    assert SourceSpec.parse(str(spec)) == spec
    assert SourceSpec.parse(canonical) == spec


@pytest.mark.parametrize("spec", ALL_FORMS, ids=str)
def test_every_valid_spec_round_trips(spec: SourceSpec):
    assert SourceSpec.parse(str(spec)) == spec
    assert str(SourceSpec.parse(str(spec))) == str(spec)


def test_fields_and_defaults():
    assert SourceSpec.parse("webcam") == SourceSpec("webcam", index=0) == SourceSpec.webcam()
    assert SourceSpec.parse("webcam:2@640x480") == SourceSpec("webcam", index=2, width=640, height=480)
    screen = SourceSpec.parse("screen")
    assert (screen.kind, screen.index, screen.region, screen.path) == ("screen", 1, None, None)
    assert SourceSpec.parse("screen:0").index == 0  # all monitors together
    region = SourceSpec.parse("screen:2@10,20,300,200")
    assert (region.index, region.region, region.width, region.height) == (2, (10, 20, 300, 200), None, None)
    clip = SourceSpec.parse("/videos/a.mp4")
    assert (clip.kind, clip.path, clip.index, clip.is_live) == ("file", "/videos/a.mp4", None, False)
    assert SourceSpec.screen(1, [1, 2, 3, 4]).region == (1, 2, 3, 4)  # any sequence, stored as a tuple
    assert str(SourceSpec("webcam", index=1, width=800, height=600)) == "webcam:1@800x600"
    with pytest.raises(dataclasses.FrozenInstanceError):
        clip.path = "/other.mp4"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ("webcam:x", "webcam, webcam:N or webcam:N@WIDTHxHEIGHT"),
        ("webcam:1@640", "webcam:N@WIDTHxHEIGHT"),
        ("webcam:-1", "webcam:N@WIDTHxHEIGHT"),
        ("webcam@0x480", "resolution 0x480 must be above 0x0"),
        ("screen:a", "screen, screen:N or screen:N@x,y,w,h"),
        ("screen:1@1,2,3", "screen:N@x,y,w,h"),
        ("screen:1@", "screen:N@x,y,w,h"),
        ("screen:1@1,2,0,5", "width and height above 0"),
        ("screencast.mp4", "write ./screencast.mp4 for a video file"),
        ("webcam1", "write ./webcam1 for a video file"),
    ],
)
def test_bad_specs_are_source_errors_naming_the_spec_and_the_forms(bad: str, expected: str):
    with pytest.raises(SourceError) as exc:
        SourceSpec.parse(bad)
    message = str(exc.value)
    assert f"Invalid source '{bad}'" in message
    assert expected in message
    with pytest.raises(SourceError, match=re.escape(bad)):
        parse_source(bad)


def test_a_mistyped_live_spec_gets_no_file_hint():
    with pytest.raises(SourceError) as exc:
        SourceSpec.parse("screen:1@1,2,3")
    assert "./" not in str(exc.value)


@pytest.mark.parametrize("empty", ["", "   ", "\n"])
def test_no_source_is_an_error(empty: str):
    with pytest.raises(SourceError, match=r"^No source given: choose a video file, webcam or screen\.$"):
        SourceSpec.parse(empty)
    with pytest.raises(SourceError, match="No source given"):
        SourceSpec.file("")


def test_invalid_fields_are_rejected():
    with pytest.raises(SourceError, match="both a width and a height"):
        SourceSpec.webcam(0, 640, None)
    with pytest.raises(SourceError, match="0 or more"):
        SourceSpec.screen(-1)
    with pytest.raises(SourceError, match="begins or ends with a space"):
        SourceSpec.file("clip.mp4 ")
    with pytest.raises(ValueError, match="unknown source kind"):
        SourceSpec("camera")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SourceSpec("file", path="a.mp4", index=1)
    with pytest.raises(ValueError):
        SourceSpec("screen", width=640, height=480)
    with pytest.raises(ValueError):
        SourceSpec("webcam", region=(0, 0, 1, 1))


def test_regions_parse_and_print_through_the_spec():
    assert SourceSpec.parse_region(" 10, 20 ,640,360 ") == (10, 20, 640, 360)
    assert SourceSpec.format_region((10, 20, 640, 360)) == "10,20,640,360"
    for bad in ("not a region", "1,2,3", "1,2,3,0", ""):
        with pytest.raises(SourceError, match="Invalid region"):
            SourceSpec.parse_region(bad)


def test_tilde_is_expanded_for_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("HOME", str(tmp_path))
    spec = SourceSpec.parse("~/clips/a.mp4")
    assert spec == SourceSpec.file("~/clips/a.mp4")
    assert spec.path == str(tmp_path / "clips" / "a.mp4")
    assert str(spec) == str(tmp_path / "clips" / "a.mp4")
    source = parse_source("~/clips/a.mp4")
    assert isinstance(source, VideoFileSource) and source.path == tmp_path / "clips" / "a.mp4"


def test_dot_slash_webcam_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spec = SourceSpec.parse("./webcam")
    assert (spec.kind, spec.path) == ("file", "./webcam")
    assert SourceSpec.file("webcam") == spec  # built by hand it gets the same ./
    assert isinstance(spec.build(), VideoFileSource)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError, match=r"Video file not found: '(\./)?webcam'"):
        open_source("./webcam")
    # A real file of that name plays, and the spec it reports still names the file.
    write_video(tmp_path / "clip.mp4", 10, 10).rename(tmp_path / "webcam")  # OpenCV writes by extension
    with open_source("./webcam") as src:
        assert src.info.kind == "file" and src.info.frame_count == 10
        assert src.info.spec == "./webcam"
        assert SourceSpec.parse(src.info.spec) == spec


# ---------------------------------------------------------------------------------------------
# Building sources


def test_parse_source_specs(tmp_path: Path):
    cam = parse_source("webcam")
    assert isinstance(cam, WebcamSource) and cam.index == 0 and not cam.is_open
    cam = parse_source("webcam:2@640x480", realtime=True)  # realtime is meaningless for a camera
    assert (cam.index, cam.width, cam.height) == (2, 640, 480)
    scr = parse_source("screen")
    assert isinstance(scr, ScreenSource) and scr.monitor == 1 and scr.region is None
    scr = parse_source("screen:0")
    assert scr.monitor == 0
    scr = parse_source("screen:2@10,20,300,200")
    assert (scr.monitor, scr.region, scr.spec) == (2, (10, 20, 300, 200), "screen:2@10,20,300,200")
    f = parse_source(str(tmp_path / "a.mp4"), realtime=True)
    assert isinstance(f, VideoFileSource) and f.realtime and f.path == tmp_path / "a.mp4"
    for bad in ("webcam:x", "screen:1@1,2,3", "screen:a", ""):
        with pytest.raises(SourceError):
            parse_source(bad)


def test_build_passes_options_and_explicit_ones_win():
    cam = SourceSpec.parse("webcam:1@640x480").build(width=320, height=240, first_frame_timeout=0.5)
    assert isinstance(cam, WebcamSource) and (cam.index, cam.width, cam.height) == (1, 320, 240)
    assert cam.first_frame_timeout == 0.5
    screen = SourceSpec.screen(2, (1, 2, 3, 4)).build(realtime=False, capture_fps=5)
    assert isinstance(screen, ScreenSource) and (screen.region, screen.capture_fps) == ((1, 2, 3, 4), 5.0)
    clip = SourceSpec.file("/videos/a.mp4").build(realtime=True)
    assert isinstance(clip, VideoFileSource) and clip.realtime and not clip.is_open


def test_open_opens_the_built_source(video10: Path):
    cam = FileCamera(video10)
    with SourceSpec.parse("webcam:0@1280x720").open(capture_factory=lambda i: cam) as src:
        assert src.is_open and src.info.kind == "webcam"
    with SourceSpec.file(video10).open() as src:
        assert src.is_open and src.info.spec == str(video10)
        # The spec a source reports parses back to the same source.
        assert SourceSpec.parse(src.info.spec) == SourceSpec.file(video10)


@pytest.fixture
def parse_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text SourceSpec.parse is called with from now on (the real parser still runs)."""
    seen: list[str] = []
    real = SourceSpec.parse.__func__  # type: ignore[attr-defined]

    def spy(cls, text: str) -> SourceSpec:
        seen.append(text)
        return real(cls, text)

    monkeypatch.setattr(spec_module.SourceSpec, "parse", classmethod(spy))
    return seen


def test_parse_source_and_open_source_go_through_the_one_parser(parse_calls):
    seen = parse_calls
    parse_source("screen:1")
    with pytest.raises(SourceError):
        open_source("/no/such/clip.mp4")
    assert seen == ["screen:1", "/no/such/clip.mp4"]


# ---------------------------------------------------------------------------------------------
# Settings and the source picker


def test_source_options_fold_a_saved_resolution_into_the_spec():
    legacy = SourceOptions(spec="webcam:2", width=1280, height=720, realtime=False)
    assert legacy.spec == "webcam:2@1280x720" and (legacy.width, legacy.height) == (0, 0)
    assert legacy == SourceOptions(spec="webcam:2@1280x720", realtime=False)
    assert legacy.source_spec() == SourceSpec.webcam(2, 1280, 720)
    # The spec's own resolution wins; other kinds and damaged specs keep their spec.
    assert SourceOptions(spec="webcam:0@640x480", width=1280, height=720).spec == "webcam:0@640x480"
    assert SourceOptions(spec="screen:1", width=1280, height=720).spec == "screen:1"
    assert SourceOptions(spec="/a.mp4", width=1280, height=720).spec == "/a.mp4"
    assert SourceOptions(spec="webcam:x", width=1280, height=720).spec == "webcam:x"
    assert SourceOptions(spec="webcam:1", width=1280, height=0).spec == "webcam:1"


def test_source_options_open_kwargs():
    assert SourceOptions(spec="/a.mp4", realtime=False).open_kwargs() == {"realtime": False}
    assert SourceOptions(spec="./webcam").open_kwargs() == {"realtime": True}
    assert SourceOptions(spec="webcam:0@1280x720").open_kwargs() == {}  # the resolution is in the spec
    assert SourceOptions(spec="screen:1@0,0,10,10").open_kwargs() == {}
    assert SourceOptions(spec="webcam:x").open_kwargs() == {}  # opening it reports the problem


def test_settings_saved_with_a_separate_resolution_load_into_the_spec(tmp_path: Path):
    from PySide6.QtCore import QSettings

    old = QSettings(str(tmp_path / "old.ini"), QSettings.Format.IniFormat)
    for key, value in {"source/spec": "webcam:1", "source/width": 1920, "source/height": 1080}.items():
        old.setValue(key, value)
    old.sync()
    settings = Settings(QSettings(str(tmp_path / "old.ini"), QSettings.Format.IniFormat))
    loaded = settings.load(SourceOptions)
    assert loaded == SourceOptions(spec="webcam:1@1920x1080")
    # Saved again, the resolution lives in the spec and the old keys are spent.
    settings.save(loaded)
    settings.sync()
    again = Settings(QSettings(str(tmp_path / "old.ini"), QSettings.Format.IniFormat))
    assert again.value("source/spec", "") == "webcam:1@1920x1080"
    assert again.load(SourceOptions) == loaded


@pytest.fixture
def picker(qtbot, monkeypatch: pytest.MonkeyPatch):
    from ui.source_picker import SourcePicker

    monkeypatch.delenv("DISPLAY", raising=False)  # no monitors: "Monitor 1 (no display found)"
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("ui.source_picker.SourcePicker.scan_cameras", lambda self: None)  # no device probing
    p = SourcePicker()
    qtbot.addWidget(p)
    return p


@pytest.mark.parametrize(
    "spec",
    [
        "webcam:0",
        "webcam:0@1280x720",
        "webcam:3@800x600",  # a resolution the list does not offer is added, not lost
        "screen:1",
        "screen:0",
        "screen:2@10,20,640,360",
        "/videos/a.mp4",
        "./webcam",
    ],
)
def test_picker_round_trips_specs(picker, spec: str):
    import os

    picker.set_options(SourceOptions(spec=spec, realtime=False))
    options = picker.options()
    saved = os.path.abspath(spec) if spec.startswith(".") else spec  # a relative file is saved absolute
    assert options.spec == saved
    assert SourceSpec.parse(options.spec) == SourceSpec.parse(saved)


def test_picker_shows_a_spec_in_its_widgets(picker):
    from ui.source_picker import FILE, SCREEN, WEBCAM

    picker.set_options(SourceOptions(spec="webcam:1@1280x720"))
    assert picker.kind.currentIndex() == WEBCAM
    assert (picker.camera.currentData(), picker.resolution.currentData()) == (1, (1280, 720))
    picker.set_options(SourceOptions(spec="screen:2@10,20,640,360"))
    assert picker.kind.currentIndex() == SCREEN
    assert (picker.monitor.currentData(), picker.region.text()) == (2, "10,20,640,360")
    picker.region.setText(" 1, 2, 30, 40 ")
    assert picker.options() == SourceOptions(spec="screen:2@1,2,30,40")
    picker.region.setText("1,2,3")  # half typed: no source (Start says why), never the whole monitor
    assert picker.options() == SourceOptions(spec="") and "Invalid region" in picker.problem_text()
    picker.set_options(SourceOptions(spec="/videos/a.mp4", realtime=False))
    assert picker.kind.currentIndex() == FILE and picker.path.text() == "/videos/a.mp4"
    assert not picker.realtime.isChecked()
    picker.set_options(SourceOptions())  # nothing chosen yet: an empty file choice
    assert picker.kind.currentIndex() == FILE and picker.options() == SourceOptions(spec="", realtime=True)


def test_picker_builds_file_specs_through_the_spec(picker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("HOME", str(tmp_path))
    picker.set_file("~/a.mp4")
    assert picker.options().spec == str(tmp_path / "a.mp4")
    picker.set_file("  screencast.mp4 ")  # a relative name that would read as a screen spec
    assert picker.options().spec == str(Path.cwd() / "screencast.mp4")  # saved absolute
    assert SourceSpec.parse(picker.options().spec).kind == "file"


def test_picker_folds_a_legacy_resolution(picker):
    from ui.source_picker import WEBCAM

    picker.set_options(SourceOptions(spec="webcam:0", width=1280, height=720))  # settings of an older version
    assert picker.kind.currentIndex() == WEBCAM
    assert picker.options() == SourceOptions(spec="webcam:0@1280x720")


def test_picker_reports_a_bad_spec_and_keeps_its_choice(picker, qtbot):
    picker.set_options(SourceOptions(spec="/videos/a.mp4"))
    with qtbot.waitSignal(picker.problem, timeout=1000) as blocker:
        picker.set_options(SourceOptions(spec="webcam:x"))
    assert "Invalid source 'webcam:x'" in blocker.args[0]
    assert picker.options().spec == "/videos/a.mp4"


def test_picker_reads_specs_through_source_spec(picker, parse_calls):
    seen = parse_calls
    picker.set_options(SourceOptions(spec="screen:2@1,2,3,4"))
    assert "screen:2@1,2,3,4" in seen

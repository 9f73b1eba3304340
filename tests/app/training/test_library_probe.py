"""One rule for video files: the clip library imports exactly the files Live plays and the trainer
reads, and refuses the others with the same reason (before, Live played a file that reports no
frame count while the library refused it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_videos import all_kinds

from app.sources import SourceError, VideoFileSource
from app.training.library import Library
from model import protocol as P
from model.train.data import load_clips
from model.train.video import VideoError, decode_sampled
from model.video_probe import inspect_video

USABLE = {"good", "no-frame-count"}


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return all_kinds(tmp_path_factory.mktemp("videos") / "videos")


def live(path: Path) -> tuple[bool, str, int | None]:
    """(plays, why not, samples at 1 fps) for Live's file source."""
    source = VideoFileSource(path)
    try:
        source.open()
    except SourceError as e:
        return False, str(e), None
    try:
        return True, "", sum(1 for _ in source.frames(1.0))
    finally:
        source.close()


def trainer(path: Path) -> tuple[bool, str, int | None]:
    try:
        frames, _, _ = decode_sampled(path, 1.0)
    except VideoError as e:
        return False, str(e), None
    return True, "", len(frames)


def test_live_the_library_and_the_trainer_accept_and_refuse_the_same_files(
    kinds: dict[str, Path], tmp_path: Path
) -> None:
    lib = Library(tmp_path / "project")
    report = lib.import_videos(list(kinds.values()))
    imported = {c.name: c for c in report.added}
    refused = {Path(p).name: why for p, why in report.failed}
    assert set(imported) | set(refused) == {p.name for p in kinds.values()}
    for kind, path in kinds.items():
        plays, live_why, samples = live(path)
        reads, train_why, frames = trainer(path)
        in_library = path.name in imported
        assert (in_library, plays, reads, P.probe_video(path) is not None) == (kind in USABLE,) * 4, kind
        if kind in USABLE:
            clip = imported[path.name]
            # The same seconds everywhere: the library's turns, Live's samples, the trainer's frames.
            assert clip.n_turns == samples == frames == 3, kind
        else:
            why = refused[path.name]
            assert why == inspect_video(path).reason and why in live_why and why in train_why, kind


def test_the_command_line_names_the_same_reason(kinds: dict[str, Path], tmp_path: Path) -> None:
    names = ["good.mp4", "song.mp4", "half.mp4", "hevc.mp4", "recording.mkv"]
    data = tmp_path / "raw.json"
    data.write_text(json.dumps([{"video_path": n, "response": [{"content": "x", "time": "2"}]} for n in names]))
    clips, issues = load_clips([data], video_prefix=kinds["good"].parent)
    assert sorted(c.video.name for c in clips) == ["good.mp4", "recording.mkv"]
    by_index = {i.index: i.message for i in issues}
    for index, name in enumerate(names):
        if index in by_index:
            assert inspect_video(kinds["good"].parent / name).reason in by_index[index]
            assert by_index[index].endswith("skipped")
    assert set(by_index) == {1, 2, 3}


def test_a_file_named_on_its_own_is_judged_by_the_probe_not_its_suffix(kinds: dict[str, Path], tmp_path: Path) -> None:
    odd = tmp_path / "holiday.video"  # Live plays it (the spec test plays one named 'webcam')
    odd.write_bytes(kinds["good"].read_bytes())
    assert live(odd)[0]
    report = Library(tmp_path / "project").import_videos([odd])
    assert [c.name for c in report.added] == ["holiday.video"] and report.failed == []

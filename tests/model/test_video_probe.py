"""The one video probe: the facts of a usable file, and for each kind of unusable file its own
reason saying what to do (empty, audio only, cut off, unsupported codec, corrupt, not a video)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bad_videos import all_kinds, audio_only_mp4, good

from model import protocol as P
from model import video_probe as V
from model.video_probe import inspect_video, sniff_container


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return all_kinds(tmp_path_factory.mktemp("videos"))


def test_a_usable_file_gives_its_frames_rate_and_size(kinds: dict[str, Path]) -> None:
    facts = inspect_video(kinds["good"])
    assert facts.ok and facts.reason == ""
    assert (facts.frames, facts.fps, facts.width, facts.height, facts.duration) == (30, 10.0, 96, 64, 3.0)
    assert P.probe_video(kinds["good"]) == P.VideoMeta(30, 10.0)  # the converter's probe is this one


def test_a_file_that_reports_no_frame_count_has_its_frames_counted(kinds: dict[str, Path]) -> None:
    import cv2

    path = kinds["no-frame-count"]
    cap = cv2.VideoCapture(str(path))
    reported = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    cap.release()
    assert reported <= 0  # what the container says: nothing usable
    facts = inspect_video(path)
    assert facts.ok and (facts.frames, facts.fps, facts.width, facts.height) == (30, 10.0, 96, 64)


@pytest.mark.parametrize(
    ("kind", "problem", "words"),
    [
        ("empty", V.EMPTY, ["empty (0 bytes)", "copy or export it again"]),
        ("wav", V.AUDIO, ["WAV audio", "renamed .mp4", "choose the video file itself"]),
        ("audio-only", V.AUDIO, ["only audio", "'mp4a'", "no video track", "choose the video file itself"]),
        ("cut-before-index", V.TRUNCATED, ["cut off", "'mdat'", "did not finish", "copy it again"]),
        ("cut-after-index", V.TRUNCATED, ["cut off", "'mdat'", "did not finish", "copy it again"]),
        ("codec", V.CODEC, ["reports 30 frames", "HEVC (H.265) ('hvc1')", "cannot decode", "re-encode it as H.264"]),
        ("corrupt", V.CORRUPT, ["corrupt", "re-encode it as H.264"]),
    ],
)
def test_each_unusable_kind_has_its_own_reason(
    kinds: dict[str, Path], kind: str, problem: str, words: list[str]
) -> None:
    facts = inspect_video(kinds[kind])
    assert not facts.ok and facts.problem == problem, facts.reason
    for w in words:
        assert w in facts.reason, (w, facts.reason)
    assert P.probe_video(kinds[kind]) is None


def test_reasons_differ_between_kinds(kinds: dict[str, Path]) -> None:
    reasons = [inspect_video(p).reason for k, p in kinds.items() if k not in ("good", "cut-after-index")]
    assert len(set(reasons)) == len(reasons)


def test_missing_folder_text_and_image(tmp_path: Path) -> None:
    assert inspect_video(tmp_path / "gone.mp4").reason == V.NO_SUCH_FILE
    assert inspect_video(tmp_path).problem == V.FOLDER
    (tmp_path / "notes.mp4").write_text("my holiday video, see the other file\n")
    assert "text file, not a video" in inspect_video(tmp_path / "notes.mp4").reason
    (tmp_path / "photo.mp4").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200)
    assert "PNG image file, not a video" in inspect_video(tmp_path / "photo.mp4").reason


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = good(tmp_path / "locked.mp4")
    path.chmod(0)
    try:
        assert inspect_video(path).problem == V.PERMISSION
    finally:
        path.chmod(0o644)


def test_the_sniffer_reads_tracks_and_leaves_unknown_structures_to_opencv(
    kinds: dict[str, Path], tmp_path: Path
) -> None:
    s = sniff_container(kinds["good"])
    assert (s.kind, s.tracks, s.truncated, s.audio_only) == ("iso", (("vide", "mp4v"),), "", False)
    assert sniff_container(kinds["audio-only"]).audio_only
    # An 'ftyp' header followed by bytes that are no boxes is not called cut off: OpenCV decides.
    odd = tmp_path / "odd.mp4"
    odd.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    assert sniff_container(odd).kind == "" and inspect_video(odd).problem == V.CORRUPT


def test_the_probe_is_cached_by_size_and_mtime(tmp_path: Path) -> None:
    path = good(tmp_path / "v.mp4")
    assert inspect_video(path).ok
    audio_only_mp4(path)  # replaced in place: a new size, a new verdict
    assert inspect_video(path).problem == V.AUDIO

"""Subtitle and JSON Lines exports, checked by parsing what was written."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from app.exports import (
    JsonlWriter,
    Subtitle,
    format_timestamp,
    read_jsonl,
    to_srt,
    to_vtt,
    write_jsonl,
)

ENTRIES = [
    Subtitle(0.0, 1.0, "</Response> A red ball enters."),
    Subtitle(61.25, 63.5, "Line one\n\n\n  line two  \n"),  # blank lines would end the cue early
    Subtitle(3725.9996, 3727.0004, "An hour in"),  # rounds to whole milliseconds,
]

SRT_CUE = re.compile(r"(\d+)\n(\d{2}):(\d{2}):(\d{2}),(\d{3}) --> (\d{2}):(\d{2}):(\d{2}),(\d{3})\n((?:.+\n?)+)")
VTT_CUE = re.compile(r"(\d+)\n(\d{2}):(\d{2}):(\d{2})\.(\d{3}) --> (\d{2}):(\d{2}):(\d{2})\.(\d{3})\n((?:.+\n?)+)")


def parse_cues(text: str, pattern: re.Pattern[str]) -> list[tuple[int, float, float, str]]:
    """Minimal reader: blocks separated by one blank line, each fully matched by ``pattern``."""
    cues = []
    for block in text.strip("\n").split("\n\n"):
        m = pattern.fullmatch(block)
        assert m, f"malformed cue block: {block!r}"
        g = m.groups()
        start = int(g[1]) * 3600 + int(g[2]) * 60 + int(g[3]) + int(g[4]) / 1000
        end = int(g[5]) * 3600 + int(g[6]) * 60 + int(g[7]) + int(g[8]) / 1000
        cues.append((int(g[0]), start, end, g[9]))
    return cues


def test_format_timestamp():
    assert format_timestamp(0) == "00:00:00,000"
    assert format_timestamp(3725.5) == "01:02:05,500"
    assert format_timestamp(59.9996) == "00:01:00,000"  # rounds, carrying into the minutes
    assert format_timestamp(1.25, ".") == "00:00:01.250"
    assert format_timestamp(-3) == "00:00:00,000"
    assert format_timestamp(100 * 3600) == "100:00:00,000"


def test_srt_round_trip():
    text = to_srt(ENTRIES)
    cues = parse_cues(text, SRT_CUE)
    assert [c[0] for c in cues] == [1, 2, 3]
    assert [(c[1], c[2]) for c in cues] == [(0.0, 1.0), (61.25, 63.5), (3726.0, 3727.0)]
    assert cues[0][3] == "</Response> A red ball enters."
    assert cues[1][3] == "Line one\nline two"
    assert text.endswith("An hour in\n")


def test_vtt_round_trip_and_escaping():
    text = to_vtt(ENTRIES)
    assert text.startswith("WEBVTT\n\n")
    cues = parse_cues(text[len("WEBVTT\n\n") :], VTT_CUE)
    assert [(c[0], c[1], c[2]) for c in cues] == [(1, 0.0, 1.0), (2, 61.25, 63.5), (3, 3726.0, 3727.0)]
    # '<' would open a WebVTT tag: it must come out escaped so players show it literally.
    assert cues[0][3] == "&lt;/Response&gt; A red ball enters."
    assert cues[1][3] == "Line one\nline two"


def test_empty_texts_are_skipped_and_indices_stay_contiguous():
    entries = [Subtitle(0, 1, "a"), Subtitle(1, 2, " \n \n"), Subtitle(2, 3, "b")]
    cues = parse_cues(to_srt(entries), SRT_CUE)
    assert [(c[0], c[3]) for c in cues] == [(1, "a"), (2, "b")]
    assert to_srt([]) == ""
    assert to_vtt([]) == "WEBVTT\n"


def test_bad_times_are_made_valid_and_arrows_cannot_fake_a_timing_line():
    (cue,) = parse_cues(to_srt([Subtitle(-1.0, -2.0, "x --> y")]), SRT_CUE)
    assert cue[1:] == (0.0, 0.0, "x -> y")
    (cue,) = parse_cues(to_srt([Subtitle(5.0, 4.0, "z")]), SRT_CUE)
    assert (cue[1], cue[2]) == (5.0, 5.0)  # end never before start


@dataclass
class Hit:
    label: str
    score: float


def test_write_and_read_jsonl(tmp_path: Path):
    path = tmp_path / "log.jsonl"
    records = [
        {"t": 0.0, "state": "</Silence>"},
        {"t": np.float32(1.5), "text": "Zwei Bälle\nzweite Zeile", "path": tmp_path / "x", "hit": Hit("ball", 0.5)},
        {"arr": np.arange(3), "tags": {"b", "a"}},
    ]
    assert write_jsonl(path, records) == 3
    raw = path.read_text(encoding="utf-8")
    assert raw.count("\n") == 3 and "Bälle" in raw  # one line per record, UTF-8 kept readable
    back = read_jsonl(path)
    assert back[0] == {"t": 0.0, "state": "</Silence>"}
    assert back[1] == {
        "t": 1.5,
        "text": "Zwei Bälle\nzweite Zeile",
        "path": str(tmp_path / "x"),
        "hit": {"label": "ball", "score": 0.5},
    }
    assert back[2] == {"arr": [0, 1, 2], "tags": ["a", "b"]}
    assert not (tmp_path / "log.jsonl.part").exists()


def test_read_jsonl_tolerates_a_truncated_last_line(tmp_path: Path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"i": 0}\n{"i": 1}\n\n{"i": 2, "text": "cut sh', encoding="utf-8")
    assert read_jsonl(path) == [{"i": 0}, {"i": 1}]
    # A complete last record that merely lacks its newline is kept.
    path.write_text('{"i": 0}\n{"i": 1}', encoding="utf-8")
    assert read_jsonl(path) == [{"i": 0}, {"i": 1}]


def test_read_jsonl_rejects_corruption_in_the_middle(tmp_path: Path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"i": 0}\n{"i": oops}\n{"i": 2}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"log\.jsonl: line 2"):
        read_jsonl(path)


def test_jsonl_writer_appends_durable_lines(tmp_path: Path):
    path = tmp_path / "sub" / "session.jsonl"
    with JsonlWriter(path) as w:
        w.write({"i": 0})
        # Each record is on disk as soon as write() returns: another reader sees it.
        assert read_jsonl(path) == [{"i": 0}]
        w.write({"i": 1})
        assert path.read_text(encoding="utf-8") == '{"i": 0}\n{"i": 1}\n'
    assert w.closed
    with pytest.raises(ValueError, match="closed"):
        w.write({"i": 2})
    with JsonlWriter(path) as w:  # append keeps what is there
        w.write({"i": 2})
    assert [r["i"] for r in read_jsonl(path)] == [0, 1, 2]
    with JsonlWriter(path, append=False) as w:  # truncate
        w.write({"i": 9})
    assert read_jsonl(path) == [{"i": 9}]


def test_jsonl_writer_repairs_a_torn_tail_before_appending(tmp_path: Path):
    path = tmp_path / "session.jsonl"
    path.write_text('{"i": 0}\n{"i": 1, "te', encoding="utf-8")  # a crash mid-line
    with JsonlWriter(path) as w:
        w.write({"i": 2})
    # Without the repair the new record would be glued onto the fragment and corrupt the file.
    assert path.read_text(encoding="utf-8") == '{"i": 0}\n{"i": 2}\n'
    assert read_jsonl(path) == [{"i": 0}, {"i": 2}]


def test_jsonl_writer_unserializable_record_writes_nothing(tmp_path: Path):
    path = tmp_path / "session.jsonl"
    with JsonlWriter(path) as w:
        w.write({"ok": True})
        with pytest.raises(TypeError):
            w.write({"bad": object()})
        w.write({"ok": False})
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == [
        {"ok": True},
        {"ok": False},
    ]


def test_write_text_atomic_creates_folders_and_replaces_whole(tmp_path):
    from app.exports import write_text_atomic

    target = tmp_path / "new" / "deeper" / "subs.srt"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["subs.srt"]  # no .part left behind

"""The one atomic writer: readers see the old file or the new one, a failed write leaves the old one
and no temporary file, and the backup holds the version before the last write."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from model import atomic
from model.atomic import atomic_path, write_bytes_atomic, write_text_atomic


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


def test_writes_replace_the_whole_file_and_keep_the_previous_as_backup(tmp_path: Path) -> None:
    path, bak = tmp_path / "sub" / "a.json", tmp_path / "sub" / "a.json.bak"
    write_text_atomic(path, "one\n", backup=bak)  # the folder is made; nothing to back up yet
    assert path.read_text() == "one\n" and not bak.exists()
    write_text_atomic(path, "two\n", backup=bak)
    write_bytes_atomic(path, "drei ü\n".encode(), backup=bak)
    assert path.read_text(encoding="utf-8") == "drei ü\n" and bak.read_text() == "two\n"
    assert leftovers(path.parent) == []


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path: Path) -> None:
    path, bak = tmp_path / "a.txt", tmp_path / "a.txt.bak"
    write_text_atomic(path, "old")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_path(path, backup=bak) as tmp:
        tmp.write_text("half of the new con")
        raise RuntimeError("disk on fire")
    assert path.read_text() == "old" and not bak.exists() and leftovers(tmp_path) == []


def test_a_failed_rename_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.txt"
    write_text_atomic(path, "old")

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old" and leftovers(tmp_path) == []


def test_a_failed_backup_stops_the_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, bak = tmp_path / "a.txt", tmp_path / "a.txt.bak"
    write_text_atomic(path, "old")

    def no_copy(src: Path, dst: Path) -> None:
        Path(dst).write_text("ol")  # half a copy, then the disk says no
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.shutil, "copyfile", no_copy)
    with pytest.raises(OSError):
        write_text_atomic(path, "new", backup=bak)
    assert path.read_text() == "old" and not bak.exists() and leftovers(tmp_path) == []


def test_temporary_names_keep_out_of_patterns_unless_asked(tmp_path: Path) -> None:
    seen: list[Path] = []
    with atomic_path(tmp_path / "w.safetensors") as tmp:
        seen.append(tmp)
        tmp.write_bytes(b"x")
    with atomic_path(tmp_path / "clip.mp4", keep_suffix=True) as tmp:
        seen.append(tmp)
        tmp.write_bytes(b"x")
    assert seen[0].parent == tmp_path and seen[0].name.startswith(".") and not seen[0].name.endswith(".safetensors")
    assert seen[1].suffix == ".mp4"  # for writers that pick the format from it (cv2.VideoWriter)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "w.safetensors"]


def test_concurrent_writers_never_mix_their_files(tmp_path: Path) -> None:
    path = tmp_path / "shared.txt"
    texts = [f"{k}" * 100_000 for k in range(8)]
    threads = [threading.Thread(target=write_text_atomic, args=(path, t)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert path.read_text() in texts and leftovers(tmp_path) == []

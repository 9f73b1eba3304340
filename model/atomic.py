"""The one way to write a file so that readers see the old content or the new, never half.

The new content goes to a private temporary file beside the target (same folder: same file system,
so the rename is atomic), is flushed and fsynced, then renamed over the target. A failure removes
the temporary file and leaves the target as it was. ``backup`` keeps the previous version under
another name (itself replaced atomically) before the new one goes in.

No heavy imports: the GUI thread, the CLI and the training process all use it.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "private_folder", "write_bytes_atomic", "write_text_atomic"]

PRIVATE_FILE, PRIVATE_FOLDER = 0o600, 0o700  # what the camera, the screen and the voice leave behind: the owner's

StrPath = str | os.PathLike[str]


def _temp_beside(path: Path, keep_suffix: bool = False) -> Path:
    # Hidden and unique per process and thread (two writers never share it); ending in ".part", so
    # no "*.json" or "*.safetensors" pattern picks up one a crash left behind, unless ``keep_suffix``
    # (writers such as cv2.VideoWriter pick the format from the suffix).
    tag = f"{os.getpid()}-{threading.get_ident()}"
    return path.with_name(f".{path.stem}.{tag}.part{path.suffix}" if keep_suffix else f".{path.name}.{tag}.part")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows it (POSIX); best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _keep_backup(path: Path, backup: Path) -> None:
    """Copy the current ``path`` to ``backup`` atomically (nothing to keep when it does not exist)."""
    if not path.exists():
        return
    part = _temp_beside(backup)
    try:
        shutil.copyfile(path, part)
        os.replace(part, backup)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def private_folder(folder: StrPath) -> Path:
    """Make ``folder`` (and its missing parents) if needed; a folder this call makes is owner-only (0700)."""
    folder = Path(folder)
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(folder, PRIVATE_FOLDER)
        except OSError:  # a file system without permissions (FAT, some network shares)
            pass
    return folder


@contextmanager
def atomic_path(
    path: StrPath, backup: StrPath | None = None, fsync: bool = True, keep_suffix: bool = False, private: bool = False
) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to, for writers that take a file name
    (``safetensors.save_file``, ``wave.open``, ``cv2.VideoWriter`` with ``keep_suffix``). When the
    block ends without an error the file is fsynced and renamed over ``path`` (the old one copied to
    ``backup`` first, if given); on an error it is removed and ``path`` is untouched. ``private``: the
    file is owner-only (0600), for what the camera, the screen or the voice recorded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path, keep_suffix)
    try:
        yield tmp
        if private:
            os.chmod(tmp, PRIVATE_FILE)
        if fsync:
            _fsync_file(tmp)
        if backup is not None:
            _keep_backup(path, Path(backup))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_folder(path.parent)


def write_bytes_atomic(
    path: StrPath, data: bytes, backup: StrPath | None = None, fsync: bool = True, private: bool = False
) -> None:
    """Write ``data`` as the whole of ``path``, atomically (see the module docstring)."""
    with atomic_path(path, backup, fsync, private=private) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text_atomic(
    path: StrPath,
    text: str,
    backup: StrPath | None = None,
    encoding: str = "utf-8",
    fsync: bool = True,
    private: bool = False,
) -> None:
    """Write ``text`` (newlines kept as ``\\n``) as the whole of ``path``, atomically."""
    write_bytes_atomic(path, text.encode(encoding), backup, fsync, private)

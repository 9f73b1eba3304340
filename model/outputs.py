"""The one output guard: before a run starts (before any model loads), every file it will write is
checked, so a typo never destroys an input and a full or read-only disk is said up front.

:func:`check_output` refuses

* a path that is one of the run's inputs (the video, the model or adapter folder and what is in it, a
  recorded question): ``narrate --source v.mp4 --srt v.mp4`` would have replaced the video;
* an existing file inside a model or adapter folder (one holding ``config.json``,
  ``adapter_config.json`` or ``*.safetensors``) that the run did not make: weights are not subtitles;
* a device, a FIFO, a socket or any other non-regular file (``--srt /dev/full`` as root once replaced
  the device node), and a folder where a file is meant;
* a place that cannot be written: no such folder that can be made, no write permission, or less free
  space than ``min_free_bytes``.

Symbolic links are followed on purpose: the file the link points to is checked and written (atomically,
by ``model.atomic``), and the link stays a link. Documented in docs/reliability.md.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

__all__ = ["MIN_FREE_BYTES", "OutputRefused", "check_output", "model_folder_of"]

MIN_FREE_BYTES = 16 * 1024 * 1024  # below this the writes of a run (subtitles, a session) may not fit
MODEL_MARKERS = ("config.json", "adapter_config.json", "adapter_model.safetensors", "model.safetensors")
StrPath = str | os.PathLike[str]


class OutputRefused(ValueError):
    """An output path the run must not write; the message names it, says why and what to do."""


def model_folder_of(path: Path) -> Path | None:
    """The model or adapter folder ``path`` lies directly in, if its folder looks like one."""
    folder = path.parent
    try:
        if any((folder / marker).exists() for marker in MODEL_MARKERS) or any(folder.glob("*.safetensors")):
            return folder
    except OSError:
        return None
    return None


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    try:
        return folder.is_dir() and path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def check_output(
    path: StrPath,
    label: str,
    inputs: Iterable[StrPath] = (),
    folder: bool = False,
    min_free_bytes: int = MIN_FREE_BYTES,
) -> Path:
    """The real path to write for the output ``label`` (e.g. "--srt"), or :class:`OutputRefused`.
    ``inputs``: the run's input files and folders (a folder input protects everything in it); ``folder``:
    the output is a folder (``--save-frames``), not a file."""
    given = Path(path).expanduser()
    target = Path(os.path.realpath(given))  # a symlink: its target is what gets written
    for item in inputs:
        source = Path(item).expanduser()
        if _same(target, source) or target == Path(os.path.realpath(source)) or _inside(target, source):
            raise OutputRefused(f"{label} {given} is an input of this run ({source}); choose another file name.")
    if target.exists():
        mode = target.stat().st_mode
        if folder:
            if not stat.S_ISDIR(mode):
                raise OutputRefused(f"{label} {given} is a file; give a folder (it is created if missing).")
        elif stat.S_ISDIR(mode):
            raise OutputRefused(f"{label} {given} is a folder; give a file name.")
        elif not stat.S_ISREG(mode):
            raise OutputRefused(f"{label} {given} is a device or special file, not a file to write; choose a file.")
        elif (weights := model_folder_of(target)) is not None:
            raise OutputRefused(
                f"{label} {given} is a file of the model or adapter folder {weights}; write it elsewhere."
            )
    parent = target if folder and target.is_dir() else target.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputRefused(
            f"{label} {given}: {existing} is a file, so the folder cannot be made; choose another place."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputRefused(f"{label} {given}: {existing} cannot be written (no permission); choose another folder.")
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        free = min_free_bytes
    if free < min_free_bytes:
        raise OutputRefused(
            f"{label} {given}: only {free / 1e6:.1f} MB free on the disk of {existing}; free some space or choose "
            "another disk."
        )
    return target

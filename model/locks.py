"""One writer per output: an exclusive advisory lock (POSIX ``flock``), held for as long as the run writes,
released when the process ends however it ends (the kernel drops it on exit, even after a kill). The one
lock rule of the app: a training run's folder (``.train.lock``) and a session log being written (the
window's rename and delete ask for it) both go through :func:`acquire`.

Two kinds of lock, one rule:

* a lock file of its own (``hold_lock(path)``, ``acquire(path)``): made if missing, the holder's process
  id written into it so a refusal can name it, removed when the holder lets go;
* the data file itself (``acquire(path, own_file=False)``: a session log a run appends to): opened
  read-only, its content never touched, kept when the holder lets go.

``LockHeld`` (with the holder's pid when it recorded one) when another process (or another holder in this
one) has it. Where the platform has no ``fcntl`` (Windows) nothing is locked. No heavy imports: the CLI,
the training process and the GUI thread use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["Lock", "LockHeld", "acquire", "hold_lock"]


class LockHeld(OSError):
    """Another holder has the lock; ``pid`` is its process id as it recorded it (None when unreadable)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        super().__init__(f"{path} is held by {'process ' + str(pid) if pid else 'another process'}")
        self.path, self.pid = path, pid


class Lock:
    """A held lock; :meth:`release` lets it go (a second call does nothing)."""

    def __init__(self, path: Path, file: IO[bytes] | None, own_file: bool) -> None:
        self.path, self._file, self._own_file = path, file, own_file

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        if self._own_file and _same_file(f, self.path):
            self.path.unlink(missing_ok=True)  # before letting go: the next holder makes its own
        f.close()  # closing the descriptor releases the lock


def _holder(f: IO[bytes]) -> int | None:
    try:
        f.seek(0)
        return int(f.read(32).decode("ascii").strip() or "0") or None
    except (OSError, ValueError):
        return None


def _same_file(f: IO[bytes], path: Path) -> bool:
    try:
        a, b = os.fstat(f.fileno()), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def acquire(path: str | os.PathLike[str], own_file: bool = True) -> Lock:
    """Take the lock on ``path`` now, or :class:`LockHeld`. ``own_file``: ``path`` is a lock file of its
    own (made if missing, the pid written, removed on release); False: ``path`` is an existing data file,
    locked as it is (FileNotFoundError when it is missing)."""
    path = Path(path)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks
        return Lock(path, None, own_file)
    for _ in range(5):
        f = open(path, "a+b" if own_file else "rb")  # noqa: SIM115 - held for the lock's lifetime
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = _holder(f) if own_file else None
            f.close()
            raise LockHeld(path, pid) from None
        if not own_file:
            return Lock(path, f, own_file)
        if _same_file(f, path):  # not a file the last holder removed as it let go: ours
            f.truncate(0)
            f.write(f"{os.getpid()}\n".encode("ascii"))
            f.flush()
            return Lock(path, f, own_file)
        f.close()
    raise LockHeld(path, None)


@contextmanager
def hold_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the lock file ``path`` (made if missing) for the block; it is removed when the block ends."""
    lock = acquire(path)
    try:
        yield
    finally:
        lock.release()

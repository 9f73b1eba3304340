"""One writer per output: an exclusive advisory lock (POSIX ``flock``) on a lock file, held for as long as
the run writes, released when the process ends however it ends (the kernel drops it on exit, even after
a kill). The lock file records the holder's process id, so a refusal can name it.

``hold_lock(path)`` is a context manager: ``LockHeld`` (with the holder's pid) when another process (or
another holder in this one) has it. Where the platform has no ``fcntl`` (Windows) nothing is locked.
No heavy imports: the CLI, the training process and the GUI thread use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["LockHeld", "hold_lock"]


class LockHeld(OSError):
    """Another holder has the lock; ``pid`` is its process id as it recorded it (None when unreadable)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        super().__init__(f"{path} is held by {'process ' + str(pid) if pid else 'another process'}")
        self.path, self.pid = path, pid


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


def _acquire(path: Path) -> IO[bytes] | None:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks
        return None
    for _ in range(5):
        f = open(path, "a+b")  # noqa: SIM115 - held for the lock's lifetime
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = _holder(f)
            f.close()
            raise LockHeld(path, pid) from None
        if _same_file(f, path):  # not a file the last holder removed as it let go: ours
            f.truncate(0)
            f.write(f"{os.getpid()}\n".encode("ascii"))
            f.flush()
            return f
        f.close()
    raise LockHeld(path, None)


@contextmanager
def hold_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the lock file ``path`` (made if missing) for the block; it is removed when the block ends."""
    path = Path(path)
    f = _acquire(path)
    try:
        yield
    finally:
        if f is not None:
            if _same_file(f, path):
                path.unlink(missing_ok=True)  # before letting go: the next holder makes its own
            f.close()

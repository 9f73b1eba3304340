"""Where Streamo Live keeps its data. No heavy imports: the GUI thread uses it too."""

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def data_dir() -> Path:
    """``$STREAMO_LIVE_DATA``, else ``$XDG_DATA_HOME/streamo-live`` (``~/.local/share`` by default)."""
    base = os.environ.get("STREAMO_LIVE_DATA") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "streamo-live"
    )
    return Path(base)


def build_once(path: Path, current: Callable[[Path], bool], build: Callable[[Path], object]) -> Path:
    """``path`` as ``build`` makes it, built only when ``current(path)`` says it is missing or stale.

    Built in a private temporary folder beside it and renamed into place, so a reader never sees a
    half-written folder and two processes building at once do not trample each other.
    """
    if current(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".part-", dir=path.parent))
    try:
        build(tmp)
        if not current(path):
            shutil.rmtree(path, ignore_errors=True)
            try:
                os.rename(tmp, path)
            except OSError:
                if not current(path):  # someone else's rename won the race: theirs is as good
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path

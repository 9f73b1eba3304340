"""Where Streamo Live keeps its data. No heavy imports: the GUI thread uses it too."""

import os
from pathlib import Path


def data_dir() -> Path:
    """``$STREAMO_LIVE_DATA``, else ``$XDG_DATA_HOME/streamo-live`` (``~/.local/share`` by default)."""
    base = os.environ.get("STREAMO_LIVE_DATA") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "streamo-live"
    )
    return Path(base)

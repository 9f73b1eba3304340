"""Hugging Face hub downloads and the local cache (huggingface_hub), for checkpoints given by id.

``download_model`` fetches a checkpoint's configs, tokenizer and safetensors weights into the
huggingface_hub cache with byte progress, cancel and resume; ``cached_model_path`` finds one already
there without the network; ``is_offline`` says whether HF_HUB_OFFLINE is set. No torch: the model
manager calls these on the GUI thread. Never used against the network by tests.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from model.errors import ModelLoadError

log = logging.getLogger(__name__)


class DownloadCancelled(Exception):
    pass


ProgressFn = Callable[[int, int, str], None]  # (bytes done, bytes total, current file)
# The files of a repo that are downloaded and looked for in the cache: configs, tokenizer, safetensors
# weights (no pickled *.bin, no docs or images).
_WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.jinja", "tokenizer*", "*.model"]


def is_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def cached_model_path(repo_id: str) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=_WEIGHT_PATTERNS, local_files_only=True))
    except Exception:  # noqa: BLE001 - any miss means "not cached"
        return None


def download_model(
    repo_id: str,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    revision: str | None = None,
) -> Path:
    """Download a checkpoint into the huggingface_hub cache with byte progress.

    Interrupted downloads resume (the hub keeps ``.incomplete`` files); ``cancel`` stops
    between chunks. Honours HF_HUB_OFFLINE: offline, only the cache is used.
    """
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError
    from tqdm.auto import tqdm

    cached = cached_model_path(repo_id)
    if is_offline():
        if cached is None:
            raise ModelLoadError(
                f"{repo_id} is not in the local cache and HF_HUB_OFFLINE is set. Download it on a connected "
                "machine, or choose a local model folder."
            )
        return cached
    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    except Exception as e:  # noqa: BLE001 - network, auth and 404 all end here
        if cached is not None:
            log.warning("could not reach the hub (%s); using the cached copy of %s", e, repo_id)
            return cached
        raise ModelLoadError(
            f"could not download {repo_id}: {e}. Check the connection or the id, or choose a local folder."
        ) from None
    import fnmatch

    files = [s for s in info.siblings if any(fnmatch.fnmatch(s.rfilename.split("/")[-1], p) for p in _WEIGHT_PATTERNS)]
    total = sum(s.size or 0 for s in files)
    done = 0

    class _Bar(tqdm):  # one per file; forwards bytes to the callback, stops on cancel
        def __init__(self, *a, **k):
            k["disable"] = True
            super().__init__(*a, **k)

        def update(self, n=1):
            nonlocal done
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled(f"download of {repo_id} cancelled")
            done += n or 0
            if progress:
                progress(done, total, current)
            return super().update(n)

    for s in files:
        current = s.rfilename
        if cancel is not None and cancel.is_set():
            raise DownloadCancelled(f"download of {repo_id} cancelled")
        before = done
        try:
            path = hf_hub_download(repo_id, s.rfilename, revision=info.sha, tqdm_class=_Bar)
        except HfHubHTTPError as e:
            raise ModelLoadError(f"download of {repo_id}/{s.rfilename} failed: {e}") from None
        done = before + (s.size or 0)  # cached files and resumed parts count as done
        if progress:
            progress(done, total, current)
    if not files:
        raise ModelLoadError(f"{repo_id} has no model files (config, safetensors) on the hub")
    root = Path(path)
    for _ in files[-1].rfilename.split("/"):  # the snapshot folder holds the repo's tree
        root = root.parent
    return root

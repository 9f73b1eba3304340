"""Shared fixtures: an isolated data folder, no hub access, and the tiny offline checkpoint
built once per test session and loaded through the real loading code."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Before anything imports huggingface_hub or Qt: tests never reach a hub, never touch the
# user's data folder, and render offscreen.
_DATA = tempfile.mkdtemp(prefix="streamo-live-test-data-")
atexit.register(shutil.rmtree, _DATA, ignore_errors=True)  # a run leaves no data folder behind
os.environ["STREAMO_LIVE_DATA"] = _DATA
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models: one intra-op thread is faster than two fighting over a busy 2-core machine
# (measured: a tiny vision tower step took 270 ms with 2 threads under load, 5 ms with 1).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The demo model runs without its shapes adapter (building it trains for a minute or two); the
# tests that need the adapter build it themselves.
os.environ["STREAMO_LIVE_DEMO_ADAPTER"] = "0"

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    from model.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", seed=0)


@pytest.fixture(scope="session")
def tiny_loaded(tiny_ckpt):
    """The tiny model loaded on the CPU in fp32. Shared: tests must not modify it."""
    import torch

    from model.loading import load_model

    torch.manual_seed(0)
    return load_model(tiny_ckpt, precision="fp32", device="cpu")


@pytest.fixture(scope="session")
def sample_clip() -> Path:
    return REPO / "assets" / "sample.mp4"


@pytest.fixture
def no_transformers_deprecations():
    """Fails a test during which transformers logged a deprecation ("... is deprecated"); the engine's and
    the kernels' tests use it with FutureWarning and DeprecationWarning turned into errors."""
    import logging

    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.seen: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            if "deprecat" in record.getMessage().lower():
                self.seen.append(f"{record.name}: {record.getMessage()}")

    handler, logger = Collect(), logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    assert not handler.seen, handler.seen

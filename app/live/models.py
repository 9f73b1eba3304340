"""The model a live app keeps loaded, and how it is replaced.

A failed load keeps the model that was working. A replaced model returns its memory: models are
loaded with Python's cyclic GC paused and then frozen out of it (``gc.freeze``), because one full
collection over torch's and transformers' objects takes ~0.3 s, a visible stall of the window; so
before freezing the new model, the old one's frozen objects are unfrozen and collected.
"""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from app.settings import ModelOptions

if TYPE_CHECKING:
    from model.loading import LoadedModel

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]  # (done, total, what)
Loader = Callable[[ModelOptions, ProgressFn], "LoadedModel"]


def default_loader(options: ModelOptions, progress: ProgressFn) -> LoadedModel:
    from model.loading import load_model

    return load_model(
        options.source,
        precision=options.precision,
        device=options.device,
        adapter=options.adapter or None,
        kernels=options.kernels,
        progress=progress,
    )


class ModelHolder:
    def __init__(self, loader: Loader = default_loader) -> None:
        self._loader = loader
        self.loaded: LoadedModel | None = None
        self.options: ModelOptions | None = None

    def load(
        self,
        options: ModelOptions,
        download: ProgressFn | None = None,
        training: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> LoadedModel:
        """Load ``options`` (for the demo model, its shapes adapter first, trained on first use) and
        keep it. Raises whatever the loader raises; the previous model then stays loaded."""
        from model.train.demo import demo_adapter_for

        adapter = demo_adapter_for(options.source, options.adapter or None, training, cancel)
        enabled = gc.isenabled()
        gc.disable()
        try:
            new = self._loader(replace(options, adapter=str(adapter) if adapter else ""), download or _ignore)
            self._replace(new, options)
        finally:
            if enabled:
                gc.enable()
        return new

    def unload(self) -> None:
        self._replace(None, None)

    def _replace(self, new: LoadedModel | None, options: ModelOptions | None) -> None:
        old, self.loaded, self.options = self.loaded, new, options
        if old is not None:
            weights = _weights(old)
            del old  # reference counting frees the old model's weights at once, unless they sit in a cycle
            if any(w() is not None for w in weights):
                # Held in reference cycles (hooks that point back at their module): only the collector frees
                # them. A full pass holds the GIL, so the window stalls for it (0.3 s with the tiny model);
                # hence only when it is needed, not at every reload.
                gc.unfreeze()
                gc.collect()
            from model.device import free_cuda_memory

            free_cuda_memory()
        gc.freeze()  # the new model lives until replaced: later passes skip its objects


def _weights(loaded: Any) -> list[weakref.ref]:
    """Weak references to a loaded model and its parameters: if any outlives ``del``, something holds it in a
    reference cycle (the model itself, or one module of it)."""
    refs = []
    try:
        refs.append(weakref.ref(loaded))
    except TypeError:  # an object without weak references: its parameters still tell
        pass
    parameters = getattr(getattr(loaded, "model", None), "parameters", None)
    return refs + ([weakref.ref(p) for p in parameters()] if callable(parameters) else [])


def _ignore(done: int, total: int, what: str) -> None:
    pass

"""ModelHolder: a failed load keeps the working model; a replaced model returns its memory even
though loaded models are frozen out of the cyclic garbage collector."""

from __future__ import annotations

import gc
import weakref

import pytest

from app.live.models import ModelHolder
from app.settings import ModelOptions


class Model:
    """A loaded model's shape for the collector: objects in reference cycles (as torch modules are)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.parts = [{"owner": self} for _ in range(100)]  # cycles: only the cyclic GC frees them


@pytest.fixture(autouse=True)
def unfrozen():
    yield
    gc.unfreeze()  # leave the interpreter as other tests expect it


def loader(fail: set[str]):
    def load(options: ModelOptions, progress):
        if options.source in fail:
            raise RuntimeError(f"cannot load {options.source}")
        return Model(options.source)

    return load


def test_a_failed_load_keeps_the_working_model():
    holder = ModelHolder(loader({"broken"}))
    first = holder.load(ModelOptions(source="a"))
    with pytest.raises(RuntimeError, match="cannot load broken"):
        holder.load(ModelOptions(source="broken"))
    assert holder.loaded is first and holder.options.source == "a"


def test_a_replaced_model_is_collected_despite_the_freeze():
    holder = ModelHolder(loader(set()))
    old = weakref.ref(holder.load(ModelOptions(source="a")))
    assert gc.get_freeze_count() > 0  # loaded models are frozen: later GC passes skip them
    holder.load(ModelOptions(source="b"))
    assert old() is None, "the replaced model's frozen objects were never collected"
    assert holder.loaded.name == "b"
    holder.unload()
    assert holder.loaded is None


def test_a_model_freed_by_reference_counting_costs_no_full_collection(monkeypatch):
    """A full collection holds the GIL (the window froze ~0.3 s per reload with the tiny model): it runs only
    when the old model outlives ``del``, held in a cycle."""
    import torch

    class Plain:
        def __init__(self) -> None:
            self.model = torch.nn.Linear(4, 4)

    passes: list[int] = []
    real_collect = gc.collect
    monkeypatch.setattr(gc, "collect", lambda *a: passes.append(1) or real_collect(*a))
    holder = ModelHolder(lambda options, progress: Plain())
    weight = weakref.ref(holder.load(ModelOptions(source="a")).model.weight)
    holder.load(ModelOptions(source="b"))
    assert weight() is None and passes == []  # freed at once, no pass
    holder.loaded.model.me = holder.loaded.model  # a module in a cycle (as a hook pointing back makes)
    weight = weakref.ref(holder.loaded.model.weight)
    holder.load(ModelOptions(source="c"))
    assert weight() is None and passes == [1]  # collected: one pass, because it was needed

"""The LoRA adapters this app trained: where they live and what their cards say. No heavy imports
(the model manager lists them on the GUI thread).

An adapter folder holds ``adapter_config.json`` and weights (peft), ``README.md`` (the card written
by the trainer), ``train_config.json`` (the base model and settings it was trained with) and
``metrics.jsonl``. The Training tab writes new adapters under :func:`adapters_root`; adapters
elsewhere are remembered by the caller and passed as ``extra``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from model.paths import data_dir

_STEPS = re.compile(r"\*\*Steps:\*\*\s*(\d+)")
_MACRO_F1 = re.compile(r"^\|\s*macro-F1\s*\|\s*([0-9.]+|n/a)\s*\|\s*([0-9.]+|n/a)\s*\|", re.MULTILINE)
_EVALUATED_ON = re.compile(r"through the live engine, on (\d+) (held-out|training)")


def card_summary(card: str) -> str:
    """The card in one line, for wherever the active model is named: steps, and the evaluation's
    macro-F1 base -> adapter on how many clips (e.g. "800 steps · macro-F1 0.22 -> 1.00 on 2 held-out
    clips"); "" when the card says neither."""
    parts = []
    if m := _STEPS.search(card):
        parts.append(f"{int(m.group(1)):,} steps")
    if m := _MACRO_F1.search(card):
        where = ""
        if e := _EVALUATED_ON.search(card):
            n, split = int(e.group(1)), e.group(2)
            where = f" on {n} {'held-out' if split == 'held-out' else 'training'} clip{'s' * (n != 1)}"
        base, adapted = (v if v == "n/a" else f"{float(v):.2f}" for v in m.groups())
        parts.append(f"macro-F1 {base} -> {adapted}{where}")
    return " · ".join(parts)


def adapter_summary(path: str | Path) -> str:
    """``card_summary`` of the adapter folder's card ("" without one)."""
    try:
        return card_summary((Path(path).expanduser() / "README.md").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return ""


@dataclass(frozen=True)
class AdapterInfo:
    path: Path
    base_model: str  # the ``model`` it was trained on ("demo", a hub id or a folder); "" when unknown
    steps: int | None  # optimiser steps, from the card
    modified: float  # the weights' modification time
    card: str  # README.md as written (plain text; shown, never rendered as markup)

    @property
    def name(self) -> str:
        return self.path.name

    def summary(self) -> str:
        card = card_summary(self.card)
        return f"{self.name}  ·  on {self.base_model or 'an unknown base model'}" + (f" · {card}" if card else "")


def adapters_root() -> Path:
    """Where the Training tab puts adapters: ``<data folder>/adapters``."""
    return data_dir() / "adapters"


def read_adapter(path: str | Path) -> AdapterInfo | None:
    """The adapter in ``path``, or None when it is not a complete adapter folder (no config or no
    weights yet: a run still going, or a folder of something else)."""
    folder = Path(path).expanduser()
    weights = [p for p in (folder / "adapter_model.safetensors", folder / "adapter_model.bin") if p.is_file()]
    if not (folder / "adapter_config.json").is_file() or not weights:
        return None
    base = ""
    try:
        base = str(json.loads((folder / "train_config.json").read_text(encoding="utf-8")).get("model") or "")
    except (OSError, ValueError, AttributeError):
        pass
    try:
        card = (folder / "README.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        card = ""
    m = _STEPS.search(card)
    return AdapterInfo(
        path=folder.resolve(),
        base_model=base,
        steps=int(m.group(1)) if m else None,
        modified=weights[0].stat().st_mtime,
        card=card,
    )


def list_adapters(extra: Iterable[str | Path] = (), roots: Iterable[Path] | None = None) -> list[AdapterInfo]:
    """Adapters in the folders under ``roots`` (default: :func:`adapters_root`) and the folders in
    ``extra``, newest first, each once."""
    candidates: list[Path] = []
    for root in [adapters_root()] if roots is None else roots:
        root = Path(root).expanduser()
        if root.is_dir():
            candidates += [p for p in sorted(root.iterdir()) if p.is_dir()]
    candidates += [Path(p) for p in extra if p]
    found: dict[Path, AdapterInfo] = {}
    for candidate in candidates:
        info = read_adapter(candidate)
        if info is not None:
            found.setdefault(info.path, info)
    return sorted(found.values(), key=lambda a: a.modified, reverse=True)

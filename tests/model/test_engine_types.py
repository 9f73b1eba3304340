"""The ``Engine`` protocol (model/engine_types.py) is what the app is typed against: the real engine
and the test fake must both implement every member of it, with signatures a caller of the
protocol can use unchanged, so the fake cannot drift from the engine the app really drives."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import FakeEngine

from model.engine_types import Engine, EngineOptions, StepResult

REPO = Path(__file__).resolve().parents[2]
EMPTY = inspect.Parameter.empty


def protocol_members(proto: type) -> dict[str, object]:
    """Name -> the protocol's declaration (a function, a property, or None for a plain attribute)."""
    members: dict[str, object] = dict.fromkeys(proto.__annotations__)
    members.update({n: v for n, v in vars(proto).items() if not n.startswith("_")})
    return members


def drift(impl: type, proto: type = Engine) -> list[str]:
    """Every way ``impl``'s methods differ from what callers of ``proto`` may do with them: a
    missing method, a parameter missing, renamed, moved or of another kind, another default, an
    extra parameter without a default, another annotation where both have one. Attributes and
    properties are checked on an instance (``isinstance``), as a class may set them in __init__."""
    problems = []
    for name, declared in protocol_members(proto).items():
        if not inspect.isfunction(declared):
            continue
        method = getattr(impl, name, None)
        if not callable(method):
            problems.append(f"{name}: missing")
            continue
        want = list(inspect.signature(declared).parameters.values())[1:]  # without self
        have = list(inspect.signature(method).parameters.values())[1:]
        by_name = {p.name: p for p in have}
        for i, p in enumerate(want):
            q = by_name.get(p.name)
            if q is None:
                problems.append(f"{name}: no parameter {p.name!r}")
                continue
            if q.kind != p.kind:
                problems.append(f"{name}({p.name}): {q.kind.description}, the protocol has {p.kind.description}")
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and have.index(q) != i:
                problems.append(f"{name}({p.name}): at position {have.index(q)}, the protocol has {i}")
            if q.default != p.default:
                problems.append(f"{name}({p.name}): default {q.default!r}, the protocol has {p.default!r}")
            if EMPTY not in (p.annotation, q.annotation) and p.annotation != q.annotation:
                problems.append(f"{name}({p.name}): annotated {q.annotation}, the protocol has {p.annotation}")
        for q in have:
            if (
                q.name not in {p.name for p in want}
                and q.default is EMPTY
                and q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD)
            ):
                problems.append(f"{name}: extra parameter {q.name!r} without a default")
        want_return = inspect.signature(declared).return_annotation
        have_return = inspect.signature(method).return_annotation
        if EMPTY not in (want_return, have_return) and want_return != have_return:
            problems.append(f"{name}: returns {have_return}, the protocol has {want_return}")
    return problems


def test_the_protocol_names_what_the_app_calls():
    assert {"opts", "kernel_path", "reset", "ask", "update", "set_options", "step", "messages", "snapshot",
            "restore"} <= set(protocol_members(Engine))  # fmt: skip


def test_the_fake_engine_implements_the_protocol():
    assert drift(FakeEngine) == []
    assert isinstance(FakeEngine(), Engine)


def test_the_stream_engine_implements_the_protocol(tiny_loaded):
    from model.engine import StreamEngine

    assert drift(StreamEngine) == []
    assert isinstance(StreamEngine(tiny_loaded, EngineOptions()), Engine)


def test_a_drifted_engine_is_caught():
    class Drifted(FakeEngine):
        def ask(self, text, t=None):  # renamed, and the tag is gone
            return text

        def step(self, frame, t=0.0, on_token=None, force=None, extra=None):  # another default
            return super().step(frame, t, on_token, force)

        def update(self, options, now):  # a parameter callers do not pass
            return []

        messages = None  # not callable

    problems = drift(Drifted)
    for expected in ("ask: no parameter 'question'", "ask: no parameter 'tag'", "ask: extra parameter 'text'",
                     "step(t): default 0.0", "update: extra parameter 'now'", "messages: missing"):  # fmt: skip
        assert any(p.startswith(expected) for p in problems), (expected, problems)
    assert len(problems) == 6, problems  # the extra ``extra=None`` is allowed: callers need not pass it


def test_a_wrong_annotation_is_caught():
    class Annotated(FakeEngine):
        def reset(self) -> int:
            return 0

        def set_options(self, **changes: str) -> list[str]:
            return []

    problems = drift(Annotated)
    assert any(p.startswith("reset: returns int") for p in problems), problems
    assert any(p.startswith("set_options(changes): annotated str") for p in problems), problems


def test_an_engine_without_its_options_is_not_an_engine():
    fake = FakeEngine()
    del fake.opts
    assert not isinstance(fake, Engine)


def test_the_engine_module_re_exports_the_torch_free_types():
    import model.engine as engine

    assert engine.EngineOptions is EngineOptions and engine.StepResult is StepResult and engine.Engine is Engine


@pytest.mark.parametrize("module", ["model.engine_types", "app.live.runner", "app.narrate", "app.benchmark.ovo_run"])
def test_the_types_import_no_torch(module: str):
    code = f"import sys, {module}; print([m for m in ('torch', 'transformers') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"

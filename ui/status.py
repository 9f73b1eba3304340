"""Status bar: model and load progress, per-step latency, effective model fps, context size,
device and memory, and the kernel path that runs."""

from __future__ import annotations

import time
from collections import deque

from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar

from app.live import RunState
from app.live.qt import LoadProgress, ModelInfo, StepReport
from model.catalog import active_model_label

# Which code runs the model's layers, in words (the model manager's "Speed-up kernels" choice).
KERNEL_WORDS = {
    "torch": "PyTorch",
    "bitsandbytes": "bitsandbytes 4/8-bit",
    "triton": "our Triton kernels",
}


def kernel_words(path: str) -> str:
    base, _, extra = path.partition("+")
    words = KERNEL_WORDS.get(base, base)
    return f"{words} + Triton state head" if extra else words


class RateMeter:
    """Events per second over the last ``window`` seconds."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._times: deque[float] = deque()

    def tick(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()
        return self.rate()

    def rate(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def reset(self) -> None:
        self._times.clear()


class StatusPanel:
    """Fills a QStatusBar with labelled fields; the slots take the workers' dataclasses."""

    def __init__(self, bar: QStatusBar) -> None:
        self.bar = bar
        self.model = QLabel("no model")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(160)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.latency = QLabel("step -")
        self.fps = QLabel("- fps")
        self.context = QLabel("context -")
        self.memory = QLabel("")
        self.kernel = QLabel("")
        self.latency.setToolTip("Time of the last model step (vision, prefill, decision, decode)")
        self.fps.setToolTip("Model steps per second over the last 10 seconds")
        self.context.setToolTip("Turns and tokens in the model's context")
        self.kernel.setToolTip(
            "Which code runs the model's layers: PyTorch, bitsandbytes for 4/8-bit weights, or our fused Triton "
            "kernels on a CUDA GPU (Model > Manage models > Speed-up kernels)"
        )
        self.last_model = ""  # what the status shows for the loaded model, kept when a later load fails
        bar.addWidget(self.model)
        bar.addWidget(self.progress)
        for w in (self.latency, self.fps, self.context, self.memory, self.kernel):
            bar.addPermanentWidget(w)
        self.meter = RateMeter()
        self.device = ""

    def fields(self) -> dict[str, str]:
        """The texts shown, for tests and screenshots."""
        names = ("model", "latency", "fps", "context", "memory", "kernel")
        return {n: getattr(self, n).text() for n in names}

    def on_load_progress(self, p: LoadProgress) -> None:
        self.model.setText(p.stage + "...")
        self.progress.show()
        if p.total > 0:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * p.done / p.total))
            if p.unit == "steps":
                self.model.setText(f"{p.stage}: step {p.done} / {p.total}")
            else:
                self.model.setText(f"{p.stage}: {p.done / 1024**3:.2f} / {p.total / 1024**3:.2f} GB")
        else:
            self.progress.setRange(0, 0)  # busy

    def on_model_loaded(self, info: ModelInfo) -> None:
        self.progress.hide()
        self.device = info.device
        name = active_model_label(info.options.source, info.adapter or None, card=True)  # as narrate and the session
        shapes, random = name == "demo shapes model", info.is_demo and not info.adapter
        demo = " · a toy: it knows three shapes" if shapes else " · its words are meaningless" if random else ""
        self.model.setText(f"{name} · {info.precision} · {info.device}{demo}")
        self.last_model = self.model.text()
        self.model.setToolTip(f"Loaded in {info.load_seconds:.1f} s from {info.options.source}")
        self.kernel.setText(f"runs on {kernel_words(info.kernel_path)}")
        self.memory.setText(info.device)

    def on_model_unloaded(self, why: str = "") -> None:
        self.progress.hide()
        self.last_model = ""
        self.model.setText(f"no model ({why})" if why else "no model")
        self.model.setToolTip("")
        self.kernel.setText("")
        self.memory.setText("")

    def on_load_failed(self, text: str) -> None:
        self.progress.hide()
        self.model.setText(
            f"{self.last_model} (the new model failed to load)" if self.last_model else "model not loaded"
        )
        self.model.setToolTip(text)

    def on_step_finished(self, report: StepReport) -> None:
        r = report.record
        t = r.latency_ms
        self.latency.setText(f"step {t.get('total', 0.0):.0f} ms")
        self.latency.setToolTip(", ".join(f"{k} {v:.1f} ms" for k, v in t.items()))
        self.fps.setText(f"{self.meter.tick():.2f} fps")
        approx = "" if r.exact else " (approximate)"
        self.context.setText(f"context {r.context_turns} turns / {r.context_tokens} tok{approx}")
        self.memory.setText(f"{self.device} · {report.memory}" if self.device else report.memory)
        self.kernel.setText(f"runs on {kernel_words(report.kernel_path)}")

    def on_run_state(self, state: RunState) -> None:
        if state == RunState.RUNNING:
            self.meter.reset()

"""The one settings wrapper over QSettings, and the option dataclasses built from it.

Keys are namespaced ``group/name``: each option dataclass names its group in ``GROUP`` and each
field is one key (``overlay/font_size``). The GUI reads and writes settings here only; workers
receive the dataclasses and never open QSettings themselves.

Tests isolate settings by giving QCoreApplication a random application name (and pointing
QSettings' user scope at a temporary folder) before creating a :class:`Settings`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from PySide6.QtCore import QByteArray, QSettings

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from model.engine_types import EngineOptions

__all__ = [
    "LiveOptions",
    "ModelOptions",
    "OverlayOptions",
    "Settings",
    "SourceOptions",
    "engine_options",
    "talkativeness_to_threshold",
]

T = TypeVar("T")


@dataclass(frozen=True)
class ModelOptions:
    """Which checkpoint to load and how (arguments of ``model.loading.load_model``)."""

    GROUP: ClassVar[str] = "model"
    source: str = ""  # a Hugging Face id, a local folder, or "demo"; "" = not chosen yet
    precision: str = "auto"  # auto | 4bit | 8bit | bf16 | fp16 | fp32
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    adapter: str = ""  # a PEFT LoRA folder, "" for none
    kernels: str = "auto"  # model.device.KERNEL_MODES: auto | triton | off (Triton kernels, CUDA 4-bit)

    def __post_init__(self) -> None:
        from model.device import KERNEL_MODES  # torch-free

        if self.kernels not in KERNEL_MODES:  # a stale or hand-edited setting: the default, not a failed load
            object.__setattr__(self, "kernels", "auto")

    @property
    def is_demo(self) -> bool:
        return self.source == "demo"

    def label(self) -> str:
        """The chosen model in words, before it loads (model.catalog.active_model_label's rule; the demo
        with no adapter chosen loads its own shapes adapter)."""
        from model.catalog import active_model_label  # torch-free

        if not self.source:
            return "no model"
        if self.is_demo and not self.adapter:
            return "demo shapes model (a toy)"
        return active_model_label(self.source, self.adapter or None)


@dataclass(frozen=True)
class SourceOptions:
    """What the capture worker opens: ``app.sources.open_source(spec, **open_kwargs())``.

    ``spec`` is an ``app.sources.SourceSpec`` string, the camera resolution included
    (``webcam:0@1280x720``). ``width``/``height`` only carry the keys that settings saved before
    the resolution moved into the spec: a webcam spec without a resolution takes it from them,
    after which both read 0 (and are saved as 0)."""

    GROUP: ClassVar[str] = "source"
    spec: str = ""  # a file path, "webcam:N[@WxH]" or "screen:N[@x,y,w,h]"; "" = not chosen yet
    width: int = dataclasses.field(default=0, repr=False)  # legacy: folded into spec by __post_init__
    height: int = dataclasses.field(default=0, repr=False)
    realtime: bool = True  # files play at their own speed, like a live stream

    def __post_init__(self) -> None:
        if self.width or self.height:
            object.__setattr__(self, "spec", self._with_resolution(self.width, self.height))
            object.__setattr__(self, "width", 0)
            object.__setattr__(self, "height", 0)

    def _with_resolution(self, width: int, height: int) -> str:
        """``spec`` with a legacy camera resolution folded in, when it is a webcam spec without one."""
        from app.sources import SourceError, SourceSpec

        try:
            spec = SourceSpec.parse(self.spec)
            if spec.kind == "webcam" and spec.width is None and width > 0 and height > 0:
                return str(dataclasses.replace(spec, width=int(width), height=int(height)))
        except SourceError:
            pass  # a damaged spec stays as it is; opening it says what is wrong
        return self.spec

    def source_spec(self) -> Any:
        """The parsed ``app.sources.SourceSpec``; SourceError when ``spec`` is empty or invalid."""
        from app.sources import SourceSpec

        return SourceSpec.parse(self.spec)

    def open_kwargs(self) -> dict[str, Any]:
        """What ``open_source`` needs beside the spec: whether a file plays in real time."""
        from app.sources import SourceError

        try:
            is_file = self.source_spec().kind == "file"
        except SourceError:
            return {}  # opening the spec reports the problem
        return {"realtime": self.realtime} if is_file else {}


@dataclass(frozen=True)
class LiveOptions:
    """The live tab's choices: task, pace and how answers show."""

    GROUP: ClassVar[str] = "live"
    # What a settings file may hold (Settings.load clamps to these: a damaged file never stops the window).
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "fps": (1.0, 2.0),
        "talkativeness": (0, 100),
        "subtitle_seconds": (1.0, 60.0),
        "max_answer_tokens": (1, 512),
    }
    task: str = "narrate"  # a key of model.presets.TASK_PRESETS
    task_target: str = ""  # what "tell me when ..." waits for
    fps: float = 1.0  # model steps per second: 1 or 2
    model_decides: bool = True  # the state with the highest probability wins
    talkativeness: int = 50  # otherwise: answer when P(Response) >= 1 - talkativeness / 100
    subtitle_seconds: float = 6.0  # a subtitle fades this long after its last token
    max_answer_tokens: int = 64
    keep_frames: bool = False  # save each frame the model gets beside the session log (app.session.frames_dir)


@dataclass(frozen=True)
class VoiceOptions:
    """Voice input and spoken answers (Voice > Voice settings)."""

    GROUP: ClassVar[str] = "voice"
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "sensitivity": (0, 100),
        "tts_rate": (0, 600),
        "tts_volume": (0.0, 1.0),
    }
    input_device: str = ""  # a microphone's name; "" = the default one
    asr_model: str = ""  # a Whisper id or folder, "demo"; "" = by free memory (small on a GPU with room, else base)
    language: str = ""  # of the spoken questions; "" = detected
    sensitivity: int = 50  # 0..100: how readily speech is heard (the VAD threshold 0.8 .. 0.2)
    hands_free: bool = False  # listen all the time (voice activity decides); else push-to-talk
    ptt_toggle: bool = False  # the talk key toggles instead of being held
    headphones: bool = False  # the mic cannot hear the answers: listen while they play (and let speech interrupt them)
    # Take the answers' echo out of the microphone (app/voice/echo.py), so talking over them interrupts them
    # without headphones; off (or livekit missing): the microphone is muted while an answer plays.
    echo_cancellation: bool = True
    speak_answers: bool = True  # answers to your questions
    speak_narration: bool = False  # the narration of the task's instruction too
    tts_voice: str = ""  # "" = the engine's default voice
    tts_rate: int = 0  # words per minute; 0 = the engine's default
    tts_volume: float = 1.0

    def vad_threshold(self) -> float:
        return round(0.8 - 0.6 * min(100, max(0, self.sensitivity)) / 100, 2)


@dataclass(frozen=True)
class OverlayOptions:
    """The always-on-top subtitle window."""

    GROUP: ClassVar[str] = "overlay"
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "font_size": (8, 200),
        "x": (-100_000, 100_000),  # left of or above the primary screen on a second monitor
        "y": (-100_000, 100_000),
        "width": (200, 100_000),
    }
    visible: bool = False
    click_through: bool = False
    font_family: str = ""  # "" = the application font
    font_size: int = 24
    text_color: str = "#ffffff"
    background_color: str = "#b4000000"  # #AARRGGBB
    x: int = -1  # -1 = centred near the bottom of the primary screen
    y: int = -1
    width: int = 900


def talkativeness_to_threshold(value: int, model_decides: bool = False) -> float | None:
    """Slider value 0..100 -> the engine's P(Response) threshold (None: the model's own argmax).
    The engine answers when P(Response) >= threshold, so more talkative means a lower one."""
    if model_decides:
        return None
    return round(min(0.98, max(0.02, 1.0 - value / 100)), 2)


def engine_options(live: LiveOptions) -> EngineOptions:
    """The engine's options for a run (``model/engine_types.py``, torch-free; imported when first needed)."""
    from model.engine_types import EngineOptions

    return EngineOptions(
        fps=float(live.fps),
        threshold=talkativeness_to_threshold(live.talkativeness, live.model_decides),
        max_answer_tokens=int(live.max_answer_tokens),
        task=live.task,
        task_target=live.task_target or None,
    )


class Settings:
    """Typed access to the application's QSettings. Create it on the GUI thread."""

    GEOMETRY = "window/geometry"
    WINDOW_STATE = "window/state"
    SPLITTER = "window/splitter"
    LAST_DIR = "paths/last_dir"
    WAYLAND_WARNED = "overlay/wayland_warned"

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self._q = qsettings if qsettings is not None else QSettings()

    @property
    def qsettings(self) -> QSettings:
        return self._q

    # -- single keys
    def value(self, key: str, default: T) -> T:
        """The stored value converted to ``default``'s type (QSettings' INI backend returns text)."""
        raw = self._q.value(key, None)
        if raw is None:
            return default
        return _coerce(raw, type(default), default)

    def set_value(self, key: str, value: Any) -> None:
        self._q.setValue(key, value)

    def bytes_value(self, key: str) -> QByteArray | None:
        raw = self._q.value(key, None)
        return raw if isinstance(raw, QByteArray) else None

    def remove(self, key: str) -> None:
        self._q.remove(key)

    # -- option dataclasses
    def load(self, cls: type[T]) -> T:
        """An instance of the option dataclass ``cls`` from ``GROUP/field`` keys: defaults where unset or
        unreadable, numbers clamped to ``cls.RANGES``, and the defaults altogether (with a log line) when the
        values together are refused. A damaged settings file never stops the window."""
        hints = typing.get_type_hints(cls)
        ranges = getattr(cls, "RANGES", {})
        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            default = f.default
            raw = self._q.value(f"{cls.GROUP}/{f.name}", None)  # type: ignore[attr-defined]
            value = default if raw is None else _coerce(raw, _base_type(hints[f.name]), default)
            if f.name in ranges and isinstance(value, (int, float)) and not isinstance(value, bool):
                low, high = ranges[f.name]
                clamped = type(value)(min(high, max(low, value)))
                if clamped != value:
                    log.warning(
                        "settings: %s/%s=%r is outside %s..%s; using %r", cls.GROUP, f.name, value, low, high, clamped
                    )  # type: ignore[attr-defined]
                value = clamped
            values[f.name] = value
        try:
            return cls(**values)
        except (TypeError, ValueError) as e:
            log.warning("settings: the saved %s options are refused (%s); using the defaults", cls.GROUP, e)  # type: ignore[attr-defined]
            return cls()

    def save(self, options: Any) -> None:
        for f in dataclasses.fields(options):
            self._q.setValue(f"{options.GROUP}/{f.name}", getattr(options, f.name))

    def sync(self) -> None:
        self._q.sync()


def _base_type(hint: Any) -> type:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _coerce(raw: Any, kind: type, default: Any) -> Any:
    try:
        if kind is bool:
            if isinstance(raw, str):
                return raw.strip().lower() in ("1", "true", "yes", "on")
            return bool(raw)
        if kind is int:
            number = float(raw)
            return int(number) if math.isfinite(number) else default
        if kind is float:
            number = float(raw)
            return number if math.isfinite(number) else default
        if kind is str:
            return "" if raw is None else str(raw)
    except (TypeError, ValueError, OverflowError):
        return default
    return raw

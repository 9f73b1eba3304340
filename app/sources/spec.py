"""Source specs: the one parser and printer of the strings that name a source.

::

    FILE | webcam[:N][@WxH] | screen[:N][@x,y,w,h]

* ``webcam`` is camera 0, ``webcam:N`` camera N, ``webcam:N@WxH`` with a requested resolution;
* ``screen`` is monitor 1, ``screen:N`` monitor N (0 = all monitors together),
  ``screen:N@x,y,w,h`` a region relative to monitor N's top-left corner;
* anything else is a video file path (``~`` is expanded). Text that starts with ``webcam`` or
  ``screen`` is always read as a live source: write ``./webcam`` for a file of that name.

``SourceSpec.parse(text)`` reads a spec, ``str(spec)`` prints the canonical form
(``webcam:0@1280x720``, ``screen:1@0,0,640,480``, the file path), and
``SourceSpec.parse(str(s)) == s`` for every valid spec. ``spec.build(**opts)`` makes the
(unopened) source; :func:`parse_source` and :func:`open_source` do both in one call.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Literal

from app.sources.base import FrameSource, SourceError
from app.sources.file import VideoFileSource
from app.sources.screen import ScreenSource
from app.sources.webcam import WebcamSource

__all__ = ["SourceSpec", "open_source", "parse_source"]

SourceKind = Literal["file", "webcam", "screen"]
Region = tuple[int, int, int, int]

NO_SOURCE = "No source given: choose a video file, webcam or screen."
_WEBCAM_FORMS = "webcam, webcam:N or webcam:N@WIDTHxHEIGHT"
_SCREEN_FORMS = "screen, screen:N or screen:N@x,y,w,h"
_WEBCAM_RE = re.compile(r"webcam(?::(\d+))?(?:@(\d+)x(\d+))?", re.IGNORECASE)
_SCREEN_RE = re.compile(r"screen(?::(\d+))?(?:@(.*))?", re.IGNORECASE | re.DOTALL)
_REGION_RE = re.compile(r"\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*")
_LIVE_PREFIXES = ("webcam", "screen")
_LIVE_IGNORED = ("realtime",)  # live sources are always real time


def _looks_live(text: str) -> bool:
    """Whether the parser reads ``text`` as a webcam or screen spec rather than a file."""
    return text.strip().lower().startswith(_LIVE_PREFIXES)


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source spec. Build one with :meth:`parse`, :meth:`file`, :meth:`webcam` or
    :meth:`screen`; the fields that do not belong to ``kind`` stay None.

    ``index`` defaults to 0 for a webcam and 1 for the screen (0 = all monitors); ``width`` and
    ``height`` request a webcam resolution (both or neither); ``region`` is a screen
    ``(x, y, w, h)`` relative to monitor ``index``. A file ``path`` has ``~`` expanded, and gets a
    ``./`` in front when it would otherwise read as a live spec (``./webcam``)."""

    kind: SourceKind
    path: str | None = None
    index: int | None = None
    width: int | None = None
    height: int | None = None
    region: Region | None = None

    def __post_init__(self) -> None:
        if self.kind == "file":
            self._check_file()
        elif self.kind in ("webcam", "screen"):
            self._check_live()
        else:
            raise ValueError(f"unknown source kind {self.kind!r}: expected 'file', 'webcam' or 'screen'")

    def _check_file(self) -> None:
        if self.index is not None or self.width is not None or self.height is not None or self.region is not None:
            raise ValueError("a file spec has only a path")
        path = os.path.expanduser(os.fspath(self.path if self.path is not None else ""))
        if not path.strip():
            raise SourceError(NO_SOURCE)
        if path != path.strip():  # the parser strips the text, so it could never name this file
            raise SourceError(f"the video file path '{path}' begins or ends with a space; rename the file.")
        if _looks_live(path):
            path = os.path.join(".", path)
        object.__setattr__(self, "path", path)

    def _check_live(self) -> None:
        if self.path is not None:
            raise ValueError(f"a {self.kind} spec has no path")
        index = (0 if self.kind == "webcam" else 1) if self.index is None else int(self.index)
        if index < 0:
            raise SourceError(f"the {self.kind} number must be 0 or more, not {index}.")
        object.__setattr__(self, "index", index)
        if self.kind == "screen":
            if self.width is not None or self.height is not None:
                raise ValueError("a screen spec has no width or height: give a region")
            if self.region is not None:
                object.__setattr__(self, "region", _checked_region(self.region))
            return
        if self.region is not None:
            raise ValueError("a webcam spec has no region")
        if (self.width is None) != (self.height is None):
            raise SourceError("a webcam resolution needs both a width and a height.")
        if self.width is not None:
            width, height = int(self.width), int(self.height)  # type: ignore[arg-type]
            if width <= 0 or height <= 0:
                raise SourceError(f"the webcam resolution {width}x{height} must be above 0x0.")
            object.__setattr__(self, "width", width)
            object.__setattr__(self, "height", height)

    # -- making specs
    @classmethod
    def file(cls, path: str | os.PathLike[str]) -> SourceSpec:
        return cls("file", path=os.fspath(path))

    @classmethod
    def webcam(cls, index: int = 0, width: int | None = None, height: int | None = None) -> SourceSpec:
        return cls("webcam", index=index, width=width, height=height)

    @classmethod
    def screen(cls, index: int = 1, region: Region | None = None) -> SourceSpec:
        return cls("screen", index=index, region=region)

    @classmethod
    def parse(cls, text: str) -> SourceSpec:
        """The spec ``text`` names; SourceError naming ``text`` and the accepted forms otherwise."""
        stripped = text.strip()
        if not stripped:
            raise SourceError(NO_SOURCE)
        lowered = stripped.lower()
        if re.match(r"^[a-z][a-z0-9+.-]*://", lowered):  # http://, rtsp://, file:// ...
            raise SourceError(
                f"'{stripped}' is a web address: streams from URLs are not read. Download the video and choose the "
                "file, or use a webcam or the screen."
            )
        # "screencast.mp4" reads as a bad screen spec: say how to name such a file (both keywords
        # have six letters; a ":" or "@" after one means a live spec was meant).
        hint = "" if lowered[6:7] in (":", "@") else f" (write ./{stripped} for a video file of that name)"
        if lowered.startswith("webcam"):
            m = _WEBCAM_RE.fullmatch(stripped)
            if not m:
                raise SourceError(f"Invalid source '{text}': expected {_WEBCAM_FORMS}{hint}.")
            index, w, h = m.groups()
            return cls._build_checked(text, "webcam", index=_int(index, 0), width=_int(w), height=_int(h))
        if lowered.startswith("screen"):
            m = _SCREEN_RE.fullmatch(stripped)
            region = None
            if m and m.group(2) is not None:
                region = _match_region(m.group(2))
            if not m or (m.group(2) is not None and region is None):
                raise SourceError(f"Invalid source '{text}': expected {_SCREEN_FORMS}{hint}.")
            return cls._build_checked(text, "screen", index=_int(m.group(1), 1), region=region)
        return cls._build_checked(text, "file", path=stripped)

    @classmethod
    def _build_checked(cls, text: str, kind: SourceKind, **fields: Any) -> SourceSpec:
        try:
            return cls(kind, **fields)
        except SourceError as e:
            forms = {"webcam": _WEBCAM_FORMS, "screen": _SCREEN_FORMS}.get(kind)
            expected = f"; expected {forms}" if forms else ""
            raise SourceError(f"Invalid source '{text}': {str(e).rstrip('.')}{expected}.") from None

    @staticmethod
    def parse_region(text: str) -> Region:
        """``"x,y,w,h"`` (spaces allowed) -> ``(x, y, w, h)``; SourceError when it is not one."""
        region = _match_region(text)
        if region is None:
            raise SourceError(f"Invalid region '{text}': expected x,y,w,h (four whole numbers).")
        try:
            return _checked_region(region)
        except SourceError as e:
            raise SourceError(f"Invalid region '{text}': {e}") from None

    @staticmethod
    def format_region(region: Region) -> str:
        """``(x, y, w, h)`` -> ``"x,y,w,h"``, as the spec writes it."""
        return ",".join(str(int(v)) for v in region)

    # -- using specs
    def __str__(self) -> str:
        if self.kind == "file":
            return str(self.path)
        text = f"{self.kind}:{self.index}"
        if self.kind == "webcam" and self.width is not None:
            text += f"@{self.width}x{self.height}"
        if self.kind == "screen" and self.region is not None:
            text += "@" + self.format_region(self.region)
        return text

    @property
    def is_live(self) -> bool:
        return self.kind != "file"

    def build(self, **opts: Any) -> FrameSource:
        """The unopened source. ``opts`` go to its constructor (``capture_factory``,
        ``first_frame_timeout``, ``capture_fps``, ``grabber``, ...); ``realtime`` is ignored for
        live sources, and ``width``/``height``/``region`` given here win over the spec's."""
        if self.kind == "file":
            return VideoFileSource(str(self.path), **opts)
        live_opts = {k: v for k, v in opts.items() if k not in _LIVE_IGNORED}
        if self.kind == "webcam":
            if self.width is not None:
                live_opts.setdefault("width", self.width)
                live_opts.setdefault("height", self.height)
            return WebcamSource(self.index, **live_opts)  # type: ignore[arg-type]
        if self.region is not None:
            live_opts.setdefault("region", self.region)
        return ScreenSource(self.index, **live_opts)  # type: ignore[arg-type]

    def open(self, **opts: Any) -> FrameSource:
        """``build(**opts).open()``: an opened source (use it in a ``with`` block)."""
        return self.build(**opts).open()


def _int(text: str | None, default: int | None = None) -> int | None:
    return default if text is None else int(text)


def _match_region(text: str) -> Region | None:
    m = _REGION_RE.fullmatch(text)
    return None if m is None else tuple(int(v) for v in m.groups())  # type: ignore[return-value]


def _checked_region(region: Region) -> Region:
    values = tuple(int(v) for v in region)
    if len(values) != 4:
        raise ValueError(f"a region is (x, y, w, h), got {region!r}")
    if values[2] <= 0 or values[3] <= 0:
        raise SourceError(f"the region {SourceSpec.format_region(values)} needs a width and height above 0.")  # type: ignore[arg-type]
    return values  # type: ignore[return-value]


def parse_source(spec: str, **opts: Any) -> FrameSource:
    """``SourceSpec.parse(spec).build(**opts)``: an unopened source."""
    return SourceSpec.parse(spec).build(**opts)


def open_source(spec: str, **opts: Any) -> FrameSource:
    """``parse_source(spec, **opts).open()``: an opened source (use it in a ``with`` block)."""
    return parse_source(spec, **opts).open()

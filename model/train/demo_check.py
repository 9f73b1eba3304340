"""What the demo shapes adapter must say, and the check a fresh build runs on itself.

The demo adapter is a tiny network trained in a few minutes, and whether a build comes out honest is
partly luck: the seed, and the order the CPU adds floating-point sums in (docs/training.md: 2 of 7
version-4-like builds passed every check). So the first-use build checks itself before it is kept
(``model.train.demo.ensure_demo_adapter``) on the clips ``bench.bench_demo`` measures recipes with:

- the bundled sample clip (``assets/sample.mp4``): exactly the ball's and the square's captions, at
  the seconds they leave (:data:`EXPECTED`);
- footage without its shapes (:data:`BLANKS`: grey, noise, black, colour bars, a desktop-like screen,
  a photo-like scene): nothing said;
- a ball five minutes into a grey stream (:data:`LATE`): its exact caption at 303 s and nothing else.

Each clip runs through the live engine as ``narrate`` runs it (the Live narrate task, the demo's
window, the frame nearest each second: ``model.train.evaluate.decode_by_time``), so what the check
passes is what Live says. ``bench.bench_demo`` runs the same verdicts through the ``narrate`` command.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: The bundled sample clip (scripts/make_sample_clip.py); the app ships it beside the packages.
SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "sample.mp4"
#: On the sample clip the ball leaves at 4 s and the square at 7 s: each caption within a second of it.
EXPECTED = {"ball": (3, 5), "square": (6, 8)}
#: Footage without the shapes, seconds of each (bars, screen and photo were never in training).
BLANKS = {"grey": 60, "noise": 60, "black": 120, "bars": 60, "screen": 60, "photo": 60}
#: A shape late in a long stream: five minutes of grey, the ball from 300 s to 303 s (its caption due
#: at 303 s, the first second without it), then 7 s more.
LATE = {"appear": 300, "leave": 303, "seconds": 310}

#: How a problem on footage without shapes is worded (:func:`speaks_on_blank` finds them by it).
ON_BLANK = "footage without shapes"
#: How a check that could not run is worded (:func:`not_checked`, :func:`severity`).
NOT_CHECKED = "the self-check could not run"

Said = list[tuple[float, str]]  # (stream second, answer) of each response


def blank_clips(folder: Path) -> dict[str, Path]:
    from model.train.synthetic import write_clip

    return {
        k: write_clip(folder / f"{k}.mp4", [], s, video_fps=2, counters=False, backdrop=k) for k, s in BLANKS.items()
    }


def late_clip(folder: Path) -> Path:
    from model.train.synthetic import Event, write_clip

    event = Event("ball", LATE["appear"], LATE["leave"])
    return write_clip(folder / "late.mp4", [event], LATE["seconds"], video_fps=2)


def exact(said: Said) -> bool:
    """The sample clip: the two captions word for word, each within a second of its shape leaving."""
    from model.train.synthetic import SHAPES

    if len(said) != len(EXPECTED):
        return False
    return all(
        any(text == SHAPES[key].caption and lo <= t <= hi for t, text in said) for key, (lo, hi) in EXPECTED.items()
    )


def late_exact(said: Said) -> bool:
    """The minute-5 clip: one answer, the ball's caption, within a second of 303 s."""
    from model.train.synthetic import SHAPES

    return len(said) == 1 and said[0][1] == SHAPES["ball"].caption and abs(said[0][0] - LATE["leave"]) <= 1


def problems(sample: Said | None, blanks: dict[str, Said], late: Said) -> list[str]:
    """What a build got wrong, in words (empty: it passes). ``sample`` None: the clip is not there."""
    found = []
    if sample is not None and not exact(sample):
        found.append(f"the sample clip: said {_show(sample)}")
    for kind, said in blanks.items():
        if said:
            found.append(f"{BLANKS[kind]} s of {kind} {ON_BLANK}: said {_show(said)}")
    if not late_exact(late):
        found.append(f"a ball at minute 5: said {_show(late)}")
    return found


def speaks_on_blank(problem: str) -> bool:
    """Whether a problem of :func:`problems` is an answer on footage without shapes."""
    return f" {ON_BLANK}: " in problem


def not_checked(error: Exception) -> list[str]:
    """The problems of weights the check could not run on (a clip that fails to decode, say)."""
    return [f"{NOT_CHECKED} ({type(error).__name__}: {error})"]


def severity(found: list[str]) -> tuple[bool, int, int]:
    """How bad a build with problems ``found`` is, for choosing between builds (lower is better):
    weights the check could not run on rank last (nothing is known of them), then speaking on footage
    without shapes (the demo must stay silent on anything but its shapes), then how many problems."""
    return any(p.startswith(NOT_CHECKED) for p in found), sum(map(speaks_on_blank, found)), len(found)


def _show(said: Said, most: int = 3) -> str:
    if not said:
        return "nothing"
    clip = lambda text: text if len(text) <= 60 else text[:57] + "..."  # noqa: E731 - garbled answers run long
    shown = "; ".join(f"{clip(text)!r} at {t:.0f} s" for t, text in said[:most])
    return shown + (f" and {len(said) - most} more" if len(said) > most else "")


ProgressFn = Callable[[int, int, str], None]  # (done, total, what)


def check_build(adapter: Path, folder: Path, progress: ProgressFn | None = None) -> list[str]:
    """Narrate every check clip with the demo model and ``adapter`` through the live engine; the
    problems found (:func:`problems`). ``folder`` holds the rendered clips (kept for the next build)."""
    from model.engine import StreamEngine
    from model.engine_types import EngineOptions
    from model.loading import load_model
    from model.train.evaluate import decode_by_time

    folder.mkdir(parents=True, exist_ok=True)
    clips: dict[str, Path] = {}
    if SAMPLE.is_file():
        clips["sample"] = SAMPLE
    else:
        log.warning("the demo check cannot find the sample clip %s; checking the other clips", SAMPLE)
    made = {k: folder / f"{k}.mp4" for k in [*BLANKS, "late"]}
    if not all(p.is_file() for p in made.values()):
        blank_clips(folder)
        late_clip(folder)
    clips.update(made)
    loaded = load_model("demo", device="cpu", adapter=adapter, kernels="off")
    engine = StreamEngine(loaded, EngineOptions(task="narrate"))  # narrate's task; the demo's window
    said: dict[str, Said] = {}
    for k, (name, path) in enumerate(clips.items()):
        if progress:
            # a few seconds in all: no step count (total 0 reads as "busy"), the clip in the words
            progress(0, 0, f"Checking the demo shapes adapter on its test clips ({name}, {k + 1} of {len(clips)})")
        frames, _, _ = decode_by_time(path, engine.opts.fps)  # RGB, as the file source gives them
        engine.reset()
        said[name] = []
        for i, frame in enumerate(frames):
            result = engine.step(frame, t=i / engine.opts.fps)
            if result.text:
                said[name].append((i / engine.opts.fps, result.text))
    blanks = {k: said[k] for k in BLANKS}
    return problems(said.get("sample"), blanks, said["late"])

"""The demo shapes adapter: what makes the demo model say something that fits.

The demo model is a tiny random network. On first use this module trains a LoRA adapter for it
with the real trainer on synthetic clips (``model/train/synthetic.py``: a red ball, a blue square
and a green triangle that appear, move and leave, captioned), on the CPU in about five minutes,
and caches it in the data folder. With it the demo narrates the bundled sample clip's shapes at the
right seconds. It knows those three shapes and nothing else: a toy shapes model.

``STREAMO_LIVE_DEMO_ADAPTER=0`` keeps the random demo (the test suite does, for speed).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from model.catalog import DEMO_MAX_TURNS
from model.paths import data_dir

log = logging.getLogger(__name__)

# The recipe (version 4, issue 18 item 9): 96 short clips of up to three events on grey; 12 grey streams of
# about ten minutes with a shape every 3-33 s (``long``: time labels and counters far into a stream, so a
# shape at minute 5 is narrated as one at second 5); 15 clips of 20-120 s with nothing happening on grey,
# black, noise, a gradient and bright frames; every clip cut into the 32-turn windows the demo runs with
# (catalog.DEMO_MAX_TURNS; no shape straddles two); 2,400 steps; LoRA on the vision merger as well as the
# decoder (docs/training.md). Measured with `python -m bench.bench_demo` (the build, then `narrate`): the
# sample clip's two captions word for word at 4 s and 7 s, nothing said on a minute each of grey, noise,
# colour bars, a desktop-like screen and a photo-like scene and two of black, and a ball appearing at
# minute 5 of a grey stream narrated in its exact caption at 303 s and nothing else. docs/training.md has
# the seeds and the recipes tried on the way.
RECIPE = {
    "clips": 96,
    "max_events": 3,
    "steps": 2400,
    "seed": 0,
    "merger": 1,
    "empty": 15,
    "empty_max": 120,
    "lead": 0,
    "gap": 2,
    "empty_kinds": 5,
    "window": DEMO_MAX_TURNS,  # the window Live runs the demo with
    "long": 12,
    "long_seconds": 600,
    "long_gap": 30,
    "version": 4,
}
ProgressFn = Callable[[int, int, str], None]  # (done, total, what)


def demo_adapter_dir() -> Path:
    return data_dir() / "demo-shapes-adapter"


def demo_adapter_enabled() -> bool:
    return os.environ.get("STREAMO_LIVE_DEMO_ADAPTER", "1").strip().lower() not in ("0", "off", "false", "no")


def _marker(checkpoint: Path) -> dict:
    tiny = json.loads((checkpoint / "streamo_tiny.json").read_text(encoding="utf-8"))
    return {"recipe": RECIPE, "checkpoint": tiny}


def demo_adapter_ready() -> Path | None:
    """The cached adapter if it was trained by this recipe on today's demo checkpoint."""
    from model.loading import demo_checkpoint_dir, tiny_checkpoint_current

    folder, checkpoint = demo_adapter_dir(), demo_checkpoint_dir()
    try:
        if tiny_checkpoint_current(checkpoint) and (folder / "adapter_model.safetensors").is_file():
            if json.loads((folder / "streamo_demo.json").read_text(encoding="utf-8")) == _marker(checkpoint):
                return folder
    except (OSError, json.JSONDecodeError):
        pass
    return None


def _remove_abandoned_builds(final: Path) -> None:
    """Build folders of processes that ended mid-build (a closed app, a crash)."""
    import psutil

    for folder in final.parent.glob(f"{final.name}.build-*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def ensure_demo_adapter(progress: ProgressFn | None = None, stop: threading.Event | None = None) -> Path:
    """The demo shapes adapter, trained now if it is not cached (about five minutes on a 2-core CPU).
    Builds in a private folder and renames it into place, so two processes never see half of one."""
    from model.loading import ensure_demo_checkpoint
    from model.train.config import TrainConfig
    from model.train.synthetic import make_dataset
    from model.train.trainer import TrainingError, train

    ready = demo_adapter_ready()
    if ready is not None:
        return ready
    checkpoint = ensure_demo_checkpoint()
    final = demo_adapter_dir()
    _remove_abandoned_builds(final)
    work = final.with_name(f"{final.name}.build-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    say = progress or (lambda done, total, what: None)
    say(0, RECIPE["steps"], "Making the demo's synthetic shape clips")
    try:
        annotations = make_dataset(
            work / "clips",
            RECIPE["clips"],
            seed=RECIPE["seed"],
            max_events=RECIPE["max_events"],
            empty_clips=RECIPE.get("empty", 0),
            empty_seconds=(20, RECIPE["empty_max"]),
            lead=RECIPE["lead"],
            window=RECIPE["window"],
            gap=RECIPE["gap"],
            empty_kinds=RECIPE["empty_kinds"],
            long_clips=RECIPE["long"],
            long_seconds=RECIPE["long_seconds"],
            long_gap=RECIPE["long_gap"],
        )
        config = TrainConfig(
            data=[str(annotations)],
            video_prefix=str(work / "clips"),
            model="demo",
            out=str(work / "adapter"),
            steps=RECIPE["steps"],
            max_turns=RECIPE["window"],
            holdout=0.0,
            seed=RECIPE["seed"],
            lora_merger=bool(RECIPE.get("merger", 0)),
            device="cpu",
            cache_dir=str(work / "frames"),
            command="(built by Streamo Live for the demo model: model/train/demo.py)",
        )

        def on_event(event: dict) -> None:
            if event["event"] == "step":
                say(event["step"], event["total_steps"], building_words(float(event.get("eta_s", -1.0))))

        result = train(config, on_event=on_event, stop=stop)
        if result.status != "done":
            raise TrainingError("building the demo shapes adapter was stopped")
        adapter = work / "adapter"
        shutil.rmtree(adapter / "checkpoints", ignore_errors=True)
        (adapter / "streamo_demo.json").write_text(json.dumps(_marker(checkpoint)), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        adapter.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("demo shapes adapter ready in %s", final)
    return final


def building_words(eta_s: float) -> str:
    """What the first-use build says at a step, with the trainer's ETA once it has one."""
    if eta_s < 0:
        return "Training the demo shapes adapter (first use only)"
    left = f"{max(1, round(eta_s))} s" if eta_s < 90 else f"{round(eta_s / 60)} min"
    return f"Training the demo shapes adapter (first use only; about {left} left)"


def demo_adapter_for(
    source: str, adapter: str | Path | None, progress: ProgressFn | None = None, stop: threading.Event | None = None
) -> Path | None:
    """The adapter to load: the caller's; else, for the demo model, the shapes adapter (built on first
    use) unless turned off; a build that fails leaves the random demo running, with a warning."""
    from model.catalog import DEMO_MODEL

    if adapter:
        return Path(adapter)
    if source != DEMO_MODEL or not demo_adapter_enabled():
        return None
    try:
        return ensure_demo_adapter(progress, stop)
    except Exception as e:  # noqa: BLE001 - the demo must still start
        log.warning("could not build the demo shapes adapter (%s); running the random demo model", e)
        return None

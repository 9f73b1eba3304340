"""Settings: one wrapper, namespaced keys, typed round trips, isolated per test; the window
saves its choices on close and the next window restores them."""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QSettings

from app.settings import (
    LiveOptions,
    ModelOptions,
    OverlayOptions,
    Settings,
    SourceOptions,
    engine_options,
    talkativeness_to_threshold,
)


def test_each_option_dataclass_round_trips(settings: Settings):
    values = [
        ModelOptions(source="Qwen/Qwen2.5-VL-3B-Instruct", precision="4bit", device="cuda:1", adapter="/a/b"),
        SourceOptions(spec="webcam:2", width=1280, height=720, realtime=False),
        LiveOptions(task="grounding", task_target="the kettle boils", fps=2.0, model_decides=False, talkativeness=73),
        OverlayOptions(
            visible=True, click_through=True, font_family="DejaVu Sans", font_size=31, x=12, y=34, width=777
        ),
    ]
    for v in values:
        settings.save(v)
    settings.sync()
    fresh = Settings(QSettings())  # what a new process reads back from the file
    for v in values:
        assert fresh.load(type(v)) == v


def test_keys_are_namespaced_and_defaults_fill_gaps(settings: Settings):
    settings.save(OverlayOptions(font_size=40))
    keys = settings.qsettings.allKeys()
    assert "overlay/font_size" in keys and all("/" in k for k in keys)
    settings.set_value("live/fps", "not a number")  # an edited or damaged file
    assert settings.load(LiveOptions).fps == LiveOptions().fps
    assert settings.load(ModelOptions) == ModelOptions()


def test_tests_run_in_an_isolated_scope(settings: Settings, tmp_path):
    assert QCoreApplication.applicationName().startswith("test-")
    settings.save(ModelOptions(source="demo"))
    settings.sync()
    assert str(tmp_path) in settings.qsettings.fileName()


def test_talkativeness_maps_to_the_engine_threshold():
    assert talkativeness_to_threshold(50, model_decides=True) is None
    assert talkativeness_to_threshold(0) == 0.98
    assert talkativeness_to_threshold(50) == 0.5
    assert talkativeness_to_threshold(100) == 0.02
    o = engine_options(
        LiveOptions(task="grounding", task_target="a dog", fps=2.0, model_decides=False, talkativeness=70)
    )
    assert (o.fps, o.threshold, o.task, o.task_target) == (2.0, 0.3, "grounding", "a dog")


def test_window_choices_survive_a_restart(make_harness, settings: Settings, tmp_path):
    h = make_harness()
    tab = h.window.live_tab
    tab.set_options(
        SourceOptions(spec=str(tmp_path / "clip.mp4"), realtime=False),
        LiveOptions(task="events", fps=2.0, model_decides=False, talkativeness=65, subtitle_seconds=9.5),
    )
    h.window.toggle_overlay(True)
    h.window.overlay.move(123, 145)
    h.window.on_overlay_moved(h.window.overlay.pos())
    h.window.close()

    again = make_harness()
    tab = again.window.live_tab
    assert tab.source_options() == SourceOptions(spec=str(tmp_path / "clip.mp4"), realtime=False)
    live = tab.live_options()
    assert (live.task, live.fps, live.model_decides, live.talkativeness, live.subtitle_seconds) == (
        "events",
        2.0,
        False,
        65,
        9.5,
    )
    overlay = again.window.overlay.options
    assert (overlay.x, overlay.y, overlay.visible) == (123, 145, True)


def test_command_line_overrides_the_saved_model_choice():
    import argparse

    from app.settings import ModelOptions
    from ui.app import model_options_from

    saved = ModelOptions(source="Qwen/Qwen2.5-VL-3B-Instruct", precision="4bit", kernels="auto")
    args = argparse.Namespace(demo=False, model=None, precision="bf16", device=None, adapter=None, kernels="off")
    got = model_options_from(args, saved)
    assert got == ModelOptions(source="Qwen/Qwen2.5-VL-3B-Instruct", precision="bf16", kernels="off")
    assert model_options_from(argparse.Namespace(demo=True), saved).source == "demo"


def test_a_damaged_settings_file_never_stops_the_window(make_harness, settings: Settings):
    """talkativeness=1e309 once aborted the window at every start (rc 134) until the file was edited."""
    from app.settings import LiveOptions, OverlayOptions, VoiceOptions

    q = settings._q
    for key, value in {
        "live/talkativeness": "1e309", "live/fps": "nan", "live/subtitle_seconds": "-Infinity",
        "live/max_answer_tokens": "99999999", "voice/tts_volume": "7", "overlay/font_size": "2",
        "overlay/width": "not a number",
    }.items():  # fmt: skip
        q.setValue(key, value)
    live, voice, overlay = settings.load(LiveOptions), settings.load(VoiceOptions), settings.load(OverlayOptions)
    assert live.talkativeness == 50 and live.fps == 1.0 and live.subtitle_seconds == 6.0  # unreadable: defaults
    assert live.max_answer_tokens == 512 and voice.tts_volume == 1.0 and overlay.font_size == 8  # clamped
    assert overlay.width == OverlayOptions().width
    h = make_harness()  # the window starts on that file
    assert h.window.live_tab.live_options().talkativeness == 50

"""The training estimate: the tiny model's measured CPU figures come back out, the run is planned by
the trainer's own rules, more work never takes less time, and the unmeasured cases say "rough"."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from app.training import estimate as E
from app.training.estimate import ClipInfo, estimate, model_size, plan_run, scan_data
from model.train.config import TrainConfig


def _config(**changes) -> TrainConfig:
    base = {"data": ["x.json"], "model": "demo", "out": "o", "device": "cpu", "holdout": 0.0, "steps": 100}
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def tiny_size(tiny_ckpt) -> E.ModelSize:
    return E.ModelSize.from_config(json.loads((tiny_ckpt / "config.json").read_text()), "tiny")


@pytest.mark.parametrize(("turns", "tokens", "seconds", "rss_gb"), E.CPU_TINY_MEASURED)
def test_the_measured_cpu_figures_come_back(tiny_size, tiny_ckpt, turns, tokens, seconds, rss_gb):
    # The benchmark's setting: the tiny model at the full budget, 320x240 frames (99 visual tokens),
    # one window of `turns` turns per step.
    config = _config(model=str(tiny_ckpt), max_turns=turns, steps=10)
    est = estimate(config, [ClipInfo(turns, 320, 240)], model=tiny_size)
    assert est.visual_tokens == 99 and est.device == "cpu" and est.precision == "fp32"
    assert not est.rough and "measured" in est.note
    assert E.window_tokens(turns, 99) == pytest.approx(tokens, rel=0.01)
    assert est.seconds_per_step == pytest.approx(seconds, rel=0.05)
    assert est.peak_memory_bytes / E.GIB == pytest.approx(rss_gb, rel=0.05)
    assert est.steps == 10
    assert est.seconds > 10 * est.seconds_per_step  # plus start-up, decoding and the evaluations


def test_the_tiny_size_and_the_copied_constants_match_the_code(tiny_size):
    from model.frames import MAX_PIXELS, MIN_PIXELS
    from model.train.config import AUTO_MIN_STEPS

    assert (E.AUTO_MIN_STEPS, E.MIN_PIXELS, E.MAX_PIXELS) == (AUTO_MIN_STEPS, MIN_PIXELS, MAX_PIXELS)
    assert replace(E.TINY_SIZE, name="tiny") == tiny_size
    assert tiny_size.is_tiny and not E.CATALOG_SIZES["Qwen/Qwen2.5-VL-3B-Instruct"].is_tiny


@pytest.mark.parametrize(("size", "budget"), [((320, 240), 100352), ((320, 240), 15680), ((1920, 1080), 100352),
                                              ((64, 48), 100352), ((448, 448), 50176)])  # fmt: skip
def test_visual_tokens_follow_the_image_processor(size, budget):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    w, h = size
    hh, ww = smart_resize(h, w, 28, 3136, budget)
    assert E.smart_resize_tokens(w, h, 3136, budget) == (hh // 28) * (ww // 28)


def test_the_plan_follows_the_trainers_rules():
    from model.train.config import total_steps

    turns = [5, 130, 40, 61, 7, 300, 12, 90, 33, 18]
    for holdout, max_turns, steps, epochs in [(0.0, 60, None, None), (0.2, 32, None, 2.5), (0.1, 120, 37, None)]:
        config = _config(holdout=holdout, max_turns=max_turns, steps=steps, epochs=epochs, model="/models/qwen")
        plan = plan_run(config, turns)
        n_hold = E.heldout_count(len(turns), holdout)
        assert plan.heldout_clips == n_hold
        train = sorted(turns)[n_hold:]
        assert len(plan.train_windows) == sum(math.ceil(t / max_turns) for t in train)
        assert sum(plan.train_windows) == sum(train)
        assert plan.steps == total_steps(config, plan.steps_per_epoch)
    assert E.heldout_count(4, 0.1) == 1 and E.heldout_count(3, 0.1) == 0 and E.heldout_count(10, 0.25) == 2


def test_more_work_never_takes_less_time(tiny_size):
    base = _config(steps=200, max_turns=120)
    times = [estimate(replace(base, steps=s), [30] * 6, model=tiny_size).seconds for s in (1, 10, 100, 1000)]
    assert times == sorted(times) and len(set(times)) == 4
    longer = [estimate(base, [t] * 6, model=tiny_size) for t in (4, 8, 32, 60, 120, 400)]
    assert [e.seconds for e in longer] == sorted(e.seconds for e in longer)
    assert [e.peak_memory_bytes for e in longer] == sorted(e.peak_memory_bytes for e in longer)
    # Bigger windows: slower steps and more memory.
    per_turns = [estimate(replace(base, max_turns=m), [240] * 4, model=tiny_size) for m in (8, 32, 120, 240)]
    assert [e.seconds_per_step for e in per_turns] == sorted(e.seconds_per_step for e in per_turns)
    assert [e.peak_memory_bytes for e in per_turns] == sorted(e.peak_memory_bytes for e in per_turns)
    # More clips with an epoch budget: more steps, more time.
    epochs = replace(base, steps=None, epochs=2.0)
    by_clips = [estimate(epochs, [30] * n, model=tiny_size) for n in (2, 8, 32)]
    assert [e.steps for e in by_clips] == [4, 16, 64]
    assert [e.seconds for e in by_clips] == sorted(e.seconds for e in by_clips)
    # A bigger frame budget costs more.
    budgets = [estimate(replace(base, max_pixels=p), [ClipInfo(30, 640, 480)] * 3, model=tiny_size) for p in
               (3136, 15680, 50176, 100352)]  # fmt: skip
    assert [e.visual_tokens for e in budgets] == sorted(e.visual_tokens for e in budgets)
    assert [e.seconds for e in budgets] == sorted(e.seconds for e in budgets)


def test_gpu_and_real_size_models_are_rough_and_scale_with_the_model():
    config = _config(model="Qwen/Qwen2.5-VL-3B-Instruct", device="auto", steps=800, max_turns=120)
    clips = [ClipInfo(120, 1920, 1080)] * 10
    gpu3 = estimate(config, clips, cuda=True)
    gpu7 = estimate(replace(config, model="Qwen/Qwen2.5-VL-7B-Instruct"), clips, cuda=True)
    assert gpu3.device == "cuda" and gpu3.precision == "4bit" and gpu3.rough and "not measured" in gpu3.note
    assert "(rough)" in gpu3.summary() and "GPU memory" in gpu3.summary()
    assert gpu7.seconds > gpu3.seconds and gpu7.peak_memory_bytes > gpu3.peak_memory_bytes
    # 4-bit weights of a 7B model: a few GB, not the 16 GB of bf16.
    bf16 = estimate(replace(config, model="Qwen/Qwen2.5-VL-7B-Instruct", precision="bf16"), clips, cuda=True)
    assert 3 * E.GIB < gpu7.peak_memory_bytes < bf16.peak_memory_bytes
    cpu3 = estimate(config, clips, cuda=False)
    assert cpu3.device == "cpu" and cpu3.precision == "fp32" and cpu3.rough
    assert cpu3.seconds > 10 * gpu3.seconds and cpu3.peak_memory_bytes > 3.8e9 * 4  # fp32 weights alone
    # Unknown model: sized as the 3B, and the note says so.
    unknown = estimate(replace(config, model="/no/such/model"), clips, cuda=True)
    assert "unknown" in unknown.note and unknown.rough


def test_model_sizes_from_folders_the_cache_or_the_catalog(tiny_ckpt, tmp_path):
    assert model_size(str(tiny_ckpt)).hidden == 64
    assert model_size("Qwen/Qwen2.5-VL-7B-Instruct").hidden == 3584  # offline: the published sizes
    assert model_size("demo").is_tiny
    assert model_size(str(tmp_path)) is None and model_size("") is None and model_size("someone/unknown") is None


def test_the_scan_reads_turns_and_frame_sizes_as_the_trainer_does(tmp_path):
    from model.train.data import load_clips
    from model.train.synthetic import make_dataset

    data = make_dataset(tmp_path / "clips", 3, seed=2, size=(64, 48), max_events=1, counters=False)
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    scan = scan_data([str(data), str(broken)], tmp_path / "clips")
    clips, _ = load_clips([str(data)], tmp_path / "clips")
    assert [c.turns for c in scan.clips] == [c.turns for c in clips] and scan.turns > 0
    assert {(c.width, c.height) for c in scan.clips} == {(64, 48)}
    assert any("broken.json" in issue for issue in scan.issues)


def test_durations_and_sizes_read_well():
    assert E.format_duration(42) == "42 s"
    assert E.format_duration(600) == "10 min"
    assert E.format_duration(3 * 3600 + 5 * 60) == "3 h 05 min"
    assert E.format_duration(5 * 86400) == "5.0 days"
    assert E.format_bytes(1.5 * E.GIB) == "1.5 GB" and E.format_bytes(50 * 1024**2) == "50 MB"


def test_the_plan_cuts_the_demos_clips_at_the_demos_window():
    """Training on the demo base cuts clips where Live's engine keeps the demo's context (one rule:
    ``catalog.window_turns``), whatever Max turns says."""
    from model.catalog import DEMO_MAX_TURNS

    turns = [100, 20]
    demo = plan_run(_config(holdout=0.0, max_turns=120, model="demo"), turns)
    assert sorted(demo.train_windows) == sorted([DEMO_MAX_TURNS] * 3 + [100 - 3 * DEMO_MAX_TURNS, 20])
    assert sorted(plan_run(_config(holdout=0.0, max_turns=120, model="/models/qwen"), turns).train_windows) == [20, 100]

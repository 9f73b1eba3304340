"""Defaults that scale with the data (issue 22): the batch from the data size and the process count,
the step budget, the held-out cap, the release recipe's settings, and the plan printed at start."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from model.train import data as D
from model.train.config import (
    AUTO_MIN_STEPS,
    ConfigError,
    TrainConfig,
    auto_accum,
    plan,
    total_steps,
    with_recipe,
)


@pytest.mark.parametrize(
    ("windows", "processes", "accum"),
    [
        (12, 1, 1),  # a toy set: one window a step, hundreds of steps
        (12, 8, 1),
        (1_799, 1, 1),  # under two steps' worth of 900: still batch 1
        (1_800, 1, 2),
        (100_000, 1, 111),  # 100K // 900
        (100_000, 8, 14),  # 111 / 8, rounded: batch 112
        (465_000, 8, 64),  # the release's 8 x 1 x 64 = 512
        (465_000, 1, 512),
        (10_000_000, 8, 64),  # never above 512
    ],
)
def test_accumulation_follows_the_data_size_and_process_count(windows, processes, accum):
    assert auto_accum(windows, processes) == accum
    p = plan(TrainConfig(), windows, processes)
    assert p.accum == accum and p.batch == processes * accum


def test_a_large_set_trains_one_epoch_a_small_one_at_least_the_minimum():
    release = plan(TrainConfig(), 465_000, 8)
    assert release.steps_per_epoch == 909 and release.total == 909  # ceil(465000 / 512), one epoch
    toy = plan(TrainConfig(), 12, 1)
    assert toy.steps_per_epoch == 12 and toy.total == AUTO_MIN_STEPS  # the rule measured on 12 clips
    # A large set with a large --accum: one epoch, not 800 steps (= 20 epochs here).
    big_accum = plan(TrainConfig(accum=64), 20_000, 8)
    assert big_accum.steps_per_epoch == 40 and big_accum.total == 40
    assert total_steps(TrainConfig(accum=64), 40) == AUTO_MIN_STEPS  # callers without the size: the old rule
    assert plan(TrainConfig(steps=7), 465_000, 8).total == 7
    assert plan(TrainConfig(epochs=2.5), 12, 1).total == 30


def test_the_plan_says_each_choice_and_why():
    lines = plan(TrainConfig(save_minutes=30), 465_000, 8).lines()
    assert lines[0].startswith("effective batch 512 = 8 processes x 1 window x accum 64 (automatic: 465000 windows")
    assert "909 optimiser steps" in lines[1] and "large set" in lines[1]
    assert "after 30 minutes of training" in lines[2]
    given = plan(TrainConfig(accum=3, save_every=5, save_minutes=0), 12, 2).lines()
    assert "accum 3 (--accum)" in given[0] and "small set" in given[1]
    assert "every 5 steps (--save-every)" in given[2] and "minutes" not in given[2]


def test_the_heldout_split_is_capped():
    assert D.heldout_count(10_000, 0.1, 1, 200) == 200
    assert D.heldout_count(100, 0.1, 1, 200) == 10
    assert D.heldout_count(12, 0.1) == 1 and D.heldout_count(12, 0.5, 1, 2) == 2
    clips = [SimpleNamespace(video=Path(f"v{i:04d}.mp4")) for i in range(3_000)]
    train, held = D.choose_heldout(clips, TrainConfig(holdout=0.1))  # the default cap: 200
    assert len(held) == 200 and len(train) == 2_800
    train, held = D.choose_heldout(clips, TrainConfig(holdout=0.1, max_heldout=50))
    assert len(held) == 50


def test_the_release_recipe_fills_in_what_is_not_given():
    release = with_recipe(TrainConfig(recipe="release"))
    assert (release.lr, release.weight_decay, release.beta2, release.epochs) == (1e-5, 0.1, 0.95, 1.0)
    mine = with_recipe(TrainConfig(recipe="release", lr=2e-5, weight_decay=0.0, steps=10))
    assert (mine.lr, mine.weight_decay, mine.epochs) == (2e-5, 0.0, None)  # --steps wins over the epoch
    lora = with_recipe(TrainConfig())
    assert (lora.lr, lora.weight_decay, lora.beta2, lora.epochs) == (None, 0.0, 0.999, None)
    good = {"data": ["x.json"], "model": "demo", "out": "o"}
    with pytest.raises(ConfigError, match="--recipe release .* cannot be 4bit"):
        TrainConfig(**good, recipe="release", precision="4bit").validate()
    with pytest.raises(ConfigError, match="--save-minutes"):
        TrainConfig(**good, save_minutes=-1).validate()
    TrainConfig(**good, recipe="release").validate()

"""The held-out split (issue 18 item 3): chosen by name or automatically (a share, at least a minimum),
one function for the trainer, the evaluation and the Training tab's preview; the plain-words warning
below 2 clips or 20%; and the early-stop rule the trainer applies to the held-out loss."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.train import data as D
from model.train.config import ConfigError, TrainConfig
from model.train.stopping import EarlyStop


def _old_rule(n_videos: int, holdout: float) -> int:
    """The rule before min_heldout, for the compatibility check."""
    n_hold = round(holdout * n_videos)
    if holdout > 0 and n_hold == 0 and n_videos >= 4:
        n_hold = 1
    return 0 if n_hold == 0 or n_videos < 2 else n_hold


@pytest.mark.parametrize(
    ("n", "holdout", "minimum", "expected"),
    [
        (0, 0.1, 1, 0),
        (1, 0.5, 2, 0),  # one video: nothing can be held out
        (3, 0.1, 1, 0),  # today's rule: one of four or more
        (4, 0.1, 1, 1),
        (14, 0.1, 1, 1),  # the run: one clip of 14
        (20, 0.1, 1, 2),
        (2, 0.5, 1, 1),
        (2, 0.9, 1, 1),  # never every video
        (6, 0.0, 2, 0),  # a share of 0 trains on all
        # The Training tab: at least 2 clips or 20%, as far as three videos are left to train on.
        (3, 0.2, 2, 1),
        (4, 0.2, 2, 1),
        (5, 0.2, 2, 2),
        (10, 0.2, 2, 2),
        (14, 0.2, 2, 3),
        (14, 0.1, 2, 2),
        (40, 0.2, 2, 8),
        (8, 0.1, 5, 5),
    ],
)
def test_heldout_count_rule_table(n, holdout, minimum, expected):
    assert D.heldout_count(n, holdout, minimum) == expected


def test_min_heldout_1_is_todays_rule():
    for n in range(0, 40):
        for holdout in (0.05, 0.1, 0.2, 0.3, 0.5):
            if round(holdout * n) < n:  # the old rule could hold out every video; the new never does
                assert D.heldout_count(n, holdout) == _old_rule(n, holdout), (n, holdout)


@pytest.mark.parametrize(
    ("held", "n", "words"),
    [
        (0, 5, "No clip is held out"),
        (1, 14, "Only 1 clip is held out: its scores move a lot with one clip; hold out at least 2 clips (or 20%)"),
        (2, 20, "Only 2 of 20 clips (10%) are held out"),
        (2, 10, None),
        (3, 14, None),
        (0, 0, None),
    ],
)
def test_heldout_warning(held, n, words):
    warning = D.heldout_warning(held, n)
    assert (warning is None) == (words is None)
    if words:
        assert words in warning


def _clips() -> list[D.Clip]:
    out = []
    for k, rel in enumerate(["clips/a.mp4", "clips/b.mp4", "more/c.mp4", "more/d.mp4", "more/e.mp4", "clips/a.mp4"]):
        out.append(D.Clip([], Path("/data") / rel, "f.json", k, Path(rel).name))
    return out


@pytest.mark.parametrize("name", ["more/c.mp4", "c.mp4", "/data/more/c.mp4", "/data/more/../more/c.mp4"])
def test_a_chosen_video_is_held_out_by_any_of_its_names(name):
    clips = _clips()
    train, held = D.split_by_video(clips, 0.1, chosen=[name])
    assert [c.index for c in held] == [2]
    assert [c.index for c in train] == [0, 1, 3, 4, 5]


def test_choosing_overrides_the_automatic_count_and_keeps_videos_whole():
    clips = _clips()
    train, held = D.split_by_video(clips, 0.5, seed=3, chosen=["a.mp4"], minimum=4)
    assert [c.index for c in held] == [0, 5]  # both samples of the video
    assert D.video_names(held) == ["a.mp4"]


def test_unknown_names_are_a_data_error_naming_them():
    with pytest.raises(D.DataError, match=r"'nope\.mp4', 'gone/x\.mp4'") as e:
        D.split_by_video(_clips(), 0.1, chosen=["c.mp4", "nope.mp4", "gone/x.mp4"])
    assert "not among the usable clips" in str(e.value)
    with pytest.raises(D.DataError, match="leave at least one to train on"):
        D.split_by_video(_clips(), 0.1, chosen=["a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4"])


def test_choose_heldout_reads_a_config():
    clips = _clips()
    cfg = TrainConfig(holdout=0.2, min_heldout=2, seed=7)
    assert D.choose_heldout(clips, cfg) == D.split_by_video(clips, 0.2, 7, minimum=2)
    assert len({c.video for c in D.choose_heldout(clips, cfg)[1]}) == 2  # 20% of 5 rounds to 1; at least 2
    cfg = TrainConfig(heldout=["d.mp4"])
    assert [c.index for c in D.choose_heldout(clips, cfg)[1]] == [3]

    class Preview:  # anything with the fields will do (the Training tab's preview)
        holdout, seed, heldout, min_heldout = 0.2, 7, [], 2

    assert D.choose_heldout(clips, Preview()) == D.choose_heldout(
        clips, TrainConfig(holdout=0.2, min_heldout=2, seed=7)
    )


def test_config_checks_the_new_settings():
    good = {"data": ["d.json"], "model": "demo", "out": "o"}
    TrainConfig(**good, early_stop=3).validate()
    with pytest.raises(ConfigError, match="--early-stop needs held-out clips"):
        TrainConfig(**good, early_stop=3, holdout=0.0).validate()
    TrainConfig(**good, early_stop=3, holdout=0.0, heldout=["a.mp4"]).validate()
    with pytest.raises(ConfigError, match="--min-heldout"):
        TrainConfig(**good, min_heldout=-1).validate()
    with pytest.raises(ConfigError, match="--early-stop must be"):
        TrainConfig(**good, early_stop=-2).validate()
    old = TrainConfig.from_dict({"holdout": 0.1})  # a train_config.json written before these settings
    assert old.heldout == [] and old.min_heldout == 1 and old.early_stop == 0


# ---------------------------------------------------------------------------------------------
# Early stop


def test_early_stop_after_patience_evaluations_without_a_new_lowest():
    losses = {10: 0.9, 20: 0.5, 30: 0.6, 40: 0.5, 50: 0.4, 60: 0.45, 70: 0.41, 80: 0.42}
    rule = EarlyStop(2)
    assert [step for step, loss in losses.items() if rule.update(step, loss)][0] == 40  # equal is not lower
    rule = EarlyStop(3)
    stops = [step for step, loss in losses.items() if rule.update(step, loss)]
    assert stops == [80]  # 0.4 at 50 reset the count
    assert (rule.best_step, rule.best_loss) == (50, 0.4)


def test_early_stop_off_and_missing_losses():
    rule = EarlyStop(0)
    assert not any(rule.update(s, 1.0 + s) for s in range(10))
    rule = EarlyStop(1)
    assert not rule.update(1, None) and not rule.update(2, 0.5) and rule.update(3, 0.7)


def test_early_stop_resumed_counts_the_evaluations_since_the_best():
    rule = EarlyStop.resumed(3, 0.5, best_step=20, step=40, eval_every=10)
    assert rule.since == 2 and rule.update(50, 0.6)  # the third evaluation without a new lowest
    assert EarlyStop.resumed(3, None, None, 40, 10) == EarlyStop(3)

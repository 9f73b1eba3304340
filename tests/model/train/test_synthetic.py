"""The synthetic shape clips (model/train/synthetic.py): the demo's training data."""

from __future__ import annotations

import random

from model.train.synthetic import BACKGROUNDS, background, random_events


def test_events_start_late_with_a_lead_and_never_straddle_a_training_window():
    """A shape's turns and its answer's turn sit in one training window: an answer whose shape was cut
    off into the previous window would teach the demo to invent."""
    rng = random.Random(0)
    window, starts = 32, []
    for _ in range(300):
        events = random_events(rng, max_events=8, lead=30, window=window, gap=12)
        starts.append(events[0].appear)
        for e in events:
            assert e.appear // window == e.leave // window, e
            assert 2 <= e.leave - e.appear <= 3
        assert all(a.leave < b.appear for a, b in zip(events, events[1:], strict=False))
    assert min(starts) == 1 and max(starts) > 25  # shapes late in a clip, not only in its first seconds


def test_the_defaults_draw_the_same_events_as_before():
    """Without lead, window or gap the draws are the earlier recipe's (the learning tests' data)."""
    rng, events = random.Random(5), []
    for _ in range(50):
        events += random_events(rng, max_events=3)
    rng = random.Random(5)
    for _ in range(50):  # the earlier rule, written out
        t, count = rng.randint(1, 2), rng.randint(1, 3)
        n = 0
        while n < count:
            length = rng.randint(2, 3)
            e, events = events[0], events[1:]
            assert (e.appear, e.leave) == (t, t + length) and e.shape == rng.choice(["ball", "square", "triangle"])
            t += length + rng.randint(1, 2)
            n += 1
    assert events == []


def test_every_backdrop_is_a_frame_of_its_size():
    for kind in BACKGROUNDS:
        frame = background(kind, 3, (80, 60))
        assert frame.shape == (60, 80, 3) and frame.dtype.name == "uint8", kind
    assert len({background(k, 3, (80, 60)).tobytes() for k in BACKGROUNDS}) == len(BACKGROUNDS)


def test_long_streams_carry_shapes_to_their_end(tmp_path):
    """The demo's long clips: shapes all the way past ``long_seconds`` (time labels far into a stream),
    none across a training window's edge, a readable clip as long as its annotation says."""
    import json

    from model.train.synthetic import make_dataset
    from model.video_probe import inspect_video

    out = make_dataset(tmp_path, 1, size=(64, 48), long_clips=2, long_seconds=120, long_gap=20, window=32)
    longs = [s for s in json.loads(out.read_text(encoding="utf-8")) if "long_" in s["video_path"]]
    assert len(longs) == 2
    for sample in longs:
        spans = [(float(r["st_time"]) - 1, float(r["end_time"])) for r in sample["response"]]
        assert spans[-1][1] > 120 - 20 - 3 and len(spans) >= 120 // 25, spans  # the next would start past 120 s
        assert all(0 < b[0] - a[1] <= 20 for a, b in zip(spans, spans[1:], strict=False)), spans
        assert all(a // 32 == b // 32 for a, b in spans), spans
        facts = inspect_video(tmp_path / sample["video_path"])
        assert facts.duration is not None and spans[-1][1] < facts.duration <= spans[-1][1] + 2.5, facts

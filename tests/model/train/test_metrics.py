"""Evaluation metrics (model/train/metrics.py) on small hand-made clips with hand-computed expectations."""

import json

import pytest

from model.protocol import RESPONSE, SILENCE, STANDBY, STATE_TOKENS
from model.train.metrics import (
    ClipOutcome,
    SecondLabel,
    compare_reports,
    evaluation_report,
    format_report,
    token_f1,
)

S, W = SecondLabel(SILENCE), SecondLabel(STANDBY)


def R(text: str = "") -> SecondLabel:
    return SecondLabel(RESPONSE, text)


def clip(labels, emitted, fps: float = 1.0, video: str = "v.mp4") -> ClipOutcome:
    return ClipOutcome(video=video, fps=fps, labels=list(labels), emitted=list(emitted))


def test_token_f1_normalises_case_and_punctuation():
    assert token_f1("The Red, ball!", "the red ball") == 1.0
    assert token_f1("", "") == 1.0
    assert token_f1("", "ball") == 0.0
    assert token_f1("ball", "") == 0.0
    assert token_f1("...", "") == 1.0  # only punctuation normalises to nothing
    assert token_f1("cat", "dog") == 0.0


def test_token_f1_partial_overlap():
    p, r = 2 / 3, 2 / 4
    assert token_f1("a red ball", "the red ball rolls") == pytest.approx(2 * p * r / (p + r))
    # Multiset overlap: a repeated predicted word counts only as often as in the reference.
    # "red red" vs "red red ball": overlap 2, p = 2/2, r = 2/3 (a set overlap would give 1).
    assert token_f1("red red", "red red ball") == pytest.approx(0.8)
    assert token_f1("red red", "red ball") == pytest.approx(0.5)


def test_perfect_prediction():
    labels = [S, W, R("a dog runs"), S, R("it stops")]
    report = evaluation_report([clip(labels, labels)])
    for state in STATE_TOKENS:
        assert report["states"][state]["precision"] == 1.0
        assert report["states"][state]["recall"] == 1.0
        assert report["states"][state]["f1"] == 1.0
    assert [report["states"][s]["support"] for s in (SILENCE, STANDBY, RESPONSE)] == [2, 1, 2]
    assert report["macro_f1"] == 1.0
    assert report["state_accuracy"] == 1.0
    assert report["timing_error_s"] == 0.0
    assert report["answer_f1"] == 1.0
    assert report["missed_responses"] == 0
    assert report["labelled_responses"] == report["emitted_responses"] == 2
    assert report["seconds"] == 5.0
    (entry,) = report["clips"]
    assert entry == {
        "video": "v.mp4",
        "seconds": 5.0,
        "state_accuracy": 1.0,
        "labelled_responses": 2,
        "emitted_responses": 2,
        "timing_error_s": 0.0,
        "answer_f1": 1.0,
        "instruction": None,
        "labelled_states": [SILENCE, STANDBY, RESPONSE, SILENCE, RESPONSE],
        "predicted_states": [SILENCE, STANDBY, RESPONSE, SILENCE, RESPONSE],
        "answers": [
            {"second": 2, "labelled": "a dog runs", "predicted": "a dog runs"},
            {"second": 4, "labelled": "it stops", "predicted": "it stops"},
        ],
    }


def test_response_one_second_late():
    labels = [S, R("a red ball"), W, S]
    emitted = [S, W, R("the red ball rolls"), S]
    report = evaluation_report([clip(labels, emitted)])
    assert report["timing_error_s"] == pytest.approx(1.0)
    assert report["answer_f1"] == pytest.approx(token_f1("a red ball", "the red ball rolls"))
    assert report["state_accuracy"] == pytest.approx(2 / 4)
    # Silence: 2 of 2 right; Standby and Response: the one emitted is wrong, the one labelled missed.
    assert report["states"][SILENCE] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert report["states"][STANDBY] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["states"][RESPONSE] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["macro_f1"] == pytest.approx(1 / 3)
    assert report["missed_responses"] == 0


def test_timing_is_in_seconds_at_two_fps():
    labels = [S, S, R("x"), S, S]
    emitted = [S, S, S, R("x"), S]
    report = evaluation_report([clip(labels, emitted, fps=2.0)])
    assert report["timing_error_s"] == pytest.approx(0.5)
    assert report["clips"][0]["timing_error_s"] == pytest.approx(0.5)
    assert report["seconds"] == pytest.approx(2.5)
    assert report["clips"][0]["seconds"] == pytest.approx(2.5)


def test_clip_without_emitted_response_is_missed():
    hit = clip([S, R("a cat")], [S, R("a cat")], video="hit.mp4")  # timing 0, answer 1
    late = clip([R("two dogs"), S, S], [S, S, R("two dogs")], video="late.mp4")  # timing 2, answer 1
    miss = clip([S, R("a bird"), R("it flies")], [S, S, W], video="miss.mp4")  # two missed
    report = evaluation_report([hit, late, miss])
    assert report["labelled_responses"] == 4
    assert report["emitted_responses"] == 2
    assert report["missed_responses"] == 2
    assert report["timing_error_s"] == pytest.approx((0 + 2) / 2)  # missed ones left out
    assert report["answer_f1"] == pytest.approx((1 + 1 + 0 + 0) / 4)  # missed ones score 0
    by_video = {c["video"]: c for c in report["clips"]}
    assert by_video["miss.mp4"]["timing_error_s"] is None
    assert by_video["miss.mp4"]["answer_f1"] == 0.0
    assert by_video["miss.mp4"]["emitted_responses"] == 0
    assert by_video["late.mp4"]["timing_error_s"] == pytest.approx(2.0)
    assert by_video["hit.mp4"]["timing_error_s"] == 0.0


def test_nearest_response_is_matched_within_the_clip_only():
    # Clip b's emitted Response is at the same turn index as clip a's label, but in another clip.
    a = clip([S, R("x"), S], [S, S, S], video="a")
    b = clip([S, S, S], [S, R("x"), S], video="b")
    report = evaluation_report([a, b])
    assert report["missed_responses"] == 1
    assert report["timing_error_s"] is None
    assert report["answer_f1"] == 0.0


def test_no_labelled_responses_gives_none():
    report = evaluation_report([clip([S, W], [S, R("spurious")])])
    assert report["timing_error_s"] is None
    assert report["answer_f1"] is None
    assert report["clips"][0]["answer_f1"] is None
    assert report["emitted_responses"] == 1
    assert report["missed_responses"] == 0


def test_tie_for_nearest_response_picks_the_earlier():
    labels = [S, S, R("the early answer"), S, S]
    emitted = [S, R("the early answer"), S, R("something else entirely"), S]
    report = evaluation_report([clip(labels, emitted)])
    assert report["timing_error_s"] == pytest.approx(1.0)
    assert report["answer_f1"] == pytest.approx(1.0)  # the later one would score 0
    # Mirror image: the earlier one is now the wrong text.
    emitted = [S, R("something else entirely"), S, R("the early answer"), S]
    assert evaluation_report([clip(labels, emitted)])["answer_f1"] == pytest.approx(0.0)


def test_nearest_beats_earlier():
    labels = [S, S, S, R("b"), S]
    emitted = [R("a"), S, S, S, R("b")]
    report = evaluation_report([clip(labels, emitted)])
    assert report["timing_error_s"] == pytest.approx(1.0)
    assert report["answer_f1"] == pytest.approx(1.0)


def test_macro_f1_only_over_present_classes():
    # No Standby in the labels; the model never emits one either.
    labels = [S, S, S, R("x")]
    emitted = [S, S, R("x"), R("x")]
    report = evaluation_report([clip(labels, emitted)])
    assert report["states"][STANDBY] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    silence_f1 = 2 * 1.0 * (2 / 3) / (1.0 + 2 / 3)  # p = 2/2, r = 2/3
    response_f1 = 2 * 0.5 * 1.0 / (0.5 + 1.0)  # p = 1/2, r = 1/1
    assert report["states"][SILENCE]["f1"] == pytest.approx(silence_f1)
    assert report["states"][RESPONSE]["f1"] == pytest.approx(response_f1)
    assert report["macro_f1"] == pytest.approx((silence_f1 + response_f1) / 2)
    assert report["state_accuracy"] == pytest.approx(3 / 4)


def test_precision_of_a_class_never_predicted_is_zero():
    labels = [S, W, W, S]
    emitted = [S, S, S, S]
    report = evaluation_report([clip(labels, emitted)])
    assert report["states"][STANDBY] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert report["states"][SILENCE]["precision"] == pytest.approx(0.5)
    assert report["states"][SILENCE]["recall"] == 1.0
    assert report["macro_f1"] == pytest.approx((2 * 0.5 / 1.5 + 0.0) / 2)


def test_states_are_pooled_over_clips():
    a = clip([S, S], [S, W], video="a")
    b = clip([W, W], [W, W], video="b")
    report = evaluation_report([a, b])
    assert report["states"][STANDBY]["precision"] == pytest.approx(2 / 3)
    assert report["states"][STANDBY]["recall"] == 1.0
    assert report["states"][SILENCE]["recall"] == pytest.approx(0.5)
    assert report["state_accuracy"] == pytest.approx(3 / 4)
    assert [c["state_accuracy"] for c in report["clips"]] == [0.5, 1.0]


def test_empty_report():
    report = evaluation_report([])
    assert report["macro_f1"] == 0.0
    assert report["state_accuracy"] == 0.0
    assert report["timing_error_s"] is None and report["answer_f1"] is None
    assert report["clips"] == [] and report["seconds"] == 0


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="v.mp4"):
        evaluation_report([clip([S, S, S], [S, S])])


def test_unknown_state_raises():
    with pytest.raises(ValueError, match="state"):
        evaluation_report([clip([S, SecondLabel("</Talk>")], [S, S])])


def test_report_is_json_serialisable():
    labels = [S, W, R("a red ball"), S]
    emitted = [S, S, W, R("the red ball")]
    report = evaluation_report([clip(labels, emitted), clip([S], [S], fps=2.0, video="b")])
    assert json.loads(json.dumps(report)) == report
    assert set(report) == {
        "states",
        "macro_f1",
        "state_accuracy",
        "timing_error_s",
        "answer_f1",
        "clips",
        "seconds",
        "labelled_responses",
        "emitted_responses",
        "missed_responses",
    }
    assert all(type(report[k]) is float for k in ("macro_f1", "state_accuracy", "timing_error_s", "answer_f1"))


def test_format_report_shows_the_numbers():
    labels = [S, S, S, R("x")]
    emitted = [S, S, R("x"), R("x")]
    miss = clip([R("gone")], [S], video="miss")
    text = format_report(evaluation_report([clip(labels, emitted), miss]))
    lines = text.splitlines()
    silence = next(line for line in lines if line.startswith(SILENCE))
    # Silence: p = 2/3 (the missed clip's emitted Silence is wrong), r = 2/3; Response: p = 1/2, r = 1/2.
    assert silence.split()[1:] == ["0.6667", "0.6667", "0.6667", "3"]
    response = next(line for line in lines if line.startswith(RESPONSE))
    assert response.split()[1:] == ["0.5000", "0.5000", "0.5000", "2"]
    assert next(line for line in lines if line.startswith("missed responses")).split()[-1] == "1"
    assert next(line for line in lines if line.startswith("timing error")).split()[-1] == "0.0000"
    assert next(line for line in lines if line.startswith("answer F1")).split()[-1] == "0.5000"
    assert next(line for line in lines if line.startswith("state accuracy")).split()[-1] == "0.6000"


def test_format_report_shows_none_as_na():
    text = format_report(evaluation_report([clip([S], [S])]))
    assert next(line for line in text.splitlines() if line.startswith("timing error")).split()[-1] == "n/a"


def test_compare_reports_side_by_side():
    labels = [S, R("a red ball"), S]
    before = evaluation_report([clip(labels, [S, S, S])])
    after = evaluation_report([clip(labels, [S, R("the red ball"), S])])
    text = compare_reports(before, after, names=("old", "new"))
    lines = text.splitlines()
    assert "old" in lines[0] and "new" in lines[0]
    response = next(line for line in lines if line.startswith(RESPONSE)).split()
    assert response[1:] == ["0.0000", "0.0000", "0.0000", "1.0000", "1.0000", "1.0000", "1"]
    missed = next(line for line in lines if line.startswith("missed responses")).split()
    assert missed[-3:] == ["1", "0", "-1"]
    timing = next(line for line in lines if line.startswith("timing error")).split()
    assert timing[-3:] == ["n/a", "0.0000", "n/a"]
    answer = next(line for line in lines if line.startswith("answer F1")).split()
    assert answer[-3:] == ["0.0000", "0.6667", "+0.6667"]  # 2 of 3 tokens both ways
    # One clip with one answer: too few to trust, said in plain words; nothing got worse.
    assert [line for line in lines if line.startswith("caution:")] == [
        "caution: only 1 clip and 1 labelled answer were scored: one clip more or less can swing these figures. "
        "Hold out at least 2 clips (or 20%) to trust them."
    ]
    worse = compare_reports(after, before, names=("base", "adapter"))
    assert "caution: the adapter scored lower than the base on macro-F1" in worse
    assert "caution: the adapter scored lower than the base on answer F1 (0.67 -> 0.00)" in worse


# ---------------------------------------------------------------------------------------------
# Per-clip detail: the strips and the answers side by side (issue 18 item 3)


def test_clip_entries_carry_the_states_answers_and_instruction():
    labels = [S, W, R("a red ball"), S, S, R("it stops")]
    emitted = [S, R("a ball"), S, S, W, R("it stops")]
    outcome = ClipOutcome("v.mp4", 2.0, labels, emitted, instruction="Narrate.")
    (entry,) = evaluation_report([outcome])["clips"]
    assert entry["instruction"] == "Narrate."
    assert entry["labelled_states"] == [t.state for t in labels]
    assert entry["predicted_states"] == [t.state for t in emitted]
    # Every turn where either side responded, in time order (seconds at 2 turns a second).
    assert entry["answers"] == [
        {"second": 0.5, "labelled": None, "predicted": "a ball"},
        {"second": 1.0, "labelled": "a red ball", "predicted": None},
        {"second": 2.5, "labelled": "it stops", "predicted": "it stops"},
    ]
    for answer in entry["answers"]:  # consistent with the strips
        turn = round(answer["second"] * 2)
        assert (answer["labelled"] is not None) == (entry["labelled_states"][turn] == RESPONSE)
        assert (answer["predicted"] is not None) == (entry["predicted_states"][turn] == RESPONSE)


def test_format_clip_detail_draws_the_strips_one_above_the_other():
    from model.train.metrics import format_clip_detail

    labels = [S] * 3 + [W, W, R("A red box slides across the frame.")] + [S] * 64
    emitted = [S] * 4 + [R("A red box.")] + [S] * 64 + [R("Late.")]
    (entry,) = evaluation_report([ClipOutcome("box.mp4", 1.0, labels, emitted, "Find all events.")])["clips"]
    text = format_clip_detail(entry)
    lines = text.splitlines()
    assert lines[0] == "box.mp4 (70 s), instruction: \u201cFind all events.\u201d"
    labelled = [line for line in lines if line.lstrip().startswith("labelled ")]
    predicted = [line for line in lines if line.lstrip().startswith("predicted ")]
    assert len(labelled) == len(predicted) == 2  # 70 seconds: wrapped at 60
    assert labelled[0].split()[1] == "...--!" + "." * 54 and predicted[0].split()[1] == "....!" + "." * 55
    assert labelled[1].split()[1] == "." * 10 and predicted[1].split()[1] == "." * 9 + "!"
    # The ruler marks seconds over the strip's columns; the strips line up under it.
    ruler = lines[lines.index(labelled[0]) - 1]
    column = labelled[0].index("...--!")
    assert (
        ruler[column] == "0" and ruler[column + 10 : column + 12] == "10" and ruler[column + 50 : column + 52] == "50"
    )
    assert lines[lines.index(labelled[1]) - 1][column : column + 2] == "60"
    answers = lines[lines.index("  answers:") + 1 :]
    assert answers[0].split() == ["second", "labelled", "predicted"]
    assert answers[1].split() == ["4", "(standby)", "A", "red", "box."]
    assert answers[2].split()[:2] == ["5", "A"] and answers[2].rstrip().endswith("(silence)")
    assert answers[3].split() == ["69", "(silence)", "Late."]


def test_format_clip_detail_shows_several_models_under_their_names():
    from model.train.metrics import format_clip_detail

    labels = [S, R("a ball"), S]
    base = evaluation_report([clip(labels, [S, S, S])])["clips"][0]
    adapter = evaluation_report([clip(labels, [S, R("a ball"), S])])["clips"][0]
    text = format_clip_detail(adapter, {"base": base, "adapter": adapter})
    rows = {line.split()[0]: line.split()[1] for line in text.splitlines() if line.startswith("  ") and
            line.split()[0] in ("labelled", "base", "adapter")}  # fmt: skip
    assert rows == {"labelled": ".!.", "base": "...", "adapter": ".!."}
    assert ["1", "a", "ball", "(silence)", "a", "ball"] in [line.split() for line in text.splitlines()]

"""OVO-Bench runs see the history their protocol promises (issue 19, items 3 and 4): the release's
sliding window of 121 turns (or the whole stream with --max-turns all) at a query 279 s into a
5-minute video, skipping the dropped turns without changing a result, answers with their turn and
delay under a per-task time limit, a query past the end of its video as a per-query error that
--resume retries, a bad annotation file refused before torch is imported, and the scorer's total
and list responses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import write_video
from ovo_testdata import ovo_entries, write_ovo

from app.benchmark.ovo_data import parse_answer_limits, queries_for
from app.benchmark.ovo_run import PassStats, VideoFrames, plan_asks, run_asks
from app.benchmark.ovo_score import ScoreError, format_scores, score_results
from app.benchmark.ovo_store import outside
from app.cli import main as cli_main
from model.engine import EngineOptions, StreamEngine

REPO = Path(__file__).resolve().parents[3]
OPTS = ["A", "B", "C", "D"]


def _args(anno, videos, ckpt, out, *extra) -> list[str]:
    return ["benchmark", "ovo", "--anno", str(anno), "--videos", str(videos), "--model", str(ckpt), "--device", "cpu",
            "--out", str(out), "--max-answer-tokens", "2", *extra]  # fmt: skip


def _epm(i: int, video: str, t: float) -> dict:
    return {"id": i, "task": "EPM", "video": video, "realtime": t, "question": "What?", "options": OPTS, "gt": 0,
            "answer": "A"}  # fmt: skip


@pytest.fixture(scope="module")
def five_minutes(tmp_path_factory):
    """One 300 s video (1 fps, tiny frames) with a question at 279 s."""
    root = tmp_path_factory.mktemp("five")
    anno, videos, _ = write_ovo(root, [_epm(0, "long/five.mp4", 279)], seconds=1)
    write_video(videos / "long/five.mp4", 300, 1, size=(16, 16))
    return anno, videos


@pytest.mark.parametrize(
    ("extra", "context"),
    [
        # The release's window: 121 turns, sliding one at a time, the question back on the first kept turn.
        ([], {"turns": 121, "from_s": 158.0, "to_s": 279.0, "seconds": 121.0, "question_on_first_turn": True}),
        # OVO-Bench's offline cut with no window: the whole stream up to ceil(279 s).
        (["--max-turns", "all"], {"turns": 279, "from_s": 0.0, "to_s": 279.0, "seconds": 279.0,
                                  "question_on_first_turn": False}),
        # Streaming: the question enters the turn covering 279 s; with no time to answer in, the query's
        # window is that turn's, the question carried on the first kept turn as the release does.
        (["--protocol", "streaming", "--threshold", "1", "--answer-limit", "0"],
         {"turns": 121, "from_s": 159.0, "to_s": 280.0, "seconds": 121.0, "question_on_first_turn": True}),
    ],
)  # fmt: skip
def test_a_query_at_279_s_sees_the_history_its_protocol_promises(five_minutes, tiny_ckpt, tmp_path, extra, context):
    anno, videos = five_minutes
    out = tmp_path / "res" / "RESULTS.json"
    assert cli_main(_args(anno, videos, tiny_ckpt, out, *extra)) == 0
    run = json.loads(outside(out, ".run.json").read_text())
    assert run["queries"]["EPM/0"]["context"] == context
    assert not run["errors"]
    if not extra:  # the turns a sliding window has dropped by then are never stepped
        assert run["info"]["runs"][-1]["engine_steps"] == 122 and run["info"]["runs"][-1]["restarts"] == 1


def test_the_old_chunked_drop_would_fail_the_check(five_minutes, tiny_ckpt, tmp_path):
    """--keep-turns 60 is the engine's chunked policy: at 279 s the window holds far less than 121 s."""
    anno, videos = five_minutes
    out = tmp_path / "res" / "RESULTS.json"
    assert cli_main(_args(anno, videos, tiny_ckpt, out, "--max-turns", "120", "--keep-turns", "60")) == 0
    context = json.loads(outside(out, ".run.json").read_text())["queries"]["EPM/0"]["context"]
    assert (context["turns"], context["from_s"]) == (96, 183.0)  # drops at 120, 181 and 242 s: 96 s seen


@pytest.fixture(scope="module")
def spaced(tmp_path_factory):
    """A 16 s video with questions spread over it, so a 3-turn window drops turns between them."""
    root = tmp_path_factory.mktemp("spaced")
    entries = [_epm(0, "v.mp4", 2.5), _epm(1, "v.mp4", 9), _epm(2, "v.mp4", 10), _epm(3, "v.mp4", 15.2)]
    rec = ovo_entries()[4]
    rec["video"] = "v.mp4"
    anno, videos, _ = write_ovo(root, [*entries, rec], seconds=16)
    return videos, [q for i, e in enumerate(json.loads(anno.read_text())) for q in queries_for(e, i)]


@pytest.mark.parametrize(("protocol", "shared"), [("offline", True), ("streaming", True), ("streaming", False)])
def test_skipping_the_dropped_turns_changes_no_result(tiny_loaded, spaced, protocol, shared):
    videos, queries = spaced

    def run(skip):
        engine = StreamEngine(tiny_loaded, EngineOptions(task="question", max_turns=3, keep_turns=3,
                                                         max_answer_tokens=3, threshold=0.17))  # fmt: skip
        frames = VideoFrames(videos / "v.mp4", 1.0)
        asks, _ = plan_asks(protocol, queries, frames, 1.0)
        stats = PassStats()
        got = [(a.turn, a.prompt, answers) for a, answers in run_asks(engine, frames, asks, 1.0, shared, stats, skip)]
        return got, stats

    skipped, fast = run(True)
    stepped, slow = run(False)
    assert skipped == stepped  # answers, turns and windows, with ==
    assert fast.restarts > 0 and fast.steps < slow.steps
    assert any(c.context["question_on_first_turn"] for _, _, answers in stepped for c in answers)


def test_streaming_answers_carry_turn_and_delay_within_the_tasks_limit(tiny_ckpt, tmp_path):
    entries = [_epm(0, "v.mp4", 2.5), _epm(1, "v.mp4", 3.0)]
    anno, videos, _ = write_ovo(tmp_path, entries, seconds=12)
    out = tmp_path / "eager" / "RESULTS.json"
    assert cli_main(_args(anno, videos, tiny_ckpt, out, "--protocol", "streaming", "--threshold", "0")) == 0
    q = json.loads(outside(out, ".run.json").read_text())["queries"]["EPM/0"]
    assert (q["turn"], q["answered_at_s"], q["delay_s"]) == (2, 3.0, 0.5)  # answered on the question's turn
    # Never answering: the limit (2 s after the question's turn) ends the query after 3 turns, not at 12 s.
    out = tmp_path / "mute" / "RESULTS.json"
    extra = ["--protocol", "streaming", "--threshold", "1", "--answer-limit", "EPM=2"]
    assert cli_main(_args(anno, videos, tiny_ckpt, out, *extra)) == 0
    run = json.loads(outside(out, ".run.json").read_text())
    assert run["settings"]["answer_limit_s"]["EPM"] == 2 and run["settings"]["answer_limit_s"]["REC"] is None
    q = run["queries"]["EPM/0"]
    assert run["responses"]["EPM/0"] is None
    assert (q["turn"], q["delay_s"], q["context"]["to_s"]) == (None, None, 5.0)  # turns 2, 3, 4
    assert run["info"]["runs"][-1]["engine_steps"] == 2 + 3 + 1 + 3  # to turn 2, an ask, turn 2, the other ask
    assert parse_answer_limits("30,backward=end,REC=5") == {**dict.fromkeys(
        ["OCR", "ACR", "ATR", "STU", "FPD", "OJR", "SSR", "CRR"], 30.0), "EPM": None, "ASI": None, "HLD": None,
        "REC": 5.0}  # fmt: skip
    assert cli_main(_args(anno, videos, tiny_ckpt, tmp_path / "x" / "r.json", "--answer-limit", "EPM=soon")) == 2


def test_a_query_past_the_end_of_its_video_is_a_per_query_error_retried_by_resume(tiny_ckpt, tmp_path, capsys):
    entries = [_epm(0, "v.mp4", 3), _epm(1, "v.mp4", 40)]
    anno, videos, _ = write_ovo(tmp_path, entries, seconds=8)
    out = tmp_path / "res" / "RESULTS.json"
    assert cli_main(_args(anno, videos, tiny_ckpt, out)) == 0
    err = capsys.readouterr().err
    assert "the video ends at 8 s (8 sampled turns at 1 fps), before the query's time 40 s" in err
    run = json.loads(outside(out, ".run.json").read_text())
    assert set(run["errors"]) == {"EPM/1"} and run["responses"]["EPM/1"] is None
    assert isinstance(run["responses"]["EPM/0"], str)
    write_video(videos / "v.mp4", 45 * 4, 4)  # the right video, in its place
    assert cli_main(_args(anno, videos, tiny_ckpt, out, "--resume")) == 0
    assert "1 queries on 1 videos to run; 1 finished before" in capsys.readouterr().err
    run = json.loads(outside(out, ".run.json").read_text())
    assert not run["errors"] and run["queries"]["EPM/1"]["context"]["to_s"] == 40.0


def test_a_bad_annotation_file_is_reported_before_torch_loads(tmp_path):
    entries = ovo_entries()
    entries[0]["gt"] = 9
    anno = tmp_path / "ovo.json"
    anno.write_text(json.dumps(entries))
    (tmp_path / "videos").mkdir()
    code = (
        "import sys; from app.cli import main; "
        f"rc = main({_args(anno, tmp_path / 'videos', 'demo', tmp_path / 'r' / 'r.json')!r}); "
        "print('torch loaded' if 'torch' in sys.modules else 'no torch', rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "'gt' must be the index of the right option" in done.stderr
    assert done.stdout.split() == ["no", "torch", "2"]


def _br(task, i, response, gt="B"):
    return {"id": i, "video": "v.mp4", "task": task, "question": "q", "response": response, "ground_truth": gt}


def test_total_only_with_all_three_categories_and_list_responses_by_name(tmp_path, capsys):
    rec = {
        "id": 7,
        "task": "REC",
        "video": "v.mp4",
        "activity": "x",
        "test_info": [
            {"realtime": 1, "count": 3, "response": ["3"]},
            {"realtime": 2, "count": 4, "response": ["There are 3"]},
        ],
    }
    partial = {"backward": [_br("EPM", 0, "B")], "realtime": [], "forward": [rec]}  # fmt: skip
    report = score_results(partial)
    assert report["total"] is None and report["task_mean"] is None
    assert report["tasks"] == {"EPM": 100.0, "REC": 50.0} and report["list_responses"] == ["REC/7/0", "REC/7/1"]
    text = format_scores(report)
    assert "needs all three categories; no Real-time items" in text and "Mean of the tasks" not in text
    assert "2 responses were lists of strings" in text and "REC/7/0, REC/7/1" in text
    full = {**partial, "realtime": [_br("OCR", 1, ["B"]), _br("OCR", 2, ["The answer is B"])]}  # official: `in` a list
    report = score_results(full)
    assert report["tasks"]["OCR"] == 50.0 and report["total"] == pytest.approx((100 + 50 + 50) / 3)
    with pytest.raises(ScoreError, match=r"REC/7 test_info\[0\]: the response must be a string"):
        score_results({**full, "forward": [{**rec, "test_info": [{"realtime": 1, "count": 3, "response": [3]}]}]})
    path = tmp_path / "qwen" / "theirs.json"
    path.parent.mkdir()
    path.write_text(json.dumps({**full, "backward": [_br("EPM", 0, {"text": "B"})]}))
    assert cli_main(["benchmark", "ovo-score", str(path)]) == 2
    assert "EPM/0: the response must be a string, null or a list of strings" in capsys.readouterr().err

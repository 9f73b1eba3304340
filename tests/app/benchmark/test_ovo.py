"""OVO-Bench runner and scorer: the results file in the benchmark's own layout, the official scoring
rules against an independent computation, --resume, per-query errors, bad annotations, and the
shared pass (engine snapshots) against re-running every query from the start of its video.

The tiny random checkpoint answers gibberish; what is checked is the plumbing and the rules."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import write_video
from ovo_testdata import VIDEO_FPS, ovo_entries, write_ovo

from app.benchmark import ovo_run
from app.benchmark.ovo_data import build_prompt, load_annotations, queries_for, select
from app.benchmark.ovo_run import Answer, Ask, VideoFrames, plan_asks, responses_of, run_asks
from app.benchmark.ovo_score import PAPER_ROWS, score_results
from app.benchmark.ovo_store import outside
from app.cli import main as cli_main
from model.engine import EngineOptions, StreamEngine

BR_FIELDS = {"id", "video", "task", "question", "response", "ground_truth"}


def _args(anno, videos, ckpt, out, *extra) -> list[str]:
    return ["benchmark", "ovo", "--anno", str(anno), "--videos", str(videos), "--model", str(ckpt), "--device", "cpu",
            "--out", str(out), *extra]  # fmt: skip


def _run_file(out: Path) -> dict:
    """The run file of --out, which lives beside the results folder, not in it."""
    return json.loads(outside(out, ".run.json").read_text())


def _responses(results: dict) -> dict:
    """key -> response over a results file, forward probes included."""
    out = {}
    for cat in ("backward", "realtime"):
        out.update({f"{r['task']}/{r['id']}": r["response"] for r in results[cat]})
    for e in results["forward"]:
        out.update({f"{e['task']}/{e['id']}/{j}": p["response"] for j, p in enumerate(e["test_info"])})
    return out


# ---------------------------------------------------------------------------------------------
# The results file


def test_results_file_has_the_official_layout_and_is_scored(ovo_set, tiny_ckpt, tmp_path, capsys):
    anno, videos, entries = ovo_set
    out = tmp_path / "res" / "RESULTS.json"
    assert cli_main(_args(anno, videos, tiny_ckpt, out)) == 0
    captured = capsys.readouterr()
    results = json.loads(out.read_text())
    assert list(results) == ["backward", "realtime", "forward"]
    assert [r["task"] for r in results["backward"]] == ["EPM", "ASI"]
    assert [r["task"] for r in results["realtime"]] == ["OCR", "STU"]
    by_id = {e["id"]: e for e in entries}
    for item in results["backward"] + results["realtime"]:
        assert set(item) == BR_FIELDS
        entry = by_id[item["id"]]
        assert (item["video"], item["question"]) == (entry["video"], entry["question"])
        assert item["ground_truth"] == "ABCD"[entry["gt"]]
        assert isinstance(item["response"], str)  # offline: an answer is demanded on the last second
    # Forward items are the annotation entries themselves, each probe given a response.
    assert [e["task"] for e in results["forward"]] == ["REC", "SSR", "CRR"]
    for item in results["forward"]:
        entry = by_id[item["id"]]
        stripped = copy.deepcopy(item)
        for probe in stripped["test_info"]:
            assert isinstance(probe.pop("response"), str)
        assert stripped == entry
    # The results folder holds results files only, as the official score.py reads every file in it;
    # the scores and the run file are beside the folder.
    assert [p.name for p in (tmp_path / "res").iterdir()] == ["RESULTS.json"]
    assert sorted(p.name for p in tmp_path.glob("res.*")) == ["res.RESULTS.run.json", "res.RESULTS.scores.json"]
    # Scored with the official rules, compared with the paper's rows.
    scores = json.loads((tmp_path / "res.RESULTS.scores.json").read_text())
    assert scores == score_results(results)
    assert set(scores["tasks"]) == {"EPM", "ASI", "OCR", "STU", "REC", "SSR", "CRR"}
    assert scores["counts"]["REC"][1] == 3 and scores["counts"]["SSR"][1] == 3 and scores["counts"]["CRR"][1] == 2
    for name, row in PAPER_ROWS:
        assert name in captured.out and f"{row['total']:.2f}" in captured.out
    assert "Only 7 of the 12 tasks were scored" in captured.out
    # Progress: one line per query with the ETA.
    lines = [line for line in captured.err.splitlines() if re.match(r"\[\d+/12\] ", line)]
    assert len(lines) == 12 and all(re.search(r"ETA \d+:\d\d:\d\d$", line) for line in lines)
    run = _run_file(out)
    assert run["settings"]["protocol"] == "offline" and run["info"]["runs"][-1]["status"] == "done"
    assert run["settings"]["max_turns"] == run["settings"]["keep_turns"] == 121  # the release's sliding window
    assert len(run["seconds"]) == 12 and not run["errors"]
    # Offline: the answer is given on the turn that ends at ceil(realtime); the query saw the stream to there.
    epm = run["queries"]["EPM/0"]
    assert (epm["time_s"], epm["turn"], epm["answered_at_s"], epm["delay_s"]) == (5.5, 5, 6.0, 0.5)
    assert epm["context"] == {"turns": 6, "from_s": 0.0, "to_s": 6.0, "seconds": 6.0, "question_on_first_turn": False}


def test_prompts_are_the_benchmarks_templates():
    entries = ovo_entries()
    epm = build_prompt(entries[0])
    assert epm.startswith("\nQuestion: What did I pick up?\nOptions:\n")
    assert "\nA. a red ball; B. a blue square; C. a green triangle; D. nothing;\n\nRespond only with the letter" in epm
    assert "Now, answer the following question: How many times did they wave their hand?\n" in build_prompt(
        entries[4], 0
    )
    assert "procedures: \npull\nYour task" in build_prompt(entries[5], 2)
    assert "end of the video.\nWhat colour is the cup?\nDecide" in build_prompt(entries[6], 1)
    keys = [q.key for i in select(entries, ["REC", "EPM"], 1) for q in queries_for(entries[i], i)]
    assert keys == ["EPM/0", "REC/4/0", "REC/4/1", "REC/4/2"]


def test_builtin_scorer_is_the_official_rules(tmp_path, capsys):
    """Hand-made responses against an independent computation of the rules in OVO_BENCH.md."""

    def br(task, i, response, gt):
        return {"id": i, "video": "v.mp4", "task": task, "question": "q", "response": response, "ground_truth": gt}

    results = {
        "backward": [
            br("EPM", 0, "B", "B"),  # right letter
            br("EPM", 1, "The answer is B.", "B"),  # the letter anywhere in the text
            br("EPM", 2, "C", "B"),  # wrong letter
            br("EPM", 3, None, "A"),  # missing response
            br("EPM", 4, "b", "B"),  # case-sensitive
            br("HLD", 5, "A. Apple", "A"),
        ],
        "realtime": [br("OCR", 6, "D;", "D"), br("OCR", 7, "", "A"), br("FPD", 8, None, "C")],
        "forward": [
            {"id": 9, "task": "REC", "video": "v.mp4", "activity": "x", "test_info": [
                {"realtime": 1, "count": 2, "response": "2"},
                {"realtime": 2, "count": 2, "response": "There are 2."},
                {"realtime": 3, "count": 12, "response": "1 and 2"},  # digits concatenated: "12"
                {"realtime": 4, "count": 3, "response": "three"},
                {"realtime": 5, "count": 0, "response": None},
                {"realtime": 6, "count": 1, "response": "10"}]},
            {"id": 10, "task": "SSR", "video": "v.mp4", "test_info": [
                {"realtime": 1, "step": "s", "type": 1, "response": "Y"},
                {"realtime": 2, "step": "s", "type": 0, "response": "N"},
                {"realtime": 3, "step": "s", "type": 1, "response": "N"},
                {"realtime": 4, "step": "s", "type": 0, "response": "No."},
                {"realtime": 5, "step": "s", "type": 1, "response": "yes"},
                {"realtime": 6, "step": "s", "type": 0, "response": None}]},
            {"id": 11, "task": "CRR", "video": "v.mp4", "question": "q", "test_info": [
                {"realtime": 1, "type": 1, "response": "Yes"},
                {"realtime": 2, "type": 0, "response": "Not yet"},  # "No" occurs in "Not yet"
                {"realtime": 3, "type": 1, "response": "Y."},
                {"realtime": 4, "type": 0, "response": "Y"}]},
        ],
    }  # fmt: skip
    expected_items = {
        "EPM": [1, 1, 0, 0, 0],
        "HLD": [1],
        "OCR": [1, 0],
        "FPD": [0],
        "REC": [1, 1, 1, 0, 0, 0],
        "SSR": [1, 1, 0, 1, 0, 0],
        "CRR": [1, 1, 0, 0],
    }
    assert _independent_item_scores(results) == expected_items

    report = score_results(results)
    tasks = {t: 100 * sum(v) / len(v) for t, v in expected_items.items()}
    assert report["tasks"] == pytest.approx(tasks)
    assert report["counts"] == {t: [sum(v), len(v)] for t, v in expected_items.items()}
    cats = {"backward": [tasks["EPM"], tasks["HLD"]], "realtime": [tasks["OCR"], tasks["FPD"]],
            "forward": [tasks["REC"], tasks["SSR"], tasks["CRR"]]}  # fmt: skip
    for cat, accs in cats.items():
        assert report[cat] == pytest.approx(sum(accs) / len(accs))
    assert report["total"] == pytest.approx(sum(report[c] for c in cats) / 3)
    assert report["task_mean"] == pytest.approx(sum(tasks.values()) / len(tasks))
    assert report["backward"] == pytest.approx((40 + 100) / 2)  # by hand: EPM 2/5, HLD 1/1

    # The same scorer on the command line, for any results file in the benchmark's layout.
    path = tmp_path / "mine" / "theirs.json"
    path.parent.mkdir()
    path.write_text(json.dumps(results))
    assert cli_main(["benchmark", "ovo-score", str(path)]) == 0
    assert json.loads((tmp_path / "mine.theirs.scores.json").read_text()) == report
    out = capsys.readouterr().out
    assert "EPM" in out and f"{report['total']:.2f}" in out


def _independent_item_scores(results: dict) -> dict[str, list[int]]:
    """The rules of OVO_BENCH.md, written out separately from app.benchmark.ovo_score."""
    out: dict[str, list[int]] = {}
    for section in ("backward", "realtime"):
        for item in results[section]:
            r = item["response"]
            out.setdefault(item["task"], []).append(1 if r is not None and r.find(item["ground_truth"]) >= 0 else 0)
    for entry in results["forward"]:
        for probe in entry["test_info"]:
            r = probe["response"]
            if entry["task"] == "REC":
                ok = r is not None and "".join(c for c in r if c.isdigit()) == str(probe["count"])
            else:
                exact = {0: "N", 1: "Y"}[probe["type"]]
                word = {0: "No", 1: "Yes"}[probe["type"]]
                ok = r is not None and (r == exact or word in r)
            out.setdefault(entry["task"], []).append(int(ok))
    return out


# ---------------------------------------------------------------------------------------------
# Resume, errors, bad input


def test_resume_skips_finished_queries(ovo_set, tiny_ckpt, tmp_path, monkeypatch, capsys):
    anno, videos, _ = ovo_set
    full = tmp_path / "full.json"
    assert cli_main(_args(anno, videos, tiny_ckpt, full)) == 0
    calls = {"steps": 0, "asks": []}
    real_step, real_ask = StreamEngine.step, StreamEngine.ask

    def killed_step(self, *a, **k):  # the process dies in the middle of a query
        calls["steps"] += 1
        if calls["steps"] == 14:
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    out = tmp_path / "res" / "RESULTS.json"
    monkeypatch.setattr(StreamEngine, "step", killed_step)
    assert cli_main(_args(anno, videos, tiny_ckpt, out)) == 130
    run = _run_file(out)
    finished = set(run["responses"])
    assert 0 < len(finished) < 12
    assert set(_responses(json.loads(out.read_text()))) <= finished  # complete items only

    monkeypatch.setattr(StreamEngine, "step", real_step)
    monkeypatch.setattr(StreamEngine, "ask", lambda self, text, t=None, tag=None: (
        calls["asks"].append(text), real_ask(self, text, t, tag))[1])  # fmt: skip
    capsys.readouterr()
    assert cli_main(_args(anno, videos, tiny_ckpt, out, "--resume")) == 0
    err = capsys.readouterr().err
    assert f"{12 - len(finished)} queries on" in err and f"{len(finished)} finished before, skipped" in err
    assert len(calls["asks"]) == 12 - len(finished)  # only the unfinished queries were asked
    assert _responses(json.loads(out.read_text())) == _responses(json.loads(full.read_text()))
    assert [r["status"] for r in _run_file(out)["info"]["runs"]] == [
        "interrupted",
        "done",
    ]

    # A finished run is not overwritten by accident, and a resume must keep the settings.
    assert cli_main(_args(anno, videos, tiny_ckpt, out)) == 2
    assert "exists: add --resume" in capsys.readouterr().err
    assert cli_main(_args(anno, videos, tiny_ckpt, out, "--resume", "--protocol", "streaming")) == 2
    assert "protocol: 'offline' then, 'streaming' now" in capsys.readouterr().err


def test_missing_and_unreadable_videos_get_null_responses(tmp_path, tiny_ckpt, capsys):
    entries = ovo_entries()[:3] + ovo_entries()[5:6]
    entries[0]["video"] = "Ego4D/clips/missing.mp4"
    entries[3]["video"] = "COIN/broken.mp4"  # the SSR entry: three probes
    anno, videos, _ = write_ovo(tmp_path, [e for e in entries if "missing" not in e["video"]])
    anno.write_text(json.dumps(entries))
    (videos / "COIN" / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    out = tmp_path / "res" / "r.json"
    assert cli_main(_args(anno, videos, tiny_ckpt, out)) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and str(videos / "Ego4D/clips/missing.mp4") in err
    assert str(videos / "COIN/broken.mp4") in err and "3 queries get a null response" in err
    got = _responses(json.loads(out.read_text()))
    assert got["EPM/0"] is None and got["SSR/5/0"] is None and got["SSR/5/2"] is None
    assert isinstance(got["ASI/1"], str) and isinstance(got["OCR/2"], str)  # the run went on
    run = _run_file(out)
    assert set(run["errors"]) == {"EPM/0", "SSR/5/0", "SSR/5/1", "SSR/5/2"}
    assert "failed and scored 0" in err

    # Put the videos in place: --resume runs the failed queries again, and only those.
    write_video(videos / "Ego4D/clips/missing.mp4", 8 * VIDEO_FPS, VIDEO_FPS)
    write_video(videos / "COIN/broken.mp4", 8 * VIDEO_FPS, VIDEO_FPS)
    assert cli_main(_args(anno, videos, tiny_ckpt, out, "--resume")) == 0
    assert "4 queries on 2 videos to run; 2 finished before" in capsys.readouterr().err
    again = _responses(json.loads(out.read_text()))
    assert all(isinstance(v, str) for v in again.values())
    assert (again["ASI/1"], again["OCR/2"]) == (got["ASI/1"], got["OCR/2"])
    assert not _run_file(out)["errors"]


_PACED_CLI = (  # the real command, each engine step slowed a little: still running when the signal comes
    "import sys, time\n"
    "from model.engine import StreamEngine\n"
    "step = StreamEngine.step\n"
    "StreamEngine.step = lambda self, *a, **k: (time.sleep(0.05), step(self, *a, **k))[1]\n"
    "from app.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32", reason="POSIX signals")
def test_sigterm_keeps_the_finished_entries_and_resume_runs_the_rest(ovo_set, tiny_ckpt, tmp_path, capsys):
    """SIGTERM to `benchmark ovo` (a service manager, `kill`) as Ctrl-C (issue 23): the query in progress
    finishes, every finished entry is kept in the results and the run file, rc 130; --resume runs the rest."""
    from fakes import read_until

    anno, videos, _ = ovo_set
    out = tmp_path / "res" / "RESULTS.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", _PACED_CLI, *_args(anno, videos, tiny_ckpt, out)],
        env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=str(Path(__file__).resolve().parents[3]),
    )  # fmt: skip
    try:
        read_until(proc.stderr, lambda line: line.startswith("[1/12] "))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "continue with --resume" in err
    run = _run_file(out)
    finished = set(run["responses"])
    assert 1 <= len(finished) < 12 and run["info"]["runs"][-1]["status"] == "stopped"
    assert f"stopped: {len(finished)} of 12 queries finished and kept in {out}" in err
    assert set(_responses(json.loads(out.read_text()))) <= finished  # complete items only
    assert cli_main(_args(anno, videos, tiny_ckpt, out, "--resume")) == 0
    assert f"{len(finished)} finished before, skipped" in capsys.readouterr().err
    assert len(_responses(json.loads(out.read_text()))) == 12  # every query answered


@pytest.mark.parametrize(
    ("index", "change", "message"),
    [
        (2, {"options": ["only one"]}, "entry 2 (id 2, task 'OCR'): 'options' must be a list of 2 to 26 strings"),
        (0, {"gt": 4}, "entry 0 (id 0, task 'EPM'): 'gt' must be the index of the right option, 0..3"),
        (1, {"task": "XYZ"}, "entry 1 (id 1, task 'XYZ'): unknown task"),
        (5, {"test_info": [{"realtime": 2, "step": "cut", "type": 2}]}, "entry 5 (id 5, task 'SSR'): test_info[0]: "
         "'type' must be 0 or 1"),
        (4, {"test_info": [{"realtime": "soon", "count": 1}]}, "entry 4 (id 4, task 'REC'): test_info[0]: 'realtime' must be a number"),
        (3, {"id": 0, "task": "EPM"}, "entry 3 repeats task EPM id 0 of entry 0"),
        (6, {"realtime": None, "video": ""}, "entry 6 (id 6, task 'CRR'): 'video' must be"),
    ],
)  # fmt: skip
def test_bad_annotations_are_one_line_errors_naming_file_and_entry(tmp_path, capsys, index, change, message):
    entries = ovo_entries()
    entries[index].update(change)
    anno = tmp_path / "ovo_bench_new.json"
    anno.write_text(json.dumps(entries))
    (tmp_path / "videos").mkdir()
    # The model does not exist: the annotation error comes first, before anything loads.
    assert cli_main(_args(anno, tmp_path / "videos", tmp_path / "no-model", tmp_path / "r.json")) == 2
    err = capsys.readouterr().err
    assert f"error: {anno}: {message}" in err and "Traceback" not in err
    with pytest.raises(ValueError, match=re.escape(message)):
        load_annotations(anno)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tasks", "EPM,XYZ"], "--tasks: unknown task 'XYZ'"),
        (["--limit", "0"], "--limit must be >= 1"),
        (["--tasks", "HLD"], "has no entries of the chosen tasks"),
        (["--resume"], "--resume: no"),
    ],
)
def test_bad_arguments_are_one_line_errors(ovo_set, tmp_path, capsys, extra, message):
    anno, videos, _ = ovo_set
    assert cli_main(_args(anno, videos, tmp_path / "no-model", tmp_path / "r.json", *extra)) == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The shared pass


@pytest.fixture(scope="module")
def ovo_videos(tmp_path_factory):
    return write_ovo(tmp_path_factory.mktemp("ovo"))


def _answers(loaded, videos, entries, protocol, fps, shared, threshold=None, skip=True, **window):
    """{(video, prompt, turn): answers} over every video, and the engine steps taken."""
    opts = EngineOptions(fps=fps, task="question", max_answer_tokens=6, threshold=threshold, **window)
    engine = StreamEngine(loaded, opts)
    stats = ovo_run.PassStats()
    out = {}
    by_video: dict[str, list] = {}
    for i, entry in enumerate(entries):
        by_video.setdefault(entry["video"], []).extend(queries_for(entry, i))
    for video, qs in by_video.items():
        frames = VideoFrames(Path(videos) / video, fps)
        asks, past_end = plan_asks(protocol, qs, frames, fps)
        assert not past_end
        for ask, answers in run_asks(engine, frames, asks, fps, shared, stats, skip):
            out[(video, ask.prompt, ask.turn, ask.queries[0].key)] = answers
        frames.close()
    return out, stats


@pytest.mark.parametrize(("protocol", "fps", "threshold"), [("offline", 1.0, None), ("streaming", 2.0, 0.17)])
def test_shared_pass_gives_the_responses_of_rerunning_each_query(tiny_loaded, ovo_videos, protocol, fps, threshold):
    _, videos, entries = ovo_videos
    shared, s_stats = _answers(tiny_loaded, videos, entries, protocol, fps, True, threshold)
    rerun, r_stats = _answers(tiny_loaded, videos, entries, protocol, fps, False, threshold)
    assert shared == rerun
    given = [[a for a in answers if a.text is not None] for answers in shared.values()]
    assert any(given) and all(a.text for answers in given for a in answers)
    if protocol == "streaming":
        assert any(not a for a in given)  # some questions are never answered: null
        assert any(len(a) > 1 for a in given)  # REC keeps answering to the end
    assert s_stats.asks == r_stats.asks == len(shared)
    assert s_stats.steps < r_stats.steps  # one pass per video instead of one per query


def test_the_shared_pass_check_sees_a_leaking_probe(tiny_loaded, ovo_videos, monkeypatch):
    """Without restoring the snapshot, earlier probes stay in the context and the answers change:
    the comparison above would catch a restore that is not exact."""
    _, videos, entries = ovo_videos
    forward = [e for e in entries if e["task"] in ("REC", "SSR")]
    rerun, _ = _answers(tiny_loaded, videos, forward, "offline", 1.0, False)
    monkeypatch.setattr(StreamEngine, "restore", lambda self, snap: None)
    leaking, _ = _answers(tiny_loaded, videos, forward, "offline", 1.0, True)
    assert leaking.keys() == rerun.keys() and leaking != rerun


def test_turns_each_protocol_asks_on(tiny_loaded, ovo_videos):
    _, videos, entries = ovo_videos
    coin = [q for i, e in enumerate(entries) if e["video"].startswith("COIN") for q in queries_for(e, i)]
    frames = VideoFrames(Path(videos) / coin[0].video, 1.0)  # 8 s: 8 turns at 1 fps, 16 at 2 fps
    turns = {a.queries[0].key: (a.turn, a.mode) for a in plan_asks("offline", coin, frames, 1.0)[0]}
    # ceil(realtime) seconds of stream, the prompt on the last turn; clipped to the video.
    assert turns == {"ASI/1": (2, "forced"), "STU/3": (7, "forced"), "SSR/5/0": (1, "forced"),
                     "SSR/5/1": (4, "forced"), "SSR/5/2": (4, "forced")}  # fmt: skip
    frames2 = VideoFrames(Path(videos) / coin[0].video, 2.0)
    turns = {a.queries[0].key: (a.turn, a.mode) for a in plan_asks("streaming", coin, frames2, 2.0)[0]}
    assert turns == {"ASI/1": (6, "first"), "STU/3": (15, "first"), "SSR/5/0": (4, "first"),
                     "SSR/5/1": (10, "first"), "SSR/5/2": (10, "first")}  # fmt: skip
    rec = queries_for(entries[4], 4)
    (ask,), _ = plan_asks("streaming", rec, VideoFrames(Path(videos) / rec[0].video, 1.0), 1.0)
    assert (ask.turn, ask.mode, len(ask.queries)) == (0, "all", 3)
    # REC: at each probe, the latest answer given within ceil(probe time) seconds of stream.
    got = responses_of(ask, [Answer(k, text, {}) for k, text in [(0, "0"), (1, "1"), (4, "2"), (6, "3")]], 1.0)
    assert {key: (g["response"], g["turn"], g["delay_s"]) for key, g in got.items()} == {
        "REC/4/0": ("1", 1, 0.0),  # probe at 2 s: turns 0-1; the answer came at the end of turn 1 (2 s)
        "REC/4/1": ("2", 4, 0.5),  # probe at 4.5 s: turns 0-4
        "REC/4/2": ("3", 6, 0.0),  # probe at 7 s: turns 0-6
    }
    assert {g["response"] for g in responses_of(ask, [], 1.0).values()} == {None}
    assert responses_of(Ask(3, "p", "first", rec[:1]), [], 1.0)["REC/4/0"]["response"] is None

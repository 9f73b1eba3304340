"""A handful of OVO-Bench entries in the official annotation format (all three categories, forward
probes included) with short generated videos under the relative paths the entries name. A module of
its own, imported by name: test modules must not import a conftest (another folder's may be found)."""

import json

from fakes import write_video

VIDEO_FPS = 4  # 4 source frames a second: the sampler takes every 4th at 1 fps, every 2nd at 2 fps


def ovo_entries() -> list[dict]:
    ego = "Ego4D/clips/0b9f2d1c-6c55-4a4e-9bd0-3f0e5c1a7e21.mp4"
    coin = "COIN/tie&knot=2.mp4"  # names in the release contain & and =
    opts = ["a red ball", "a blue square", "a green triangle", "nothing"]
    return [
        {"id": 0, "task": "EPM", "video": ego, "realtime": 5.5, "question": "What did I pick up?", "options": opts,
         "gt": 1, "answer": opts[1]},
        {"id": 1, "task": "ASI", "video": coin, "realtime": 3, "question": "What comes next?", "options": opts,
         "gt": 0, "answer": opts[0]},
        {"id": 2, "task": "OCR", "video": ego, "realtime": 7, "question": "What does the sign say?", "options": opts,
         "gt": 3, "answer": opts[3]},
        {"id": 3, "task": "STU", "video": coin, "realtime": 8.0, "question": "Where is the cup?", "options": opts,
         "gt": 2, "answer": opts[2]},  # at the very end of the video: its last turn
        {"id": 4, "task": "REC", "video": "REC/wave.mp4", "activity": "wave their hand", "start_times": [1, 4],
         "end_times": [2, 5], "test_info": [{"realtime": 2, "count": 1}, {"realtime": 4.5, "count": 1},
                                            {"realtime": 7, "count": 2}]},
        {"id": 5, "task": "SSR", "video": coin, "tutorial": "Tie a knot", "all_steps": ["cross", "pull"],
         "start_time": [1, 4], "end_time": [3, 6], "test_info": [{"realtime": 2, "step": "cross", "type": 1},
                                                                {"realtime": 5, "step": "cross", "type": 0},
                                                                {"realtime": 5, "step": "pull", "type": 1}]},
        {"id": 6, "task": "CRR", "video": ego, "question": "What colour is the cup?", "answer": "red",
         "ask_time": 1, "clue_time": 4, "test_info": [{"realtime": 3, "type": 0}, {"realtime": 6, "type": 1}]},
    ]  # fmt: skip


def write_ovo(root, entries=None, seconds=8) -> tuple:
    """(annotation file, videos folder, entries): every named video written, ``seconds`` long."""
    entries = ovo_entries() if entries is None else entries
    videos = root / "videos"
    for video in sorted({e["video"] for e in entries}):
        write_video(videos / video, seconds * VIDEO_FPS, VIDEO_FPS)
    anno = root / "ovo_bench_new.json"
    anno.write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return anno, videos, entries

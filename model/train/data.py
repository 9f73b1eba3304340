"""Training data: annotation files -> clips -> windows -> token ids, labels and frames.

Inputs are raw annotation files (PROTOCOL.md section 3; converted with ``protocol.convert_sample``,
the one converter) or stream-format files as released (``messages`` + ``videos``), as JSON (a list
or one object) or JSON Lines, with ``video_prefix`` joined in front of relative video paths.

Problems with one sample (an unreadable video, a malformed entry, a time past the clip's end, an
empty answer, frames that do not match the turns, more images than turns) become a ``DataIssue``
naming the file and the sample index; that sample is skipped or trained as the converter leaves it,
and the rest trains. Questions and answers are data, as Live's user text is
(``protocol.neutralize_turns``): ``<image>`` or ``<|im_end|>`` in them trains as plain text.

Token ids and labels come from ``protocol.render_segments`` (the one renderer): labelled are every
assistant turn's state token, answer text and ``<|im_end|>``; everything else is -100. Each
``<stream>`` becomes one image whose pad is expanded to that frame's visual token count.

Long conversations are cut into windows of at most ``max_turns`` turns. Like the live engine's
window rebuild, each window's first user turn carries the active question (the latest question
asked up to that turn). Windows never cross clips, and the held-out split is by video.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model import protocol as P
from model.frames import preprocess_frames
from model.presets import convert_for_live, has_annotations, live_task_applied, live_variants, phrasing_of
from model.train.video import FrameCache, VideoError

if TYPE_CHECKING:  # torch loads where samples are encoded: reading annotations (the app's GUI thread) needs none
    import torch

log = logging.getLogger(__name__)

IGNORE = -100
ANNOTATION_SUFFIXES = (".json", ".jsonl")


class DataError(Exception):
    """No usable training data; the message says why and names the files."""


# How a left-out unannotated clip is named (the Training tab counts these apart).
UNANNOTATED = "no question and no answer: an unannotated clip would teach 'say nothing here'"


@dataclass(frozen=True)
class DataIssue:
    file: str
    index: int | None  # sample index in the file (line number - 1 for JSON Lines), None: the whole file
    message: str

    def __str__(self) -> str:
        where = f"{self.file} sample {self.index}" if self.index is not None else self.file
        return f"{where}: {self.message}"


def turns_of(messages: Sequence[dict[str, str]]) -> int:
    """Turns of a stream-format conversation: the system prompt, then one user/assistant pair each."""
    return (len(messages) - 1) // 2


@dataclass
class Clip:
    """One conversation and its video, in the stream format (``<stream>`` placeholders)."""

    messages: list[dict[str, str]]  # system, then user/assistant pairs, one pair per turn
    video: Path
    file: str
    index: int
    name: str = ""
    # The Live task (a key of presets.TASK_PRESETS) whose instruction is on the first turn (the
    # evaluation runs the engine under it); None: the first turn is the data's own.
    live_task: str | None = None

    @property
    def turns(self) -> int:
        return turns_of(self.messages)

    @property
    def origin(self) -> str:
        return f"{self.file} sample {self.index}"

    def turn(self, i: int) -> tuple[dict[str, str], dict[str, str]]:
        return self.messages[1 + 2 * i], self.messages[2 + 2 * i]


@dataclass
class Window:
    clip: Clip
    first: int  # index of the clip's first turn in this window
    messages: list[dict[str, str]]  # system + the window's turns, the active question on the first

    @property
    def turns(self) -> int:
        return turns_of(self.messages)

    @property
    def key(self) -> str:
        return f"{self.clip.origin} turns {self.first}-{self.first + self.turns - 1}"


@dataclass
class Encoded:
    input_ids: torch.Tensor  # [T] long
    labels: torch.Tensor  # [T] long, IGNORE where not labelled
    pixel_values: torch.Tensor  # [patches, D]
    image_grid_thw: torch.Tensor  # [turns, 3]
    turns: int
    key: str = ""


# ---------------------------------------------------------------------------------------------
# Reading annotation files


def annotation_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; a folder stands for its *.json and *.jsonl files (sorted, not recursive)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in ANNOTATION_SUFFIXES and q.is_file())
        else:
            out.append(p)
    return out


def read_annotation_file(path: Path, issues: list[DataIssue]) -> list[tuple[int, Any]]:
    """(index, sample) pairs; a malformed file or JSON Lines line becomes an issue. The text is read
    and parsed by the protocol's one reader (``protocol.read_annotation_text``: UTF-8, a byte-order
    mark allowed; ``protocol.parse_annotation_json``), as ``to-stream`` and the Training tab read it."""
    name = str(path)
    try:
        text = P.read_annotation_text(path)
    except P.AnnotationError as e:
        issues.append(DataIssue(name, None, str(e)))
        return []
    if path.suffix.lower() == ".jsonl":
        out = []
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                out.append((i, P.parse_annotation_json(line, position=False)))
            except P.AnnotationError as e:
                issues.append(DataIssue(name, i, f"line {i + 1} is {e}; skipped"))
        return out
    try:
        data = P.parse_annotation_json(text)
    except P.AnnotationError as e:
        issues.append(DataIssue(name, None, str(e)))
        return []
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        issues.append(DataIssue(name, None, "expected a JSON list of samples or one sample object"))
        return []
    return list(enumerate(data))


def _video_path(path: str, prefix: str | Path | None) -> Path:
    return Path(prefix) / path if prefix and not Path(path).is_absolute() else Path(path)


def stream_sample_problems(sample: dict) -> list[str]:
    """Why a stream-format sample cannot train (empty list: it can)."""
    videos, messages = sample.get("videos"), sample.get("messages")
    if not isinstance(videos, list) or len(videos) != 1 or not isinstance(videos[0], str) or not videos[0]:
        return ["'videos' must be a list with one video path"]
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
    ):
        return ["'messages' must be a list of {role, content} objects"]
    if not messages or messages[0]["role"] != "system":
        return ["the first message must be the system prompt"]
    turns = messages[1:]
    if not turns or len(turns) % 2:
        return ["messages after the system prompt must be user/assistant pairs"]
    problems = []
    for i in range(0, len(turns), 2):
        user, assistant = turns[i], turns[i + 1]
        if user["role"] != "user" or assistant["role"] != "assistant":
            return [f"turn {i // 2}: expected a user then an assistant message"]
        try:
            P.parse_user_content(user["content"])
        except ValueError as e:
            return [f"turn {i // 2}: {e}"]
        try:
            state, text = P.parse_assistant_content(assistant["content"])
        except ValueError as e:
            return [f"turn {i // 2}: {e}"]
        if state == P.RESPONSE and not text:
            problems.append(f"turn {i // 2}: '{P.RESPONSE}' without an answer")
    return problems


def load_clips(
    paths: Sequence[str | Path],
    video_prefix: str | Path | None = None,
    fps: float = 1.0,
    probe: Callable[[Path], P.VideoMeta | None] = P.probe_video,
    live_instructions: bool = False,
    skip_unannotated: bool = False,
) -> tuple[list[Clip], list[DataIssue]]:
    """Every usable sample of every file, and the problems found on the way.

    Raw samples convert as the released converter does, unless ``live_instructions``: then each
    sample's first turn carries the instruction of the Live task it teaches
    (``presets.convert_for_live``). ``skip_unannotated`` leaves out raw samples with no question and
    no response (they would train "say nothing" on that footage), each named in the issues.
    With ``live_instructions``, a task's annotated samples take its wordings in turn
    (``presets.phrasing_of``: every other one Live's own sentence)."""
    issues: list[DataIssue] = []
    clips: list[Clip] = []
    phrasings: dict[str, int] = {}
    probed: dict[Path, P.VideoMeta | None] = {}  # a sample's variants (and repeated videos) probe once

    def probe_once(video: Path) -> P.VideoMeta | None:
        if video not in probed:
            probed[video] = probe(video)
        return probed[video]

    for path in annotation_files(paths):
        name = str(path)
        for index, sample in read_annotation_file(path, issues):
            if not isinstance(sample, dict):
                issues.append(DataIssue(name, index, f"expected an object, got {type(sample).__name__}; skipped"))
                continue
            if "messages" in sample:
                problems = stream_sample_problems(sample)
                if problems:
                    issues.append(DataIssue(name, index, "; ".join(problems) + "; skipped"))
                    continue
                video = _video_path(sample["videos"][0], video_prefix)
                messages = _as_data([{"role": m["role"], "content": m["content"]} for m in sample["messages"]],
                                    name, index, issues)  # fmt: skip
                if messages is None:
                    continue
                live_task = None
            elif "video_path" in sample:
                if skip_unannotated and not has_annotations(sample):
                    issues.append(DataIssue(name, index, f"{UNANNOTATED}; left out"))
                    continue
                label = str(sample.get("video_name") or "")
                phrasing = phrasing_of(phrasings, sample) if live_instructions else 0  # its variants share it
                for variant, raw in live_variants(sample, fps, index) if live_instructions else [("", sample)]:
                    converted = _convert_raw(raw, name, index, video_prefix, fps, probe_once, issues,
                                             live_instructions, phrasing, quiet=bool(variant))  # fmt: skip
                    if converted is None:
                        break
                    video, messages, live_task = converted
                    messages = _as_data(messages, name, index, issues)
                    if messages is None:
                        break
                    title = label or video.name
                    clips.append(Clip(messages, video, name, index, f"{title} ({variant})" if variant else title,
                                      live_task))  # fmt: skip
                continue
            else:
                issues.append(
                    DataIssue(name, index, "neither a raw annotation (video_path) nor a stream sample (messages)")
                )
                continue
            clips.append(Clip(messages, video, name, index, str(sample.get("video_name") or video.name), live_task))
    return clips, issues


def _as_data(
    messages: list[dict[str, str]], name: str, index: int, issues: list[DataIssue]
) -> list[dict[str, str]] | None:
    """The conversation as it trains: its questions and answers are data (``protocol.neutralize_turns``,
    Live's rule for user text), so ``<|im_end|>`` in an answer is words, not a special token, and
    ``<image>`` in a question adds no image. One that still holds another number of images than turns
    (``<image>`` in a stream file's own system prompt) is this sample's issue and is skipped: it
    would ask for more frames than the clip has and stop the run mid-way."""
    messages = P.neutralize_turns(messages)
    images, turns = P.count_images(messages), turns_of(messages)
    if images != turns:
        why = f"{images} images for {turns} turns: an image placeholder outside the user turns (its system prompt?)"
        issues.append(DataIssue(name, index, f"{why}; skipped"))
        return None
    return messages


def _convert_raw(
    sample: dict,
    name: str,
    index: int,
    video_prefix: str | Path | None,
    fps: float,
    probe: Callable[[Path], P.VideoMeta | None],
    issues: list[DataIssue],
    live_instructions: bool = False,
    phrasing: int = 0,
    quiet: bool = False,
) -> tuple[Path, list[dict[str, str]], str | None] | None:
    if not isinstance(sample.get("video_path"), str) or not sample["video_path"]:
        issues.append(DataIssue(name, index, "'video_path' is missing or not a string; skipped"))
        return None
    video = _video_path(sample["video_path"], video_prefix)
    meta = probe(video)
    if meta is None:
        from model.video_probe import inspect_video  # the one probe's reason (cached: no second decode)

        issues.append(DataIssue(name, index, f"video {video}: {inspect_video(video).reason or 'unreadable'}; skipped"))
        return None
    n = P.turn_count(meta.total_frames, meta.fps, fps)
    try:
        if live_instructions:
            converted = convert_for_live(sample, n, fps, index, phrasing)
            live_task = live_task_applied(sample, n, fps, index)
        else:
            converted, live_task = P.convert_sample(sample, n, fps, index), None
    except P.AnnotationError as e:
        issues.append(DataIssue(name, index, f"{e}; skipped"))
        return None
    for problem in [] if quiet else P.raw_sample_problems(sample, n, fps):  # quiet: the sample's were said
        issues.append(DataIssue(name, index, problem))
    return video, converted["messages"], live_task


# ---------------------------------------------------------------------------------------------
# Frames against turns, windows, the held-out split


def attach_frames(clips: Sequence[Clip], cache: FrameCache, issues: list[DataIssue]) -> list[Clip]:
    """Decode (or read from the cache) every clip's frames; drop clips whose frame count differs
    from their turn count by more than one (PROTOCOL.md section 4) or whose video fails."""
    kept = []
    for clip in clips:
        try:
            n = len(cache.get(clip.video).frames)
        except (VideoError, OSError) as e:
            issues.append(DataIssue(clip.file, clip.index, f"{e}; skipped"))
            continue
        if abs(n - clip.turns) > 1:
            issues.append(
                DataIssue(
                    clip.file,
                    clip.index,
                    f"{clip.video} gives {n} frames at this fps but the sample has {clip.turns} turns; skipped",
                )
            )
            continue
        kept.append(clip)
    return kept


def clip_frames(clip: Clip, cache: FrameCache) -> np.ndarray:
    """The clip's frames, one per turn: extra frames cut, a missing last frame repeats the one before."""
    frames = cache.get(clip.video).frames
    if len(frames) >= clip.turns:
        return frames[: clip.turns]
    return np.concatenate([frames, frames[-1:].repeat(clip.turns - len(frames), axis=0)])


def cut_windows(clip: Clip, max_turns: int) -> list[Window]:
    """Consecutive windows of at most ``max_turns`` turns, the active question put back on each
    window's first user turn when it has none (what the engine's rebuild does)."""
    if max_turns < 1:
        raise ValueError("max_turns must be >= 1")
    system = clip.messages[0]
    windows = []
    active: str | None = None
    for first in range(0, clip.turns, max_turns):
        body: list[dict[str, str]] = []
        for i in range(first, min(clip.turns, first + max_turns)):
            user, assistant = clip.turn(i)
            question, start, end = P.parse_user_content(user["content"])
            if question:
                active = question
            elif i == first and active:
                user = {"role": "user", "content": P.user_turn_content(start, end, active, P.STREAM_PLACEHOLDER)}
            body += [user, assistant]
        windows.append(Window(clip, first, [system, *body]))
    return windows


# Below these the held-out scores move a lot with one clip (issue 18: one clip held out of 14).
FEW_HELDOUT, HELDOUT_SHARE = 2, 0.2


def heldout_count(n_videos: int, holdout: float, minimum: int = 1, maximum: int | None = None) -> int:
    """How many of ``n_videos`` videos a ``holdout`` share holds out: ``round(holdout * n_videos)``,
    raised towards ``minimum`` as far as that leaves at least three videos to train on (``minimum``
    1: one of four or more), and at most ``maximum`` (TrainConfig.max_heldout, 200: enough to score,
    few enough to score in full). Never all of them; with fewer than two videos, or ``holdout`` 0, none.

    The Training tab asks for "at least 2 clips or 20%" (``holdout`` 0.2, ``minimum`` 2); the command
    line's default is ``holdout`` 0.1, ``minimum`` 1."""
    if n_videos < 2 or holdout <= 0:
        return 0
    n_hold = round(holdout * n_videos)
    if n_hold < minimum:
        n_hold = max(n_hold, min(minimum, n_videos - 3))
    if maximum is not None:
        n_hold = min(n_hold, maximum)
    return max(0, min(n_hold, n_videos - 1))


def heldout_warning(n_held: int, n_videos: int) -> str | None:
    """In plain words, why scores on ``n_held`` held-out videos of ``n_videos`` cannot be trusted
    (fewer than 2, or under 20%); None when they are enough."""
    if n_videos <= 0:
        return None
    if n_held <= 0:
        return (
            "No clip is held out: the scores are measured on clips the adapter was trained on, so they say "
            "little about new footage. Hold out at least 2 clips (or 20%) to trust them."
        )
    if n_held < FEW_HELDOUT:
        return (
            "Only 1 clip is held out: its scores move a lot with one clip; hold out at least 2 clips "
            "(or 20%) to trust them."
        )
    if n_held < round(HELDOUT_SHARE * n_videos):
        return (
            f"Only {n_held} of {n_videos} clips ({n_held / n_videos:.0%}) are held out: the scores rest on few "
            "clips; hold out at least 20% to trust them."
        )
    return None


def names_video(name: str, clip: Clip) -> bool:
    """Whether ``name`` names ``clip``'s video: its path as written in the data (relative to the video
    prefix), its full or resolved path, its file name, or the clip's name."""
    video = clip.video
    if name in (str(video), video.name, clip.name):
        return True
    given = Path(name).expanduser()
    if not given.is_absolute() and given.parts and video.parts[-len(given.parts) :] == given.parts:
        return True
    try:
        return given.resolve() == video.resolve()
    except (OSError, RuntimeError):
        return False


def split_by_video(
    clips: Sequence[Clip],
    holdout: float,
    seed: int = 0,
    *,
    chosen: Sequence[str] = (),
    minimum: int = 1,
    maximum: int | None = None,
) -> tuple[list[Clip], list[Clip]]:
    """(train, held-out): whole videos go to one side. ``chosen`` names the videos to hold out (see
    :func:`names_video`; a name that matches none is a ``DataError`` naming it, as is choosing every
    video); otherwise :func:`heldout_count` videos are chosen by a seeded shuffle."""
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout must be in [0, 1), got {holdout}")
    videos = sorted({str(c.video) for c in clips})
    if chosen:
        unknown = [n for n in chosen if not any(names_video(n, c) for c in clips)]
        if unknown:
            names = ", ".join(repr(n) for n in unknown)
            raise DataError(
                f"held-out clip{'s' * (len(unknown) > 1)} not among the usable clips: {names}. Name each by its "
                "video's path as written in the annotations, its full path or its file name."
            )
        held = {str(c.video) for c in clips if any(names_video(n, c) for n in chosen)}
        if len(held) == len(videos):
            raise DataError(f"every video ({len(videos)}) is chosen to be held out: leave at least one to train on")
    else:
        n_hold = heldout_count(len(videos), holdout, minimum, maximum)
        if n_hold == 0:
            return list(clips), []
        random.Random(seed).shuffle(videos)
        held = set(videos[:n_hold])
    return [c for c in clips if str(c.video) not in held], [c for c in clips if str(c.video) in held]


def choose_heldout(clips: Sequence[Clip], config: Any) -> tuple[list[Clip], list[Clip]]:
    """(train, held-out) as ``config`` (a ``TrainConfig`` or anything with its ``holdout``, ``seed``,
    ``heldout`` and ``min_heldout``) says: the one split of the trainer, the evaluation after training
    and the Training tab's preview."""
    return split_by_video(
        clips,
        float(getattr(config, "holdout", 0.0)),
        int(getattr(config, "seed", 0)),
        chosen=list(getattr(config, "heldout", None) or ()),
        minimum=int(getattr(config, "min_heldout", 1)),
        maximum=getattr(config, "max_heldout", None),
    )


def video_names(clips: Sequence[Clip]) -> list[str]:
    """The clips' names (each video once, in order), as reports and the Training tab show them."""
    return list(dict.fromkeys(c.name or c.video.name for c in clips))


# ---------------------------------------------------------------------------------------------
# Token ids and labels


class Encoder:
    """Messages + frames -> ``Encoded`` with the model's tokenizer and processor."""

    def __init__(self, tokenizer: Any, processor: Any, min_pixels: int | None = None, max_pixels: int | None = None):
        self.tokenizer, self.processor = tokenizer, processor
        self.min_pixels, self.max_pixels = min_pixels, max_pixels
        self.image_id = tokenizer.convert_tokens_to_ids(P.IMAGE_PAD)
        self._memo: dict[str, list[int]] = {}  # the few pieces every turn repeats

    def _ids(self, text: str) -> list[int]:
        ids = self._memo.get(text)
        if ids is None:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(text) < 64 and len(self._memo) < 4096:
                self._memo[text] = ids
        return ids

    def encode(
        self, messages: Sequence[dict[str, str]], frames: np.ndarray | Sequence[np.ndarray], key: str = ""
    ) -> Encoded:
        n_images = P.count_images(messages)
        if n_images != len(frames):
            raise ValueError(f"{key or 'sample'}: {n_images} images in the messages but {len(frames)} frames")
        pixel_values, grid, n_tokens = preprocess_frames(self.processor, list(frames), self.min_pixels, self.max_pixels)
        ids: list[int] = []
        labels: list[int] = []
        images = iter(n_tokens)
        for text, labelled in P.render_segments(messages, final_newline=False):
            piece = self._ids(text)
            if labelled:
                ids += piece
                labels += piece
                continue
            for token in piece:
                if token == self.image_id:
                    n = next(images)
                    ids += [token] * n
                    labels += [IGNORE] * n
                else:
                    ids.append(token)
                    labels.append(IGNORE)
        import torch

        return Encoded(
            torch.tensor(ids, dtype=torch.long),
            torch.tensor(labels, dtype=torch.long),
            pixel_values,
            grid,
            len(n_tokens),
            key,
        )


@dataclass
class WindowDataset:
    """Windows encoded on demand (frames come memory-mapped from the cache)."""

    windows: list[Window]
    cache: FrameCache
    encoder: Encoder
    _frames: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> Encoded:
        w = self.windows[i]
        frames = clip_frames(w.clip, self.cache)[w.first : w.first + w.turns]
        return self.encoder.encode(w.messages, frames, w.key)

    def turns(self) -> int:
        return sum(w.turns for w in self.windows)

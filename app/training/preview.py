"""What a training run will see, before it starts (no Qt): the Training tab's dataset preview.

``dataset_preview`` reads the annotations and probes the videos with the trainer's own converter
(``model.train.data.load_clips`` with the tab's rules: Live's instruction on each clip's first turn,
questions at their seconds), so each clip's conversation is exactly what trains; it is slow (video
probes): call it off the GUI thread. ``DatasetPreview.split`` then applies the held-out choice
(automatic, or the videos the user chose) with the trainer's own split (``data.choose_heldout``) and
plans the run (``estimate.plan_run``): no I/O, cheap enough to redo on every click.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.training.estimate import ClipInfo, Plan, plan_run, sized_probe, tab_data_rules, unannotated_samples
from app.training.presets import Preset
from model import protocol as P

# The tick's words, for the panel and for the messages that point at it.
UNANNOTATED_TICK = "Use unannotated clips as examples of nothing happening"
STATE_WORDS = {P.SILENCE: "Silence", P.STANDBY: "Standby", P.RESPONSE: "Response"}


def clock(second: float) -> str:
    s = int(second)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def render_turns(messages: Sequence[dict[str, str]]) -> list[str]:
    """A stream-format conversation as lines a person reads: the instruction on the first turn in
    brackets, each second's state, questions and answers at their seconds. Runs of three or more
    plain seconds in the same state are one line ("0:01-0:07 Silence x7")."""
    turns = []
    for i in range((len(messages) - 1) // 2):  # system, then one user/assistant pair a turn
        user, assistant = messages[1 + 2 * i], messages[2 + 2 * i]
        question, start, _ = P.parse_user_content(user["content"])
        state, text = P.parse_assistant_content(assistant["content"])
        turns.append((start, question, state, text))
    lines: list[str] = []
    k = 0
    while k < len(turns):
        start, question, state, text = turns[k]
        plain = not question and not text
        run = k
        while (
            plain
            and run + 1 < len(turns)
            and not turns[run + 1][1]
            and not turns[run + 1][3]
            and (turns[run + 1][2] == state)
        ):
            run += 1
        if run - k >= 2:
            lines.append(f"{clock(start)}-{clock(turns[run][0])} {STATE_WORDS[state]} x{run - k + 1}")
            k = run + 1
            continue
        parts = [clock(start)]
        if question:
            parts.append(f"[{question}]" if k == 0 else f"Question: \u201c{question}\u201d \u2192")
        parts.append(f"{STATE_WORDS[state]}: {text}" if text else STATE_WORDS[state])
        lines.append(" ".join(parts))
        k += 1
    return lines


@dataclass
class ClipPreview:
    name: str
    video: str  # the video's path as the trainer reads it: the key of a held-out choice
    task: str  # the annotation's task type ("Narration", "QA", ...)
    live_task: str | None  # the Live task whose instruction is on the first turn (None: the data's own)
    turns: int
    states: dict[str, int]  # turns per state token
    questions: int
    answers: int
    lines: list[str]  # the conversation, rendered (render_turns)
    unannotated: bool = False  # an example of nothing happening
    width: int | None = None
    height: int | None = None


@dataclass
class Split:
    train: list[str]  # videos (ClipPreview.video)
    held: list[str]
    automatic: bool  # chosen by the trainer's seeded rule, not by the user
    warning: str | None  # heldout_warning, in plain words
    plan: Plan | None
    error: str = ""  # a choice the trainer would refuse (every clip held out, a name that is gone)

    @property
    def epochs(self) -> float:
        if self.plan is None or not self.plan.steps_per_epoch:
            return 0.0
        return self.plan.steps / self.plan.steps_per_epoch


@dataclass
class DatasetPreview:
    clips: list[ClipPreview] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # unannotated clips not trained (names)
    issues: list[str] = field(default_factory=list)  # other samples skipped, and why
    use_unannotated: bool = False
    _clips: list[Any] = field(default_factory=list, repr=False)  # model.train.data.Clip, for the split

    @property
    def annotated(self) -> list[ClipPreview]:
        """The conversations of annotated clips (a clip with questions may train asked and unasked)."""
        return [c for c in self.clips if not c.unannotated]

    @property
    def empty_examples(self) -> list[ClipPreview]:
        return [c for c in self.clips if c.unannotated]

    @property
    def videos(self) -> list[str]:
        return list(dict.fromkeys(c.video for c in self.clips))

    def clip(self, video: str) -> ClipPreview | None:
        return next((c for c in self.clips if c.video == video), None)

    def state_counts(self, videos: Sequence[str] | None = None) -> dict[str, int]:
        total = Counter[str]()
        for c in self.clips:
            if videos is None or c.video in videos:
                total.update(c.states)
        return {s: total.get(s, 0) for s in P.STATE_TOKENS}

    def task_counts(self) -> dict[str, int]:
        """Clips per task type (examples of nothing happening apart)."""
        out = Counter(task for _, task in dict.fromkeys((c.video, c.task) for c in self.annotated))
        return dict(sorted(out.items()))

    def split(self, config: Any, preset: Preset | None = None) -> Split:
        """The held-out split ``config`` asks for (its ``heldout`` names, else ``holdout`` and
        ``min_heldout`` with its ``seed``) and the run's epochs and steps; ``preset`` resolves the
        budget when ``config`` sets neither steps nor epochs, as the panel does."""
        from model.train.data import DataError, choose_heldout, heldout_warning

        chosen = list(getattr(config, "heldout", None) or ())
        try:
            train, held = choose_heldout(self._clips, config)
        except (DataError, ValueError) as e:
            return Split([c.video for c in self.clips], [], not chosen, None, None, str(e))
        held_videos = list(dict.fromkeys(str(c.video) for c in held))
        train_videos = list(dict.fromkeys(str(c.video) for c in train))
        infos = [(c.video, ClipInfo(c.turns, c.width, c.height, c.video)) for c in self.clips]
        plan = plan_run(config, [i for v, i in infos if v in train_videos],
                        held=[i for v, i in infos if v in held_videos])  # fmt: skip
        if preset is not None and getattr(config, "steps", None) is None and getattr(config, "epochs", None) is None:
            plan = Plan(plan.train_windows, plan.eval_windows, plan.heldout_clips, plan.steps_per_epoch,
                        preset.steps(plan.steps_per_epoch))  # fmt: skip
        n_videos = len(held_videos) + len(train_videos)
        return Split(train_videos, held_videos, not chosen, heldout_warning(len(held_videos), n_videos), plan)

    def clip_count_text(self) -> str:
        annotated = len({c.video for c in self.annotated})
        text = clip_count_text(annotated, len({c.video for c in self.empty_examples}), len(self.left_out))
        if len(self.clips) > len(self.videos):
            text += f" ({_plural(len(self.clips), 'conversation')}: a clip with questions also trains unasked)"
        return text

    def left_out_text(self) -> str:
        return left_out_text(len(self.left_out), self.left_out)

    def summary(self, split: Split) -> list[str]:
        """The preview's facts in plain words, one per line."""
        lines = [self.clip_count_text() + "."]
        if self.left_out:
            lines.append(self.left_out_text() + ".")
        states = self.state_counts()
        lines.append("Seconds per state: " + " \u00b7 ".join(f"{STATE_WORDS[s]} {states[s]:,}" for s in states))
        tasks = self.task_counts()
        if tasks:
            lines.append("Clips per task: " + " \u00b7 ".join(f"{t} {n}" for t, n in tasks.items()))
        questions = sum(c.questions for c in self.clips)
        answers = sum(c.answers for c in self.clips)
        lines.append(f"{_plural(answers, 'answer')} and {_plural(questions, 'question')} at their seconds, "
                     "in all conversations.")  # fmt: skip
        if split.error:
            lines.append(f"Held out: {split.error}")
        else:
            names = [c.name if (c := self.clip(v)) is not None else Path(v).name for v in split.held]
            how = "automatic" if split.automatic else "chosen by you"
            lines.append(
                f"Held out ({how}): {', '.join(names) if names else 'none'} \u2014 {len(split.held)} of "
                f"{len(split.held) + len(split.train)} clips, scored after training."
            )
        if split.plan is not None:
            lines.append(
                f"Training on {_plural(len(split.train), 'clip')} in {_plural(len(split.plan.train_windows), 'window')}: "
                f"{split.plan.steps:,} steps, {split.epochs:.1f} epochs ({_plural(split.plan.steps_per_epoch, 'step')} an epoch)."
            )
        return lines


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def clip_count_text(annotated: int, empty_used: int = 0, left_out: int = 0) -> str:
    """'12 annotated clips + 3 examples of nothing happening', or '12 clips' (the estimate's words too)."""
    text = _plural(annotated, "annotated clip" if empty_used or left_out else "clip")
    if empty_used:
        text += f" + {_plural(empty_used, 'example')} of nothing happening"
    return text


def left_out_text(n: int, names: Sequence[str] = ()) -> str:
    """'3 unannotated clips left out (tick "Use unannotated clips ..." to use them): a.mp4, ...'."""
    if not n:
        return ""
    text = f"{_plural(n, 'unannotated clip')} left out (tick \u201c{UNANNOTATED_TICK}\u201d to use {'it' if n == 1 else 'them'})"
    if names:
        text += f": {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}"
    return text


def dataset_preview(
    paths: Sequence[str | Path],
    video_prefix: str | Path | None = None,
    *,
    use_unannotated: bool = False,
    fps: float = 1.0,
) -> DatasetPreview:
    """Every clip as the trainer will see it, with the tab's data rules. Reads the annotation files and
    probes the videos (OpenCV): call it off the GUI thread."""
    from model.train.data import UNANNOTATED, load_clips, read_annotation_file

    probe, sizes = sized_probe()
    clips, issues = load_clips(list(paths), video_prefix, fps, probe=probe, **tab_data_rules(use_unannotated))
    empty = unannotated_samples(paths)
    task_types: dict[tuple[str, int], str] = {}
    for file in {c.file for c in clips}:
        for index, sample in read_annotation_file(Path(file), []):
            if isinstance(sample, dict):
                task_types[(file, index)] = str(sample.get("task_type") or "Narration")
    out = DatasetPreview(use_unannotated=use_unannotated, _clips=list(clips))
    for clip in clips:
        states = Counter[str]()
        questions = answers = 0
        for i in range(clip.turns):
            user, assistant = clip.turn(i)
            question, _, _ = P.parse_user_content(user["content"])
            state, text = P.parse_assistant_content(assistant["content"])
            states[state] += 1
            questions += bool(question) and i > 0
            answers += bool(text)
        w, h = sizes.get(str(clip.video), (None, None))
        out.clips.append(
            ClipPreview(
                name=clip.name or clip.video.name,
                video=str(clip.video),
                task=task_types.get((clip.file, clip.index), "stream sample"),
                live_task=getattr(clip, "live_task", None),
                turns=clip.turns,
                states={s: states.get(s, 0) for s in P.STATE_TOKENS},
                questions=questions,
                answers=answers,
                lines=render_turns(clip.messages),
                unannotated=(clip.file, clip.index) in empty,
                width=w or None,
                height=h or None,
            )
        )
    if not use_unannotated:
        out.left_out = list(empty.values())
    out.issues = [str(i) for i in issues if UNANNOTATED not in i.message]
    return out

"""The streaming engine: one frame per interval in, one state (and maybe an answer) out.

The conversation lives in a KV cache (model/kv.py). Each ``step`` runs the vision tower on the
one new frame, prefills ONE forward of [the previous assistant turn's closing tokens, the new
user turn, "<|im_start|>assistant\\n"] with the Qwen2.5-VL 3-D rotary positions continuing from
the previous turn (model/rope.py), and decides the state from the final-norm hidden state of
the last token times the three state-token rows of the LM head only. On </Response> it decodes
the answer token by token through a callback. Afterwards the cache (plus the few closing
tokens that ride along with the next prefill) holds exactly the token ids of
``protocol.render_conversation(engine.messages())``: a full forward over that rendered
conversation gives the same state probabilities and the same greedy answers
(tests/model/test_engine.py checks it in fp32).

Window: past ``max_turns`` turns (or ``max_tokens`` tokens) the oldest turns are dropped in one
chunk. "rebuild" (exact) re-renders the kept turns with the active question put back into the
first kept user turn and re-prefills them in the same forward as the new turn, reusing each kept
frame's stored vision features (deterministic per frame, so nothing is lost). "evict"
(APPROXIMATE) removes the dropped turns' cache entries and re-rotates the kept keys to close the
position gap, without recomputing: kept entries still carry attention to the dropped turns,
and the active question is re-asked on the new turn instead of the first kept one.

Snapshots: ``snapshot()`` copies everything a later step reads (the cache's filled part, the
turns, the pending tokens, the waiting questions, the options, the sampler's state) and
``restore(snap)`` puts it back, so a detour (a probe question and its answer, say) leaves no
trace: the run continues exactly as if the detour had never been taken.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model import hf_compat as hf
from model import protocol as P
from model.catalog import window_turns
from model.engine_types import MID_RUN_OPTIONS, WINDOW_MODES, Engine, EngineOptions, StepResult
from model.frames import preprocess_frame
from model.kv import CacheSnapshot, StreamKVCache
from model.loading import LoadedModel, plain_module
from model.presets import task_instruction
from model.rope import mrope_positions

log = logging.getLogger(__name__)

# The options, the step result and the Engine protocol are defined torch-free in model/engine_types.py
# (the app is typed against them) and are importable from here too.
__all__ = [
    "MID_RUN_OPTIONS",
    "RECENT_STEPS",
    "WINDOW_MODES",
    "Engine",
    "EngineOptions",
    "EngineSnapshot",
    "StepResult",
    "StreamEngine",
]

RECENT_STEPS = 32  # StepResults kept in ``StreamEngine.recent``: memory stays flat on endless runs


@dataclass(eq=False)
class _Question:
    """A question waiting for its turn (or the task's instruction, ``instruction=True``)."""

    text: str
    t: float | None  # stream second it was asked at; None: the next turn
    tag: Any
    order: float  # sort key: ``t``, or the next turn's start when asked with t=None
    seq: int  # ties: in the order asked
    instruction: bool = False


@dataclass
class _Turn:
    start: float
    end: float
    question: str | None
    feats: torch.Tensor  # [n_image_tokens, H] vision output, kept for exact rebuilds
    grid: tuple[int, int, int]  # (t, h, w) patch grid
    state: str = P.SILENCE
    text: str = ""
    cache_start: int = 0  # where its user block starts in the cache
    pos_start: int = 0  # its first rotary position


@dataclass(frozen=True)
class EngineSnapshot:
    """The engine's whole conversation state at one point (``StreamEngine.snapshot``). Opaque;
    restorable any number of times, also after ``reset()``."""

    cache: CacheSnapshot
    turns: tuple[_Turn, ...]
    pending: tuple[int, ...]
    next_pos: int
    t_next: float
    asked: tuple[_Question, ...]
    seq: int
    instruction: _Question | None
    active: str | None
    approximate: bool
    broken: bool
    opts: EngineOptions
    generator_state: torch.Tensor | None
    steps: int
    recent: tuple[StepResult, ...]


def _base_model(model):
    """The Qwen2.5-VL ForConditionalGeneration under a peft wrapper, if any (LoRA layers stay in)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


class StreamEngine:
    """Streaming inference over a LoadedModel; CPU (fp32) and CUDA (4-bit/bf16) alike."""

    def __init__(self, loaded: LoadedModel, options: EngineOptions | None = None) -> None:
        self.loaded = loaded
        self.opts = self._fit_window(options or EngineOptions())
        self.opts.validate()
        base = _base_model(loaded.model)
        if getattr(base.config, "model_type", "") != "qwen2_5_vl":
            raise ValueError(
                f"the streaming engine supports Qwen2.5-VL checkpoints; {loaded.source} is "
                f"{getattr(base.config, 'model_type', '?')}. Choose a Qwen2.5-VL model."
            )
        self._base = base
        self._lm = base.model.language_model
        text_cfg = self._lm.config
        if any(t != "full_attention" for t in text_cfg.layer_types):
            raise ValueError("sliding-window attention layers are not supported by the streaming engine")
        self._attn_impl = hf.attention_implementation(text_cfg)
        if self._attn_impl not in ("sdpa", "eager"):
            raise ValueError(f"attention implementation {self._attn_impl!r} is not supported; load with sdpa")
        self._embed = self._lm.get_input_embeddings()
        self._head = plain_module(base.lm_head).weight  # [V, H]; an adapter's state rows are merged in
        self.device = loaded.device
        self._cuda = self.device.type == "cuda"
        tok = loaded.tokenizer
        self._tok = tok
        self._image_id = base.config.image_token_id
        self._merge = base.config.vision_config.spatial_merge_size
        self._state_ids = loaded.state_ids  # Silence, Standby, Response
        self._id_of = dict(zip(P.STATE_TOKENS, self._state_ids, strict=True))
        self._w_state = self._head.detach()[self._state_ids]  # [3, H]: the only rows a silent second reads
        self._state_ids_t = torch.tensor(self._state_ids, device=self.device)
        self._inv_freq = self._lm.rotary_emb.inv_freq
        self._system_ids = self._encode(P.render_message("system", P.SYSTEM_PROMPT))
        self._prefix_ids = self._encode(P.ASSISTANT_PREFIX)
        self._closing_ids = self._encode(P.ASSISTANT_SUFFIX)
        self._stop_ids = self._stop_token_ids()
        self._suppress = self._suppressed_mask()  # [V] bool: never generated inside an answer
        self._state_kernel = None
        if self._cuda and "state head" not in loaded.kernels_off:  # model/kernels/selfcheck.py
            try:
                from model.kernels.state_head import state_probs

                self._state_kernel = state_probs
            except ImportError:
                pass
        self.prefill_chunk = 1024  # tokens per forward when a rebuild re-prefills the window
        self.steps = 0  # steps taken since reset()
        self.recent: deque[StepResult] = deque(maxlen=RECENT_STEPS)  # the latest StepResults only
        self.reset()

    # ------------------------------------------------------------------------------------------
    # Public API

    def reset(self) -> None:
        opts = self.opts
        cap = (opts.max_tokens + 64) if opts.max_tokens else len(self._system_ids) + 1024
        self._cache = StreamKVCache(len(self._lm.layers), capacity=cap)
        self._turns: list[_Turn] = []
        self._pending: list[int] = list(self._system_ids)  # tokens to prefill ahead of the next turn
        self._next_pos = 0
        self._t_next = 0.0
        self._asked: list[_Question] = []  # questions waiting for their turn
        self._seq = 0
        self._instruction: _Question | None = None  # the task's instruction, waiting for the next turn
        self._set_instruction()  # turn 0 carries it, like the training data
        self._active: str | None = None  # the question a rebuild puts back
        self._approximate = False
        self._broken = False  # a step failed part-way: the next one rebuilds the cache from the turns
        self._gen = self._make_generator()
        self.steps = 0
        self.recent.clear()

    def ask(self, question: str, t: float | None = None, tag: Any = None) -> str:
        """Queue ``question`` (user text, neutralised: it cannot create chat structure) for the
        turn that covers stream second ``t`` (``start <= t < end``), or the next turn when that
        one has been stepped already or ``t`` is None. A turn takes at most one question: the
        task's instruction when one is waiting, else the earliest due (by ``t``, a question asked
        with ``t=None`` counting as asked at the next turn's start; ties in the order asked);
        the others wait for the following turns. The question that enters becomes the active
        question, and its ``tag`` comes back as ``StepResult.question_tag``. Returns the
        neutralised text as it will be rendered; an empty question raises ValueError."""
        text = P.neutralize_user_text(question or "")
        if not text:
            raise ValueError("an empty question cannot be asked")
        if t is not None:
            t = float(t)
            if not math.isfinite(t):
                raise ValueError(f"a question's time must be a finite number of seconds, got {t}")
        self._seq += 1
        self._asked.append(_Question(text, t, tag, self._t_next if t is None else t, self._seq))
        return text

    def pending_questions(self) -> list[tuple[str, float | None, Any]]:
        """The asked questions still waiting, as (text, t, tag), in the order they will enter."""
        return [(q.text, q.t, q.tag) for q in sorted(self._asked, key=lambda q: (q.order, q.seq))]

    def snapshot(self) -> EngineSnapshot:
        """The conversation state now: the KV cache (copied: O(context) memory), the turns, the
        pending tokens, the waiting questions, the options and the sampler's state. ``restore``
        puts it back; the run then goes on exactly as from this point (same probabilities, same
        answers, same cache)."""
        with torch.inference_mode():
            cache = self._cache.snapshot()
        return EngineSnapshot(
            cache=cache,
            turns=tuple(replace(turn) for turn in self._turns),  # shallow: frame features are never modified
            pending=tuple(self._pending),
            next_pos=self._next_pos,
            t_next=self._t_next,
            asked=tuple(self._asked),
            seq=self._seq,
            instruction=self._instruction,
            active=self._active,
            approximate=self._approximate,
            broken=self._broken,
            opts=replace(self.opts),
            generator_state=self._gen.get_state() if self._gen is not None else None,
            steps=self.steps,
            recent=tuple(self.recent),
        )

    def restore(self, snap: EngineSnapshot) -> None:
        """Return to ``snap``: questions asked and steps taken since are forgotten."""
        with torch.inference_mode():  # the buffers are inference tensors
            self._cache.restore(snap.cache)
        self._turns = [replace(turn) for turn in snap.turns]
        self._pending = list(snap.pending)
        self._next_pos = snap.next_pos
        self._t_next = snap.t_next
        self._asked = list(snap.asked)
        self._seq = snap.seq
        self._instruction = snap.instruction
        self._active = snap.active
        self._approximate = snap.approximate
        self._broken = snap.broken
        self.opts = replace(snap.opts)
        self._gen = self._make_generator()
        if snap.generator_state is not None and self._gen is not None:
            self._gen.set_state(snap.generator_state)
        self.steps = snap.steps
        self.recent.clear()
        self.recent.extend(snap.recent)

    def update(self, options: EngineOptions) -> list[str]:
        """Apply ``options`` between steps. Validates them (ValueError: nothing applied), then
        applies every changed field named in ``MID_RUN_OPTIONS``: a new task (or target) puts
        its instruction on the next user turn, a new seed remakes the sampling generator.
        Returns the names of the changed fields that cannot change mid-run (``fps``), which are
        NOT applied: make a new engine for those."""
        options = self._fit_window(options)
        options.validate()
        old = self.opts
        changed = [f.name for f in fields(EngineOptions) if getattr(options, f.name) != getattr(old, f.name)]
        new = replace(old, **{n: getattr(options, n) for n in changed if n in MID_RUN_OPTIONS})
        new.validate()
        self.opts = new
        if new.seed != old.seed:
            self._gen = self._make_generator()
        if (new.task, new.task_target) != (old.task, old.task_target):
            self._set_instruction()
        return [n for n in changed if n not in MID_RUN_OPTIONS]

    def _fit_window(self, options: EngineOptions) -> EngineOptions:
        """``options`` with the window the model keeps (``catalog.window_turns``: the demo's is shorter)."""
        turns = window_turns(options.max_turns, bool(getattr(self.loaded, "is_demo", False)))
        if turns == options.max_turns:
            return options
        keep = None if options.keep_turns is None else min(options.keep_turns, turns)
        return replace(options, max_turns=turns, keep_turns=keep)

    def set_options(self, **changes: Any) -> list[str]:
        """``update`` with keyword changes to the current options (unknown names: ValueError).
        Returns the changed names that cannot change mid-run and were not applied."""
        names = {f.name for f in fields(EngineOptions)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown engine option(s): {', '.join(sorted(unknown))}")
        return self.update(replace(self.opts, **changes))

    def _set_instruction(self) -> None:
        """The current task's instruction waits for the next user turn (replacing one still waiting)."""
        text = task_instruction(self.opts.task, self.opts.task_target)
        self._instruction = _Question(text, None, None, -math.inf, 0, instruction=True) if text else None

    def _due_question(self, end: float) -> _Question | None:
        """What the turn ending at ``end`` carries: the waiting instruction, else the earliest due question."""
        if self._instruction is not None:
            return self._instruction
        due = [q for q in self._asked if q.t is None or q.t < end]
        return min(due, key=lambda q: (q.order, q.seq)) if due else None

    def _consume(self, entry: _Question | None) -> None:
        if entry is None:
            return
        if entry is self._instruction:
            self._instruction = None
        else:
            self._asked = [q for q in self._asked if q is not entry]

    def messages(self) -> list[dict]:
        """The kept conversation in stream format (<image> placeholders), system first."""
        out = [{"role": "system", "content": P.SYSTEM_PROMPT}]
        for turn in self._turns:
            out.append({"role": "user", "content": P.user_turn_content(turn.start, turn.end, turn.question)})
            out.append({"role": "assistant", "content": P.assistant_turn_content(turn.state, turn.text)})
        return out

    @property
    def kernel_path(self) -> str:
        path = self.loaded.kernel_path
        return f"{path}+triton-state-head" if self._state_kernel is not None else path

    @property
    def exact(self) -> bool:
        """False once an evict-mode drop has made the context an approximation."""
        return not self._approximate

    def cache_token_ids(self) -> list[int]:
        """The conversation's token ids: the cache plus the closing tokens waiting for the next prefill."""
        return self._cache.ids + self._pending

    def cache_nbytes(self) -> int:
        return self._cache.nbytes()

    def step(
        self,
        frame: np.ndarray,
        t: float | None = None,
        on_token: Callable[[str], None] | None = None,
        force: str | None = None,
    ) -> StepResult:
        """Consume one HxWx3 uint8 RGB frame for the interval <t s-(t + 1/fps) s>.

        ``force`` (one of protocol.STATE_TOKENS) overrides the decision: the turn gets that state
        (and with </Response> an answer) whatever the probabilities say, which are still computed
        and returned. Benchmarks use it for the release's forced </Silence> before a question and
        for an answer demanded on the question's turn.

        If it raises (out of memory, a bad frame), the conversation so far is kept (``messages()``
        is unchanged): the failed second is not added, its question waits for the next step, and
        the next step rebuilds the cache from the kept turns.
        """
        if force is not None and force not in P.STATE_TOKENS:
            raise ValueError(f"force must be one of {P.STATE_TOKENS} or None, got {force!r}")
        active = self._active
        with torch.inference_mode():
            try:
                return self._step(frame, t, on_token, force)
            except Exception:
                self._broken = True
                self._active = active
                raise

    # ------------------------------------------------------------------------------------------
    # One step

    def _step(
        self, frame: np.ndarray, t: float | None, on_token: Callable[[str], None] | None, force: str | None
    ) -> StepResult:
        opts = self.opts
        timings = dict.fromkeys(("vision", "prefill", "decision", "decode", "rebuild"), 0.0)
        t0 = self._clock()
        start = self._t_next if t is None else float(t)
        end = start + 1.0 / opts.fps
        self._t_next = end
        entry = self._due_question(end)  # consumed only once the step succeeded
        question = entry.text if entry else None
        if question:
            self._active = question

        # Vision tower on the one new frame.
        fi = preprocess_frame(self.loaded.processor, frame)
        feats = self._vision(fi.pixel_values, fi.image_grid_thw)  # [n_tokens, H]
        t1 = self._clock()
        timings["vision"] = (t1 - t0) * 1e3
        turn = _Turn(start, end, question, feats, tuple(int(x) for x in fi.image_grid_thw[0].tolist()))

        rebuilt = False
        kept = self._turns  # the window's turns; self._turns changes only once the step succeeded
        user_ids = self._user_ids(turn)
        over = self._over_budget(len(user_ids))
        if over or self._broken:
            if opts.window_mode == "rebuild" or self._broken:
                hidden, kept = self._rebuild(turn, drop_oldest=over)
                rebuilt = True
            else:
                kept = self._evict(turn)
                user_ids = self._user_ids(turn)  # the question may have moved onto it
        if not rebuilt:
            hidden = self._prefill_turn(self._pending, turn, user_ids)
        t2 = self._clock()
        timings["rebuild" if rebuilt else "prefill"] = (t2 - t1) * 1e3

        probs = self._state_probs(hidden)  # the step's one host sync
        state = force if force is not None else self._decide(probs)
        t3 = self._clock()
        timings["decision"] = (t3 - t2) * 1e3

        token_ids: list[int] = []
        truncated = False
        if state == P.RESPONSE:
            turn.text, token_ids, truncated = self._answer(on_token)
        else:
            self._pending = [self._id_of[state], *self._closing_ids]
        turn.state = state
        self._turns = [*kept, turn]
        t4 = self._clock()
        timings["decode"] = (t4 - t3) * 1e3
        timings["total"] = (t4 - t0) * 1e3

        self._consume(entry)
        result = StepResult(
            t=start,
            end=end,
            state=state,
            probs=dict(zip(P.STATE_TOKENS, probs, strict=True)),
            text=turn.text,
            question=turn.question,
            timings=timings,
            context_turns=len(self._turns),
            context_tokens=self._cache.length + len(self._pending),
            rebuilt=rebuilt,
            n_answer_tokens=len(token_ids),
            truncated=truncated,
            token_ids=token_ids,
            approximate=self._approximate,
            question_tag=None if entry is None or entry.instruction else entry.tag,
        )
        self.steps += 1
        self.recent.append(result)
        return result

    def _decide(self, probs: list[float]) -> str:
        p_silence, p_standby, p_response = probs
        thr = self.opts.threshold
        if thr is None:
            return P.STATE_TOKENS[int(np.argmax(probs))]
        if p_response >= thr:
            return P.RESPONSE
        return P.SILENCE if p_silence >= p_standby else P.STANDBY

    # ------------------------------------------------------------------------------------------
    # Forward pieces

    def _vision(self, pixel_values: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        feats = hf.image_features(self._base.model, pixel_values.to(self.device), grid.to(self.device))
        return feats.to(self._embed.weight.dtype)  # [n_tokens, H]

    def _prefill(self, ids: list[int], turns: list[_Turn]) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward ``ids`` onto the cache; ``turns`` own the images in ``ids``, in order.

        Long pieces (a window rebuild) go through in chunks of ``prefill_chunk`` tokens: the
        same causal computation, but the mask and activations stay [chunk, context] instead
        of [context, context]. Returns (final-norm hidden states of the last chunk [1, c, H],
        positions of the whole piece [3, q] on the CPU).
        """
        grids = [t.grid for t in turns]
        pos, next_pos = mrope_positions(ids, self._image_id, grids, self._merge, self._next_pos)
        ids_t = torch.tensor(ids, device=self.device).unsqueeze(0)  # [1, q]
        x = self._embed(ids_t)  # [1, q, H]
        if turns:
            feats = torch.cat([t.feats for t in turns]) if len(turns) > 1 else turns[0].feats  # [n_img, H]
            x = x.masked_scatter((ids_t == self._image_id).unsqueeze(-1), feats)
        position_ids = pos.to(self.device).unsqueeze(1)  # [3, 1, q]
        for a in range(0, len(ids), self.prefill_chunk):
            b = min(len(ids), a + self.prefill_chunk)
            hidden = self._forward(x[:, a:b], position_ids[:, :, a:b])
            self._cache.advance(ids[a:b])
        self._next_pos = next_pos
        return hidden, pos

    def _forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """x: [1, q, H] embeddings after the cache; position_ids: [3, 1, q]. Returns [1, q, H]."""
        return hf.text_forward(self._lm, x, position_ids, self._cache)

    def _prefill_turn(self, lead: list[int], turn: _Turn, user_ids: list[int]) -> torch.Tensor:
        """Prefill [lead tokens, the turn's user block, assistant prefix]; returns hidden [1, q, H]."""
        ids = lead + user_ids
        turn.cache_start = self._cache.length + len(lead)
        turn.pos_start = self._next_pos + len(lead)  # lead tokens are text: one position each
        hidden, _ = self._prefill(ids, [turn])
        self._pending = []
        return hidden

    def _state_probs(self, hidden: torch.Tensor) -> list[float]:
        """P(Silence, Standby, Response) from the last position's final-norm hidden state."""
        if self.opts.full_vocab_head:  # variant (c): what a plain forward computes
            logits = F.linear(hidden[0], self._head)  # [q, V]
            return torch.softmax(logits[-1, self._state_ids].float(), -1).tolist()
        h = hidden[0, -1]  # [H]
        if self._state_kernel is not None and h.is_cuda:
            try:  # one Triton launch reading the three rows in place
                _, p = self._state_kernel(h, self._head, self._state_ids_t)
                return p.float().tolist()
            except Exception as e:  # noqa: BLE001 - any kernel failure falls back to the torch path for good
                log.warning("Triton state head failed (%s); using the torch path", e)
                self._state_kernel = None
        return torch.softmax(F.linear(h, self._w_state).float(), -1).tolist()  # [3]

    # ------------------------------------------------------------------------------------------
    # Answer decoding

    def _answer(self, on_token: Callable[[str], None] | None) -> tuple[str, list[int], bool]:
        """Decode after </Response> until <|im_end|> or the cap; returns (text, token ids, truncated).

        Leaves the cache + pending tokens equal to the rendered turn "</Response> text<|im_end|>\\n":
        when the generated ids are not the tokenizer's own encoding of the final text, the
        cache is cut back to their common prefix and the canonical ids ride with the next prefill.
        """
        mark, mark_pos = self._cache.length, self._next_pos
        fed: list[int] = []
        generated: list[int] = []
        stopped = False
        stream = _TextStream(self._tok, on_token)
        token = self._id_of[P.RESPONSE]
        for _ in range(self.opts.max_answer_tokens):
            hidden, _ = self._prefill([token], [])
            fed.append(token)
            logits = F.linear(hidden[0, -1], self._head).float()  # [V]
            logits.masked_fill_(self._suppress, -math.inf)
            nxt = self._next_token(logits)
            if nxt in self._stop_ids:
                stopped = True
                break
            generated.append(nxt)
            stream.push(generated)
            token = nxt
        text = stream.finish(generated)
        content = [self._id_of[P.RESPONSE], *(self._encode(" " + text) if text else [])]
        keep = 0
        while keep < len(fed) and keep < len(content) and fed[keep] == content[keep]:
            keep += 1
        if keep < len(fed):  # generated ids differ from the canonical encoding: cut back
            self._cache.truncate(mark + keep)
            self._next_pos = mark_pos + keep
        self._pending = content[keep:] + self._closing_ids
        return text, generated, not stopped

    def _next_token(self, logits: torch.Tensor) -> int:
        opts = self.opts
        if not opts.do_sample:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / opts.temperature, -1)
        sorted_p, order = torch.sort(probs, descending=True)
        outside = sorted_p.cumsum(-1) - sorted_p > opts.top_p  # keep the smallest set reaching top_p
        sorted_p = sorted_p.masked_fill(outside, 0.0)
        pick = torch.multinomial(sorted_p, 1, generator=self._gen)
        return int(order[pick])

    # ------------------------------------------------------------------------------------------
    # Window

    def _over_budget(self, new_turn_tokens: int) -> bool:
        opts = self.opts
        if len(self._turns) + 1 > opts.max_turns:
            return True
        if opts.max_tokens is not None:
            need = self._cache.length + len(self._pending) + new_turn_tokens + self._reserve()
            return need > opts.max_tokens
        return False

    def _reserve(self) -> int:
        """Tokens kept free for this turn's answer: the state, the answer cap, the closing."""
        return 1 + self.opts.max_answer_tokens + len(self._closing_ids)

    def _turn_spans(self) -> list[int]:
        starts = [t.cache_start for t in self._turns] + [self._cache.length + len(self._pending)]
        return [b - a for a, b in zip(starts, starts[1:], strict=False)]

    def _rebuild(self, new_turn: _Turn, drop_oldest: bool = True) -> tuple[torch.Tensor, list[_Turn]]:
        """Exact: re-render system + kept turns (active question on the first) + the new turn, one forward.
        ``drop_oldest=False`` (recovery after a failed step) keeps every turn.

        Returns the hidden states and the kept turns, re-rendered as COPIES: ``self._turns`` is
        left alone (the step puts the copies there once it succeeded), so a failure anywhere in
        the step leaves ``messages()`` unchanged."""
        opts = self.opts
        drop = max(0, len(self._turns) - (opts.kept_turns - 1)) if drop_oldest else 0
        while True:
            kept = [replace(turn) for turn in self._turns[drop:]]  # shallow: the features are shared
            if self._active and drop > 0:
                (kept[0] if kept else new_turn).question = self._active
            ids = list(self._system_ids)
            for turn in kept:
                turn.cache_start = len(ids)
                ids += self._user_ids(turn)
                ids += self._encode(P.assistant_turn_content(turn.state, turn.text)) + self._closing_ids
            new_turn.cache_start = len(ids)
            ids += self._user_ids(new_turn)
            if opts.max_tokens is None or len(ids) + self._reserve() <= opts.max_tokens or not kept:
                break
            drop += 1  # the re-rendered turns still exceed the token budget: drop one more
        if opts.max_tokens is not None and len(ids) + self._reserve() > opts.max_tokens:
            log.warning("max_tokens=%d is too small for even one turn (%d tokens)", opts.max_tokens, len(ids))
        self._cache.clear()
        self._next_pos = 0
        self._pending = []
        hidden, pos = self._prefill(ids, [*kept, new_turn])
        for turn in (*kept, new_turn):
            turn.pos_start = int(pos[0, turn.cache_start])
        self._broken = False
        self._approximate = False  # recomputed from the rendered turns: exact again
        return hidden, kept

    def _evict(self, new_turn: _Turn) -> list[_Turn]:
        """APPROXIMATE: cut the oldest turns' cache entries out, re-rotating the kept keys so their
        positions follow the system prompt's; the active question is re-asked on the new turn.
        Returns the kept turns as copies (``self._turns`` is left for the step to replace; after
        a failure the next step rebuilds the cache from it)."""
        opts = self.opts
        drop = max(0, len(self._turns) - (opts.kept_turns - 1))
        if opts.max_tokens is not None:
            drop = max(drop, 1)
        if drop == 0 or not self._turns:
            return self._turns
        if not new_turn.question and self._active:
            new_turn.question = self._active
        if opts.max_tokens is not None:
            spans = self._turn_spans()
            room = opts.max_tokens - len(self._system_ids) - len(self._user_ids(new_turn)) - self._reserve()
            while drop < len(self._turns) and sum(spans[drop:]) > room:
                drop += 1
        first = self._turns[0]
        self._approximate = True
        if drop >= len(self._turns):  # nothing kept: also forget the last turn's pending closing
            self._cache.truncate(first.cache_start)
            self._next_pos = first.pos_start
            self._pending = []
            return []
        kept0 = self._turns[drop]
        gap, shift = kept0.cache_start - first.cache_start, kept0.pos_start - first.pos_start
        self._cache.remove(first.cache_start, kept0.cache_start, key_shift=-shift, inv_freq=self._inv_freq)
        self._next_pos -= shift
        kept = [replace(turn) for turn in self._turns[drop:]]
        for turn in kept:
            turn.cache_start -= gap
            turn.pos_start -= shift
        return kept

    # ------------------------------------------------------------------------------------------
    # Tokens

    def _encode(self, text: str) -> list[int]:
        return self._tok(text, add_special_tokens=False)["input_ids"]

    def _user_ids(self, turn: _Turn) -> list[int]:
        """The user block "<|im_start|>user\\n[question\\n]<Xs-Ys>\\n<image><|im_end|>\\n" plus the
        assistant prefix, with the image pad expanded to the frame's token count."""
        ids = self._encode(P.render_message("user", P.user_turn_content(turn.start, turn.end, turn.question)))
        i = ids.index(self._image_id)
        n = turn.grid[0] * turn.grid[1] * turn.grid[2] // (self._merge * self._merge)
        return ids[:i] + [self._image_id] * n + ids[i + 1 :] + self._prefix_ids

    def _stop_token_ids(self) -> set[int]:
        stops = {self._tok.convert_tokens_to_ids(P.IM_END)}
        end_text = self._tok.convert_tokens_to_ids(P.ENDOFTEXT)
        if isinstance(end_text, int) and end_text >= 0:
            stops.add(end_text)
        eos = getattr(getattr(self._base, "generation_config", None), "eos_token_id", None)
        stops.update([eos] if isinstance(eos, int) else list(eos or []))
        return stops

    def _suppressed_mask(self) -> torch.Tensor:
        """Special tokens (state, vision, chat markers) and the spare rows past the tokenizer's
        vocabulary never appear inside an answer; the stop tokens stay allowed."""
        vocab_rows = self._head.shape[0]
        mask = torch.zeros(vocab_rows, dtype=torch.bool)
        mask[len(self._tok) :] = True
        specials = set(self._tok.all_special_ids) | set(self._state_ids)
        specials |= {i for i, t in self._tok.added_tokens_decoder.items() if t.special}
        for i in specials - self._stop_ids:
            if 0 <= i < vocab_rows:
                mask[i] = True
        return mask.to(self.device)

    def suppressed_token_ids(self) -> list[int]:
        return torch.nonzero(self._suppress.cpu()).flatten().tolist()

    def _make_generator(self) -> torch.Generator | None:
        if self.opts.seed is None:
            return None
        return torch.Generator(device=self.device).manual_seed(self.opts.seed)

    def _clock(self) -> float:
        if self._cuda:  # timings per phase need the queued GPU work finished
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


class _TextStream:
    """Incremental detokenisation: pushes only text that cannot change any more, so the pieces
    concatenate to exactly the final stripped answer."""

    def __init__(self, tokenizer, callback: Callable[[str], None] | None) -> None:
        self._tok, self._cb, self._sent = tokenizer, callback, ""

    def _text(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def push(self, ids: list[int]) -> None:
        if self._cb is None:
            return
        text = self._text(ids).lstrip().rstrip()  # trailing space may end up stripped: hold it back
        if text.endswith("\ufffd"):  # an unfinished multi-byte character
            return
        self._emit(text)

    def finish(self, ids: list[int]) -> str:
        text = self._text(ids).strip()
        if self._cb is not None:
            self._emit(text)
        return text

    def _emit(self, text: str) -> None:
        if text.startswith(self._sent) and len(text) > len(self._sent):
            self._cb(text[len(self._sent) :])
            self._sent = text

"""The LoRA trainer: one plain loop for one CPU, one GPU or many (accelerate).

Each micro-batch is one window (the release trains with batch 1). Per optimiser step every
process takes ``accum`` windows; the loss of each is divided by the labelled-token count of all
windows of the step on all processes (``num_items``), so accumulation and data parallelism give
the gradient of one big batch. Data order is a seeded permutation per epoch, cut into equal
shares per process, so ``--resume`` continues exactly where the last checkpoint left off.

Events (dicts with an ``"event"`` key) go to ``on_event``: start, issue, step, eval, checkpoint,
done, stopped, error. The command line prints them; the app's training process forwards them over
a queue. Only the main process writes the output folder; what it saves (checkpoints, the best held-out
step, the final adapter) is model/train/saving.py's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model import hf_compat as hf
from model import protocol as P
from model.catalog import window_turns
from model.device import is_out_of_memory
from model.frames import MIN_PIXELS
from model.interrupt import StopOnInterrupt
from model.paths import data_dir
from model.train import checkpoint as ckpt
from model.train import sharding
from model.train.config import TrainConfig, auto_lr, plan, with_recipe
from model.train.data import (
    DataError,
    DataIssue,
    Encoded,
    Encoder,
    WindowDataset,
    attach_frames,
    choose_heldout,
    cut_windows,
    heldout_warning,
    load_clips,
    video_names,
)
from model.train.loss import loss_on_selected, select_targets
from model.train.run_folder import (  # noqa: F401 - TrainingError, prepare_config: imported from here too
    RESUME_OVERRIDES,
    TrainingError,
    _append_jsonl,
    _truncate_metrics,
    hold_run_folder,
    prepare_config,
    write_settings,
)
from model.train.saving import Saver, load_trained_state, plain_parallel
from model.train.video import FrameCache

log = logging.getLogger(__name__)

EventFn = Callable[[dict[str, Any]], None]
# Without a held-out split the evaluation scores this many training windows (a fixed, seeded subset);
# a held-out split (at most TrainConfig.max_heldout videos) is scored in full.
EVAL_WINDOWS = 64


class OutOfMemory(TrainingError):
    """Out of memory during a step; the message names the settings to lower and the checkpoint kept."""


@dataclass
class TrainResult:
    status: str  # "done" | "stopped"
    step: int
    total_steps: int
    out: Path
    checkpoint: Path | None
    metrics: dict[str, Any] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)
    main_process: bool = True  # False in the other processes of a data-parallel run


def default_cache_dir() -> Path:
    return data_dir() / "frame-cache"


_is_oom = is_out_of_memory  # CUDA OutOfMemoryError, or a CPU "can't allocate memory" RuntimeError


def step_windows(step: int, n: int, steps_per_epoch: int, world: int, rank: int, accum: int, seed: int) -> list[int]:
    """Window indices this process trains on at optimiser step ``step`` (0-based). Each epoch is a
    seeded permutation, repeated cyclically to fill whole steps; process r takes its own ``accum``."""
    epoch, s = divmod(step, steps_per_epoch)
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    start = (s * world + rank) * accum
    return [order[i % n] for i in range(start, start + accum)]


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        on_event: EventFn | None = None,
        stop: threading.Event | None = None,
        progress_bar: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = with_recipe(prepare_config(config))
        self.full = self.config.recipe == "release"  # full fine-tuning: no adapter
        self.clock = clock  # training wall time, for --save-minutes (tests inject theirs)
        self.on_event = on_event
        self.stop_event = stop
        self.progress_bar = progress_bar
        self.out = Path(self.config.out)
        self.issues: list[str] = []
        self.trace = os.environ.get("STREAMO_TRAIN_TRACE")  # diagnostics of data-parallel runs

    # ------------------------------------------------------------------------------------------

    def emit(self, event: str, **data: Any) -> None:
        if self.on_event is not None and self.acc.is_main_process:
            self.on_event({"event": event, **data})

    def run(self) -> TrainResult:
        from accelerate.utils import InitProcessGroupKwargs

        from model.train.prepare import process_group_timeout

        cfg = self.config
        # Barriers wait up to hours (ranks ending their share of frame preparation apart), not NCCL's 10 minutes.
        timeout = InitProcessGroupKwargs(timeout=process_group_timeout())
        # FSDP or DeepSpeed ZeRO when accelerate's config file asks (model/train/sharding.py)
        self.acc = acc = sharding.make_accelerator(cpu=cfg.device == "cpu", kwargs_handlers=[timeout])
        torch.manual_seed(cfg.seed)
        self._load()
        self._data()
        self._setup()
        stop = StopOnInterrupt(
            self.stop_event, "Ctrl-C: finishing this step, then saving a checkpoint (press again to stop at once)"
        )
        try:
            return self._loop(stop)
        finally:
            stop.restore()
            if self._bar is not None:
                self._bar.close()
            acc.wait_for_everyone()

    # ------------------------------------------------------------------------------------------
    # Setting up

    def _load(self) -> None:
        from model.loading import load_model

        cfg, acc = self.config, self.acc
        device = str(acc.device) if cfg.device == "auto" else cfg.device
        if device.startswith("cuda") and acc.num_processes > 1:
            device = f"cuda:{acc.local_process_index}"
        precision = cfg.precision
        if self.full and precision == "auto":
            # fp32 master weights (bf16 updates of lr 1e-5 round to nothing), bf16 autocast on CUDA
            precision = "fp32"
        precision, device = sharding.load_settings(acc, precision, device)  # sharded: into CPU memory first
        threads = torch.get_num_threads()
        self.loaded = load_model(
            cfg.model,
            precision=precision,
            device=device,
            trainable=True,
            min_pixels=cfg.min_pixels or MIN_PIXELS,
            max_pixels=cfg.max_pixels,
        )
        if sharding.mode(acc) is not None:
            torch.set_num_threads(threads)  # loaded in CPU memory for the GPUs, not to run there
        self.device = self.loaded.device
        cfg.min_pixels, cfg.max_pixels = self.loaded.min_pixels, self.loaded.max_pixels
        if cfg.lr is None:
            cfg.lr = auto_lr(self._text_config().hidden_size)

    def _text_config(self) -> Any:
        config = self.loaded.model.config
        return getattr(config, "text_config", config)

    def _data(self) -> None:
        cfg, acc = self.config, self.acc
        issues: list[DataIssue] = []
        cache = FrameCache(cfg.cache_dir or default_cache_dir(), self.loaded.processor, cfg.fps, cfg.min_pixels,
                           cfg.max_pixels)  # fmt: skip
        from model.train.prepare import CacheSpec, PrepareError, prepare_cache, unique_videos

        clips, issues = load_clips(cfg.data, cfg.video_prefix, cfg.fps, live_instructions=cfg.live_instructions,
                                   skip_unannotated=cfg.skip_unannotated)  # fmt: skip
        # Each process decodes its share of what the cache lacks, with a pool (nothing when `data prepare`
        # ran); the wait comes after the decoding, never around it. One rank alone refusing for space
        # would leave the others at the barrier: the space check is for one process (and `data prepare`).
        trace = os.environ.get("STREAMO_PREPARE_TRACE")
        try:
            report = prepare_cache(unique_videos(c.video for c in clips), CacheSpec.of(cache), rank=acc.process_index,
                                   world=acc.num_processes, say=log.info, check_space=acc.num_processes == 1,
                                   trace=f"{trace}.rank{acc.process_index}.jsonl" if trace else None)  # fmt: skip
        except PrepareError as e:
            raise DataError(str(e)) from None
        cache.decoded += report.decoded  # decoded for this cache by the pool
        acc.wait_for_everyone()
        clips = attach_frames(clips, cache, issues)  # reads the cache: the frames are all there
        self.issues = [str(i) for i in issues]
        for message in self.issues:
            if acc.is_main_process and self.on_event is None:
                log.warning("%s", message)
            self.emit("issue", message=message)
        if not clips:
            raise DataError(
                "no usable training samples in "
                + ", ".join(cfg.data)
                + (f" ({len(issues)} problems above)" if issues else "")
            )
        train, held = choose_heldout(clips, cfg)
        encoder = Encoder(self.loaded.tokenizer, self.loaded.processor, cfg.min_pixels, cfg.max_pixels)
        turns = window_turns(cfg.max_turns, self.loaded.is_demo)  # the window Live runs this model with
        self.train_set = WindowDataset([w for c in train for w in cut_windows(c, turns)], cache, encoder)
        eval_windows = [w for c in (held or train) for w in cut_windows(c, turns)]
        if not held and len(eval_windows) > EVAL_WINDOWS:
            eval_windows = random.Random(cfg.seed).sample(eval_windows, EVAL_WINDOWS)
        self.eval_set = WindowDataset(eval_windows, cache, encoder)
        self.eval_split = "heldout" if held else "train"
        self.summary = {
            "train_clips": len(train),
            "heldout_clips": len(held),
            "train_windows": len(self.train_set),
            "train_turns": self.train_set.turns(),
            "window_turns": turns,
            "eval_split": self.eval_split,
            "frames_decoded": cache.decoded,
            "heldout_videos": video_names(held),
            # Said only where held-out clips were asked for (--holdout 0 chose to train on all).
            "heldout_warning": heldout_warning(len({c.video for c in held}), len({c.video for c in clips}))
            if cfg.holdout > 0 or cfg.heldout
            else None,
        }
        if cfg.early_stop and not held:
            message = (f"--early-stop {cfg.early_stop}: no clip is held out (too few videos for the share asked), "
                       "so there is no held-out loss to watch; training runs all its steps")  # fmt: skip
            self.issues.append(message)
            self.emit("issue", message=message)
        if not held and cfg.holdout > 0 and acc.is_main_process:
            log.info("too few videos for a held-out split; state accuracy is measured on training clips")

    def _setup(self) -> None:
        from transformers import get_cosine_schedule_with_warmup

        from model.train.lora import add_lora, trainable_parameters

        cfg, acc = self.config, self.acc
        world = acc.num_processes
        self.plan = plan(cfg, len(self.train_set), world)
        cfg.accum = self.plan.accum  # saved resolved: a resumed run keeps its batch
        self.steps_per_epoch, self.total = self.plan.steps_per_epoch, self.plan.total
        self.save_every, self.eval_every = self.plan.save_every, self.plan.eval_every
        gc = cfg.gradient_checkpointing
        gc_reason = "--gradient-checkpointing" if gc else "--no-gradient-checkpointing"
        if gc is None:
            from model.train.lora import GC_MIN_PARAMETERS, auto_gradient_checkpointing

            gc = auto_gradient_checkpointing(self.loaded.model)
            gc_reason = f"automatic: {'at least' if gc else 'under'} {GC_MIN_PARAMETERS / 1e6:g}M parameters"
        if self.full:
            from model.train.lora import full_finetune

            model = full_finetune(self.loaded, gc)
            if self.device.type == "cuda":  # frozen vision tower in bf16 under autocast
                for p in model.parameters():
                    if not p.requires_grad:
                        p.data = p.data.to(torch.bfloat16)
        else:
            model = add_lora(self.loaded, cfg.rank, cfg.alpha, cfg.dropout, gc, merger=cfg.lora_merger)
        self.start_step = 0
        latest = ckpt.latest_checkpoint(self.out) if cfg.resume else None
        if latest is not None:
            load_trained_state(model, ckpt.load_adapter_state(latest), self.full)
            self.start_step = latest.step
        params = trainable_parameters(model)
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, cfg.beta2))
        scheduler = get_cosine_schedule_with_warmup(optimizer, round(cfg.warmup * self.total), self.total)
        if latest is not None and not ckpt.restore_training_state(latest, optimizer, scheduler):
            log.warning("%s has no optimiser state (sharded run); the optimiser starts afresh", latest.path)
        sharding.before_prepare(acc, cfg.accum, cfg.max_grad_norm)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.scheduler = scheduler
        self.params = sharding.trainable_after_prepare(acc, self.model, params)
        if sharding.mode(acc) is not None:
            self.device = acc.device  # the shards' device (the base was loaded into CPU memory)
        self.saver = Saver(acc=acc, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                           loaded=self.loaded, config=cfg, plan=self.plan, out=self.out, full=self.full,
                           device=self.device, eval_split=self.eval_split, start_step=self.start_step,
                           summary=self.summary, emit=self.emit, clock=self.clock)  # fmt: skip
        self.image_id = self.loaded.tokenizer.convert_tokens_to_ids(P.IMAGE_PAD)
        self.state_ids = torch.tensor(self.loaded.state_ids, device=self.device)
        self.last_checkpoint = latest
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            write_settings(self.out, self.config)
            _truncate_metrics(self.out / "metrics.jsonl", self.start_step)
        self._bar = None
        if self.progress_bar and acc.is_main_process:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total, initial=self.start_step, unit="step", dynamic_ncols=True, desc="training"
            )
        trainable = sum(p.numel() for p in params)
        what = ("full fine-tuning of the language model and the merger, vision tower frozen (--recipe release)"
                if self.full else f"LoRA rank {cfg.rank}" + (" with the merger" if cfg.lora_merger else ""))  # fmt: skip
        lines = [
            *self.plan.lines(),
            f"{what}; lr {cfg.lr:.3g}, weight decay {cfg.weight_decay:g}, betas (0.9, {cfg.beta2:g}); "
            f"gradient checkpointing {'on' if gc else 'off'} ({gc_reason})",
            self._heldout_line(),
            *self._memory_lines(),
        ]
        if note := sharding.mode_note(acc):
            lines.insert(0, note)
        if self.summary["window_turns"] != cfg.max_turns:  # the demo: Live keeps its context shorter
            lines.append(f"windows of {self.summary['window_turns']} turns, not {cfg.max_turns}: "
                         "the window Live keeps for this model")  # fmt: skip
        if acc.is_main_process and self.on_event is None:
            for line in lines:
                log.info("%s", line)
        self.emit(
            "start",
            plan=lines,
            accum=self.plan.accum,
            effective_batch=self.plan.batch,
            gradient_checkpointing=gc,
            total_steps=self.total,
            start_step=self.start_step,
            steps_per_epoch=self.steps_per_epoch,
            lr=cfg.lr,
            processes=world,
            trainable_parameters=trainable,
            device=str(self.device),
            precision=self.loaded.precision,
            **self.summary,
        )

    def _heldout_line(self) -> str:
        cfg, s = self.config, self.summary
        if self.eval_split != "heldout":
            return f"no held-out split: evaluation scores {len(self.eval_set)} training windows"
        why = ("--heldout" if cfg.heldout else
               f"{cfg.holdout:.0%} of the videos, at least {cfg.min_heldout}, at most {cfg.max_heldout}")  # fmt: skip
        return (f"held out {s['heldout_clips']} clips ({len(s['heldout_videos'])} videos; {why}), "
                f"all {len(self.eval_set)} windows scored at each evaluation")  # fmt: skip

    def _memory_lines(self) -> list[str]:
        """Memory of every process after loading (each GPU's own), gathered to the main process."""
        from model.device import memory_text

        mine = f"process {self.acc.process_index} on {self.device}: {memory_text(self.device)}"
        if self.device.type == "cuda":
            free, total = torch.cuda.mem_get_info(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / 1024**3
            mine += f", peak {peak:.1f} GB, {free / 1024**3:.1f} of {total / 1024**3:.0f} GB free"
        if self.acc.num_processes == 1:
            return [f"memory: {mine}"]
        from accelerate.utils import gather_object

        return [f"memory: {line}" for line in gather_object([mine])]

    # ------------------------------------------------------------------------------------------
    # The loop

    def _loop(self, stop: StopOnInterrupt) -> TrainResult:
        cfg, acc = self.config, self.acc
        step = self.start_step
        started, first = time.perf_counter(), step
        metrics: dict[str, Any] = {}
        early = self.saver.early_stop_rule()
        early_stopped: dict[str, int] | None = None
        self.saver.saved_at = self.clock()  # --save-minutes counts training time since the last save
        while step < self.total:
            if self._stop_agreed(stop):
                self.last_checkpoint = self.saver.save(step)
                self.emit("stopped", step=step, total_steps=self.total, checkpoint=str(self._ckpt_path()))
                return self._result("stopped", step, metrics)
            indices = step_windows(step, len(self.train_set), self.steps_per_epoch, acc.num_processes,
                                   acc.process_index, cfg.accum, cfg.seed)  # fmt: skip
            lr = self.scheduler.get_last_lr()[0]
            try:
                batch = [self.train_set[i] for i in indices]
                loss, turns = self._train_step(batch)
            except Exception as e:
                if not _is_oom(e):
                    raise
                raise self._oom(step, indices, e) from None
            step += 1
            record: dict[str, Any] = {
                "step": step,
                "epoch": round(step / self.steps_per_epoch, 4),
                "loss": loss,
                "lr": lr,
                "turns": turns,
                "tokens": sum(len(b.input_ids) for b in batch),
            }
            if self.trace:
                self._write_trace(step, indices)
            if step % self.eval_every == 0 or step == self.total:
                record[self.eval_split] = metrics = self.evaluate()
                self.emit("eval", step=step, split=self.eval_split, **metrics)
                self.saver.track_best(step, metrics)
                if self.eval_split == "heldout" and early.update(step, metrics.get("loss")):
                    early_stopped = {"step": step, "best_step": early.best_step}
            elapsed = time.perf_counter() - started
            eta = elapsed / (step - first) * (self.total - step)
            record["elapsed_s"] = round(elapsed, 3)
            if acc.is_main_process:
                _append_jsonl(self.out / "metrics.jsonl", record)
            self.emit("step", step=step, total_steps=self.total, loss=loss, lr=record["lr"], eta_s=eta,
                      elapsed_s=elapsed)  # fmt: skip
            if self._bar is not None:
                self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{record['lr']:.2e}", refresh=False)
                self._bar.update(1)
            if early_stopped is not None:
                log.info("held-out loss not lower for %d evaluations since step %d: stopping early at step %d",
                         cfg.early_stop, early.best_step, step)  # fmt: skip
                self.summary["early_stopped"] = early_stopped
                break
            if (step % self.save_every == 0 or self.saver.minutes_up()) and step < self.total:
                self.last_checkpoint = self.saver.save(step)
        self.last_checkpoint = self.saver.save(step)
        self.saver.save_final(step, metrics)
        self.emit("done", step=step, total_steps=self.total, adapter=str(self.out), metrics=metrics,
                  selected=self.summary.get("selected"), early_stopped=early_stopped)  # fmt: skip
        return self._result("done", step, metrics)

    def _train_step(self, batch: list[Encoded]) -> tuple[float, int]:
        """One optimiser step over this process's windows; returns (the step's loss, turns seen)."""
        acc = self.acc
        self.model.train()
        picks = [select_targets(b.labels) for b in batch]
        num_items = torch.tensor(float(sum(len(pos) for pos, _ in picks)), device=self.device)
        if acc.num_processes > 1:
            num_items = acc.reduce(num_items, reduction="sum")
        # DDP averages gradients over processes; scaling by the process count makes the result the
        # gradient of (sum of weighted CE over all processes) / (all labelled tokens).
        scale = float(acc.num_processes)
        total = 0.0
        for k, (enc, (pos, tgt)) in enumerate(zip(batch, picks, strict=True)):
            sync = contextlib.nullcontext() if k == len(batch) - 1 else acc.no_sync(self.model)
            with sync:
                logits = self._forward(self.model, enc, pos)
                loss = loss_on_selected(logits, tgt.to(self.device), self.state_ids, self.config.loss,
                                        self.config.gamma, num_items) * scale  # fmt: skip
                acc.backward(loss * sharding.micro_batch(acc, k == len(batch) - 1, len(batch)))
            total += float(loss.detach()) / scale
        if self.trace:  # the synced gradients, before clipping, for the data-parallel test
            self._grad_sq = float(sum(sharding.whole(p.grad).double().square().sum() for p in self.params
                                      if p.grad is not None))  # fmt: skip
        if self.config.max_grad_norm > 0:
            acc.clip_grad_norm_(sharding.clip_parameters(acc, self.model, self.params), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if acc.num_processes > 1:
            total = float(acc.reduce(torch.tensor(total, device=self.device), reduction="sum"))
        return total, sum(b.turns for b in batch)

    def _forward(self, model: Any, enc: Encoded, positions: torch.Tensor) -> torch.Tensor:
        """Logits [N, V] at ``positions`` only (a 152k vocabulary makes all of them expensive)."""
        ids = enc.input_ids.to(self.device).unsqueeze(0)  # [1, T]
        autocast = self.full and self.device.type == "cuda"  # fp32 master weights, bf16 compute
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            out = hf.vlm_forward(model, ids, enc.pixel_values.to(self.device), enc.image_grid_thw.to(self.device),
                                 self.image_id, logits_to_keep=positions.to(self.device))  # fmt: skip
        return out.logits[0].float() if autocast else out.logits[0]

    # ------------------------------------------------------------------------------------------
    # Held-out evaluation (teacher forced: one forward per window)

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Per-class state accuracy (argmax over the three state rows, the engine's rule) and the loss
        on the evaluation windows, shared out over the processes and summed."""
        acc = self.acc
        model = self.acc.unwrap_model(self.model) if plain_parallel(self.acc) else self.model
        model.eval()  # unwrapped: DDP would sync buffers on every forward, and shares are uneven
        n_cls = len(P.STATE_TOKENS)
        counts = torch.zeros(2 * n_cls + 2, device=self.device)  # correct[3], total[3], loss sum, items
        shares = sharding.eval_shares(len(self.eval_set), acc.process_index, acc.num_processes,
                                      sharding.mode(acc) is not None)  # fmt: skip
        for i, counted in shares:
            enc = self.eval_set[i]
            pos, tgt = select_targets(enc.labels)
            tgt = tgt.to(self.device)
            logits = self._forward(model, enc, pos)
            if not counted:  # a sharded forward is collective: every process runs as many
                continue
            counts[-2] += loss_on_selected(logits, tgt, self.state_ids, self.config.loss, self.config.gamma,
                                           num_items=1)  # fmt: skip
            counts[-1] += len(tgt)
            is_state = torch.isin(tgt, self.state_ids)
            gold = (tgt[is_state].unsqueeze(1) == self.state_ids).float().argmax(1)  # class index 0..2
            pred = logits[is_state][:, self.state_ids].argmax(1)
            for c in range(n_cls):
                counts[c] += ((gold == c) & (pred == c)).sum()
                counts[n_cls + c] += (gold == c).sum()
        if acc.num_processes > 1:
            counts = acc.reduce(counts, reduction="sum")
        counts = counts.tolist()
        per_class = {
            state: (counts[c] / counts[n_cls + c] if counts[n_cls + c] else None)
            for c, state in enumerate(P.STATE_TOKENS)
        }
        total = sum(counts[n_cls : 2 * n_cls])
        return {
            "state_accuracy": per_class,
            "state_accuracy_all": sum(counts[:n_cls]) / total if total else None,
            "loss": counts[-2] / counts[-1] if counts[-1] else None,
            "windows": len(self.eval_set),
        }

    # ------------------------------------------------------------------------------------------
    # Stopping and errors (saving: model/train/saving.py)

    def _stop_agreed(self, stop: StopOnInterrupt) -> bool:
        """Every process stops at the same step boundary."""
        flag = torch.tensor(1.0 if stop.is_set() else 0.0, device=self.device)
        if self.acc.num_processes > 1:
            flag = self.acc.reduce(flag, reduction="sum")
        return bool(flag.item() > 0)

    def _ckpt_path(self) -> Path | None:
        return self.last_checkpoint.path if self.last_checkpoint is not None else None

    def _oom(self, step: int, indices: list[int], error: BaseException) -> OutOfMemory:
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        windows = [self.train_set.windows[i] for i in indices]
        biggest = max(windows, key=lambda w: w.turns)
        kept = self._ckpt_path()
        message = (
            f"out of memory at step {step + 1} ({biggest.key}: {biggest.turns} turns). Lower --max-turns "
            f"(now {cfg.max_turns}) or --max-pixels (now {cfg.max_pixels}), then continue with --resume; "
            f"or start again with a smaller --rank (now {cfg.rank})"
            + (" or with gradient checkpointing" if not cfg.gradient_checkpointing else "")
            + (f". The last checkpoint is kept: {kept}" if kept else ". No checkpoint was written yet")
            + f". ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
        )
        self.emit("error", kind="oom", message=message, checkpoint=str(kept) if kept else None)
        return OutOfMemory(message)

    def _write_trace(self, step: int, indices: list[int]) -> None:
        """One line per step and process: the windows trained on, a digest of the synced gradients
        and of the parameters after the step, for the data-parallel test."""
        params = torch.cat([sharding.whole(p.detach()).float().flatten().cpu() for p in self.params])
        record = {
            "rank": self.acc.process_index,
            "step": step,
            "windows": [self.train_set.windows[i].key for i in indices],
            "grad_sq": self._grad_sq,
            "param_sum": float(params.double().sum()),
            "param_sq": float(params.double().square().sum()),
        }
        _append_jsonl(Path(f"{self.trace}.rank{self.acc.process_index}.jsonl"), record)

    def _result(self, status: str, step: int, metrics: dict[str, Any]) -> TrainResult:
        return TrainResult(
            status, step, self.total, self.out, self._ckpt_path(), metrics, self.issues, self.acc.is_main_process
        )


def train(
    config: TrainConfig,
    on_event: EventFn | None = None,
    stop: threading.Event | None = None,
    progress_bar: bool = False,
) -> TrainResult:
    """Train a LoRA adapter as ``config`` says; see the module docstring. The output folder is checked and
    locked first (``hold_run_folder``): a second run into it is refused while this one writes."""
    with hold_run_folder(config):
        return Trainer(config, on_event, stop, progress_bar).run()

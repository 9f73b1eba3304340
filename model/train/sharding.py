"""FSDP and DeepSpeed ZeRO under the trainer, as accelerate's own config file asks for them
(``accelerate launch --config_file configs/accelerate/fsdp.yaml ...``): what the trainer does
differently when the model, its gradients and its optimiser state are sharded over the processes.

- Loading: the base is loaded in bf16 (LoRA) or fp32 (``--recipe release``) into CPU memory and
  accelerate's prepare moves each shard to its GPU; 4-bit and 8-bit bases are refused (quantised
  weights are not sharded, so there is nothing to gain over QLoRA on one GPU per process).
- FSDP1 (``fsdp_version: 1``) gets ``use_orig_params=True``: LoRA's trainable weights sit beside
  frozen ones in the same layers. FSDP2 always keeps the original parameters.
- DeepSpeed: the micro-batch is one window, its accumulation is the trainer's ``--accum`` and its
  clipping the trainer's, all set in the DeepSpeed config before ``prepare``; the engine steps at
  the last window of a step (accelerate's sync flag) and divides the loss by the accumulation
  itself, which the trainer undoes (its loss is already normalised over the whole step).
- Every forward is collective (weights are gathered layer by layer), so every process runs the
  same number of forwards: evaluation pads the shorter shares (``eval_shares``).

accelerate enables FSDP and DeepSpeed only on GPU backends: on the CPU the same launch runs plain
data-parallel, and the trainer says so (``mode_note``). DeepSpeed is not a dependency of this
project (it builds against CUDA); without it the trainer stops with one line saying what to do.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from model.train.run_folder import TrainingError

log = logging.getLogger(__name__)

FSDP = "FSDP"
DEEPSPEED = "DeepSpeed"


def requested() -> str | None:
    """What the launch asked for: ``accelerate launch --config_file`` turns the config into these."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return DEEPSPEED
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return FSDP
    return None


def make_accelerator(**kwargs: Any) -> Any:
    """``Accelerator(**kwargs)``; a DeepSpeed config without DeepSpeed installed is one plain error."""
    from accelerate import Accelerator

    try:
        return Accelerator(**kwargs)
    except ImportError as e:
        if requested() != DEEPSPEED or "deepspeed" not in str(e).lower():
            raise
        raise TrainingError(
            "the accelerate config asks for DeepSpeed, which is not installed: `pip install deepspeed` (it "
            "builds against your CUDA; GPUs only), or launch with configs/accelerate/fsdp.yaml or --multi_gpu"
        ) from None


def mode(acc: Any) -> str | None:
    """FSDP, DEEPSPEED, or None (one process, or plain data-parallel: every process holds everything)."""
    from accelerate.utils import DistributedType

    return {DistributedType.FSDP: FSDP, DistributedType.DEEPSPEED: DEEPSPEED}.get(acc.distributed_type)


def mode_note(acc: Any) -> str | None:
    """A line for the start of a run: which sharding runs, or why the one asked for does not."""
    running, asked = mode(acc), requested()
    if running == FSDP:
        plugin = acc.state.fsdp_plugin
        return (f"sharding: FSDP{plugin.fsdp_version} over {acc.num_processes} processes, wrapping "
                f"{', '.join(plugin.transformer_cls_names_to_wrap or ['the model alone'])}")  # fmt: skip
    if running == DEEPSPEED:
        stage = acc.state.deepspeed_plugin.zero_stage
        return f"sharding: DeepSpeed ZeRO stage {stage} over {acc.num_processes} processes"
    if asked:
        return (f"warning: the accelerate config asks for {asked}, which accelerate runs on GPUs only: this run "
                f"on {acc.device} is plain data-parallel (every process holds the whole model)")  # fmt: skip
    return None


def load_settings(acc: Any, precision: str, device: str) -> tuple[str, str]:
    """(precision, device) to load the base with: under sharding bf16 (fp32 stays fp32) in CPU memory,
    shards moved to the GPUs by ``prepare``."""
    running = mode(acc)
    if running is None:
        return precision, device
    if precision in ("4bit", "8bit"):
        raise TrainingError(
            f"--precision {precision} with {running}: quantised weights are not sharded, so there is nothing to "
            f"gain; train bf16 under {running} (the default there), or QLoRA without a sharding config"
        )
    return ("bf16" if precision == "auto" else precision), "cpu"


def before_prepare(acc: Any, accum: int, max_grad_norm: float) -> None:
    """Settings ``accelerate.prepare`` reads: FSDP1's original parameters, DeepSpeed's batch."""
    running = mode(acc)
    if running == FSDP:
        plugin = acc.state.fsdp_plugin
        if plugin.fsdp_version == 1 and not plugin.use_orig_params:
            log.info("FSDP1: use_orig_params turned on (LoRA trains some weights of layers whose others are frozen)")
            plugin.use_orig_params = True
    elif running == DEEPSPEED:
        config = acc.state.deepspeed_plugin.deepspeed_config
        config["train_micro_batch_size_per_gpu"] = 1  # one window per forward, as the release trains
        config["gradient_accumulation_steps"] = accum
        config["gradient_clipping"] = max_grad_norm
        acc.gradient_accumulation_steps = accum


def micro_batch(acc: Any, last: bool, accum: int) -> float:
    """Before each window's backward: tells DeepSpeed whether this window ends the step, and returns the
    factor the loss takes (DeepSpeed divides it by the accumulation; 1 otherwise)."""
    if mode(acc) != DEEPSPEED:
        return 1.0
    acc.gradient_state._set_sync_gradients(last)  # the engine steps at the boundary only
    return float(accum)


def clip_parameters(acc: Any, model: Any, params: list[torch.nn.Parameter]) -> Any:
    """What to hand ``acc.clip_grad_norm_``: under FSDP all the model's parameters (accelerate then
    computes the norm over every shard), else the trainable ones."""
    return list(model.parameters()) if mode(acc) == FSDP else params


def trainable_after_prepare(acc: Any, model: Any, params: list[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    """The trainable parameters of the prepared model: FSDP2 replaces them with sharded ones."""
    return [p for p in model.parameters() if p.requires_grad] if mode(acc) is not None else params


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """A sharded (DTensor) parameter or gradient gathered whole; others unchanged. Collective."""
    full = getattr(tensor, "full_tensor", None)
    return full() if full is not None else tensor


def eval_shares(n: int, rank: int, world: int, sharded: bool) -> list[tuple[int, bool]]:
    """(window index, counted) for this process: windows rank, rank + world, ... Sharded, every process
    runs as many forwards as the longest share (collective forwards), repeating window 0 uncounted."""
    mine = [(i, True) for i in range(rank, n, world)]
    if sharded and n:
        longest = -(-n // world)
        mine += [(0, False)] * (longest - len(mine))
    return mine

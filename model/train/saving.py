"""What a training run saves, for its ``Trainer``: the trained weights (the adapter, or under
``--recipe release`` the language model's and merger's own), gathered from every process; the
checkpoints (every ``save_every`` steps, and after ``--save-minutes`` of training); the best
held-out step's weights in ``OUT/best/`` with the lowest loss that ``--early-stop`` carries over a
resume; and the final adapter at the top of the output folder with its card.

The final adapter is the step with the lowest held-out loss, not the last, unless ``--keep-last``
(issue 18: held-out loss fell to step 160, rose to 800). Every process takes part in a save (a
sharded run gathers its weights then); only the main process writes. The writing itself, atomic and
fsynced, is ``model.train.checkpoint``'s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from model.train import checkpoint as ckpt
from model.train.config import Plan, TrainConfig
from model.train.run_folder import TrainingError
from model.train.stopping import EarlyStop

log = logging.getLogger(__name__)


def plain_parallel(acc: Any) -> bool:
    """Single process or DDP: every process holds the whole model and optimiser."""
    from accelerate.utils import DistributedType

    plain = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
    return acc.distributed_type in plain


def load_trained_state(model: Any, state: dict[str, torch.Tensor], full: bool) -> None:
    """A checkpoint's trained weights into ``model``: the adapter, or (``full``: release recipe) the
    language model's and merger's own weights."""
    if not full:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state)
        return
    missing = set(state) - {n for n, _ in model.named_parameters()}
    if missing:
        raise TrainingError(f"the checkpoint's weights do not fit this model ({sorted(missing)[:3]} ...): "
                            "resume with the base model it was trained from")  # fmt: skip
    model.load_state_dict(state, strict=False)


@dataclass(eq=False)
class Saver:
    """The saving of one run; the trainer makes it once the model is prepared and holds it."""

    acc: Any  # accelerate's Accelerator
    model: Any  # the model as accelerate prepared it
    optimizer: Any  # accelerate's wrapper of the torch optimiser
    scheduler: Any
    loaded: Any  # model.loading.LoadedModel: the base's source and processor, for the final folder
    config: TrainConfig
    plan: Plan
    out: Path
    full: bool  # full fine-tuning (--recipe release): no adapter
    device: torch.device
    eval_split: str  # "heldout" | "train"
    start_step: int  # a resumed run's first step; 0 for a new run
    summary: dict[str, Any]  # the trainer's: the card's, and "selected" is added here
    emit: Callable[..., None]  # the trainer's events (the main process's)
    clock: Callable[[], float]  # training wall time, for --save-minutes
    saved_at: float = 0.0  # the clock at the last save (or the start of the loop)

    def minutes_up(self) -> bool:
        """--save-minutes: the main process's clock says so, for every process (they save together)."""
        if not self.config.save_minutes:
            return False
        flag = torch.tensor(float(self.clock() - self.saved_at >= 60 * self.config.save_minutes),
                            device=self.device)  # fmt: skip
        if self.acc.num_processes > 1:
            from accelerate.utils import broadcast

            flag = broadcast(flag, from_process=0)
        return bool(flag.item())

    def adapter_state(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        unwrapped = self.acc.unwrap_model(self.model)
        if self.full:  # the trained weights only (the frozen vision tower is the base's)
            from model.train.lora import is_trained_in_full

            whole = unwrapped.state_dict() if plain_parallel(self.acc) else self.acc.get_state_dict(self.model)
            seen: set[int] = set()  # tied embeddings: the LM head is the embedding, saved once
            state = {}
            for k, v in whole.items():
                if is_trained_in_full(k) and v.data_ptr() not in seen:
                    seen.add(v.data_ptr())
                    state[k] = v
            return state
        if plain_parallel(self.acc):
            return get_peft_model_state_dict(unwrapped)
        whole = self.acc.get_state_dict(self.model)  # gathered on the main process only (collective)
        return get_peft_model_state_dict(unwrapped, state_dict=whole) if self.acc.is_main_process else {}

    def save(self, step: int) -> ckpt.Checkpoint | None:
        state = self.adapter_state()  # every process takes part (sharded runs gather here)
        self.saved_at = self.clock()
        result = None
        if self.acc.is_main_process:
            plain = plain_parallel(self.acc)
            unwrapped = self.acc.unwrap_model(self.model)
            result = ckpt.save_checkpoint(
                self.out,
                step,
                state,
                self._weights_config(unwrapped),
                self.optimizer.optimizer if plain else None,  # the torch optimiser inside accelerate's wrapper
                self.scheduler if plain else None,
                {
                    "total_steps": self.plan.total,
                    "steps_per_epoch": self.plan.steps_per_epoch,
                    "processes": self.acc.num_processes,
                },
                self.config.keep_checkpoints,
            )
            self.emit("checkpoint", step=step, path=str(result.path))
        self.acc.wait_for_everyone()
        return result

    def _weights_config(self, unwrapped: Any) -> Any:
        """What a checkpoint's weights are: the peft config, or a note on the full fine-tuning."""
        if self.full:
            from model.train.lora import FullConfig

            return FullConfig(str(self.loaded.source))
        return unwrapped.peft_config["default"]

    # The best held-out step: its adapter state in OUT/best/ (atomic, survives a resume); the final
    # adapter is that step's unless --keep-last.
    def _best_dir(self) -> Path:
        return self.out / "best"

    def _best(self) -> dict[str, Any] | None:
        try:
            return json.loads((self._best_dir() / "best.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _best_so_far(self) -> float | None:
        """The lowest held-out loss recorded (a resumed run's too), the same on every process."""
        if not hasattr(self, "_best_loss"):
            best = self._best() if self.acc.is_main_process else None
            found = [best["loss"] if best else None, best["step"] if best else None]
            if self.acc.num_processes > 1:  # only the main process may see the folder (several machines)
                from accelerate.utils import broadcast_object_list

                broadcast_object_list(found)
            self._best_loss, self._best_step = found
        return self._best_loss

    def early_stop_rule(self) -> EarlyStop:
        """``--early-stop``'s rule, carrying a resumed run's lowest held-out loss and its step."""
        patience = self.config.early_stop if self.eval_split == "heldout" else 0
        if not patience or not self.start_step:
            return EarlyStop(patience)
        loss = self._best_so_far()
        return EarlyStop.resumed(patience, loss, self._best_step, self.start_step, self.plan.eval_every)

    def track_best(self, step: int, metrics: dict[str, Any]) -> None:
        loss = metrics.get("loss")  # reduced over the processes: the same everywhere
        if self.eval_split != "heldout" or loss is None or self.config.keep_last:
            return
        best = self._best_so_far()
        if best is not None and best <= loss:
            return
        self._best_loss = loss
        state = self.adapter_state()  # every process takes part (sharded runs gather here)
        if self.acc.is_main_process:
            ckpt.save_best(self.out, self._best_dir(), state, {"step": step, "loss": loss, "metrics": metrics})

    def _final_choice(self, step: int, metrics: dict[str, Any]) -> tuple[dict[str, torch.Tensor] | None, int, dict]:
        """(the best step's adapter state or None for the last, the step, its metrics)."""
        best = self._best()
        last_loss = metrics.get("loss") if isinstance(metrics, dict) else None
        if self.config.keep_last or best is None or best["step"] == step or last_loss is None:
            return None, step, metrics
        if best["loss"] >= last_loss:
            return None, step, metrics
        from safetensors.torch import load_file

        log.info("held-out loss was lowest at step %d (%.4f; step %d: %.4f): that step's adapter is kept",
                 best["step"], best["loss"], step, last_loss)  # fmt: skip
        self.summary["selected"] = {"step": best["step"], "heldout_loss": best["loss"], "last_step": step,
                                    "last_heldout_loss": last_loss}  # fmt: skip
        return load_file(str(self._best_dir() / ckpt.ADAPTER_WEIGHTS)), best["step"], best["metrics"]

    def save_final(self, step: int, metrics: dict[str, Any]) -> None:
        """The adapter at the top of the output folder, with its card: the step with the lowest
        held-out loss (``--keep-last``: the last step)."""
        from safetensors.torch import save_file

        from model.train.lora import write_card

        state = self.adapter_state()
        if not self.acc.is_main_process:
            return
        best_state, step, metrics = self._final_choice(step, metrics)
        state = best_state if best_state is not None else state
        unwrapped = self.acc.unwrap_model(self.model)
        card = write_card(self.loaded, asdict(self.config), self.summary, step, metrics, self.config.command)
        with ckpt.final_folder(self.out) as tmp:  # fsynced, moved to the top file by file, the weights last
            if self.full:  # a whole model folder (the step's trained weights on the base's frozen ones)
                if best_state is not None:
                    unwrapped.load_state_dict(best_state, strict=False)
                unwrapped.save_pretrained(str(tmp), safe_serialization=True)
            else:
                weights = {k: v.detach().contiguous().cpu() for k, v in state.items()}
                save_file(weights, str(tmp / ckpt.ADAPTER_WEIGHTS))
                unwrapped.peft_config["default"].save_pretrained(str(tmp))
            self.loaded.processor.save_pretrained(str(tmp))
            (tmp / "README.md").write_text(card, encoding="utf-8")

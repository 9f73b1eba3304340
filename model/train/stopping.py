"""Early stop: the rule the trainer applies to its held-out losses (``--early-stop N``).

Training stops after ``patience`` held-out evaluations in a row without a new lowest loss (equal is
not lower: the same rule that picks the step kept in ``OUT/best``). The best step's adapter is then
the one written, as at the end of any run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EarlyStop:
    patience: int  # evaluations without a new lowest held-out loss before stopping; 0: never stop
    best_loss: float | None = None
    best_step: int | None = None
    since: int = 0  # evaluations since the lowest

    def update(self, step: int, loss: float | None) -> bool:
        """Record the held-out ``loss`` measured at ``step``; True when training should stop here."""
        if loss is None:
            return False
        if self.best_loss is None or loss < self.best_loss:
            self.best_loss, self.best_step, self.since = loss, step, 0
        else:
            self.since += 1
        return self.patience > 0 and self.since >= self.patience

    @classmethod
    def resumed(cls, patience: int, best_loss: float | None, best_step: int | None, step: int,
                eval_every: int) -> EarlyStop:  # fmt: skip
        """The rule of a run resumed at ``step`` whose lowest loss so far was ``best_loss`` at
        ``best_step`` (evaluations every ``eval_every`` steps in between)."""
        if best_loss is None or best_step is None:
            return cls(patience)
        since = step // eval_every - best_step // eval_every
        return cls(patience, best_loss, best_step, max(0, since))

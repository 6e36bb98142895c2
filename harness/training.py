"""What model plugins that train share."""

from __future__ import annotations

import torch


class EarlyStopping:
    """Best epoch by validation accuracy, ties broken by lower validation loss; stop after ``patience``
    epochs without a better one. Keeps a copy of the best weights."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best: tuple[float, float] | None = None
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stale = 0

    def update(self, epoch: int, accuracy: float, loss: float, state: dict[str, torch.Tensor]) -> bool:
        """Record an epoch; return True when training should stop."""
        if self.best is None or (accuracy, -loss) > (self.best[0], -self.best[1]):
            self.best, self.best_epoch, self.stale = (accuracy, loss), epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in state.items()}
        else:
            self.stale += 1
        return self.stale >= self.patience

    def report(self, epochs_run: int, stopped_early: bool) -> dict:
        return {
            "epochs_run": epochs_run,
            "best_epoch": self.best_epoch if self.best is not None else epochs_run,
            "best_validation_accuracy": None if self.best is None else round(self.best[0], 6),
            "best_validation_loss": None if self.best is None else round(self.best[1], 6),
            "stopped_early": stopped_early,
        }

"""Divergence guard: an update whose loss or gradient is NaN/Inf is skipped and counted. When more
than ``max_bad_steps`` of the last ``2 * max_bad_steps`` updates of one network were skipped (G and D
counted apart: the other's finite updates do not hide a network frozen by skipped updates, and a
network whose updates are mostly but not always skipped is caught too), the weights roll back to the
last checkpoint with the learning rates scaled by ``lr_backoff`` (at most ``max_rollbacks`` times),
then the run stops with exit code 3. Checkpoints are never written from non-finite weights
(:func:`~ganforge.callbacks.checkpoint.save_checkpoint`), and the periodic ones not while skipped
updates are in that window, so a rollback returns to weights from before the trouble."""

from __future__ import annotations

import logging
import math
from collections import deque
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from torch import Tensor

from ganforge.checkpoint_file import load_weights_only
from ganforge.errors import DivergedError

log = logging.getLogger(__name__)


class DivergenceGuard(Callback):
    """Installs itself as ``pl_module.guard``; the module asks :meth:`accept` before every update.

    The check costs one host sync per update (the module otherwise syncs only to log).
    """

    def __init__(
        self, checkpoint: str, max_bad_steps: int = 20, lr_backoff: float = 0.5, max_rollbacks: int = 2
    ) -> None:
        self.checkpoint = Path(checkpoint)
        self.max_bad_steps = max_bad_steps
        self.lr_backoff = lr_backoff
        self.max_rollbacks = max_rollbacks
        self.skipped = {"discriminator": 0, "generator": 0}
        self.rollbacks: list[dict[str, Any]] = []
        self.recent = {name: self._window() for name in self.skipped}  # per network: step if skipped, else 0

    def _window(self) -> deque[int]:
        return deque(maxlen=2 * self.max_bad_steps)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        pl_module.guard = self

    def accept(self, loss: Tensor, grad_norm: Tensor, network: str, g_step: int) -> bool:
        """Whether the update of ``network`` may go ahead (loss and gradient norm finite)."""
        ok = math.isfinite(float(loss.detach() + grad_norm))  # a NaN/Inf in either makes the sum one
        self.recent[network].append(0 if ok else g_step)
        if not ok:
            self.skipped[network] += 1
        return ok

    def bad_updates(self, network: str) -> int:
        """Skipped updates of ``network`` among its last ``2 * max_bad_steps``."""
        return sum(1 for step in self.recent[network] if step)

    def frozen(self) -> str | None:
        """The network with more than ``max_bad_steps`` recent updates skipped (the worse one), or None."""
        network = max(self.recent, key=self.bad_updates)
        return network if self.bad_updates(network) > self.max_bad_steps else None

    def skipping(self) -> bool:
        """Whether a recent update of G or of D was skipped: weights a rollback should not return to."""
        return any(self.bad_updates(network) for network in self.recent)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        network = self.frozen()
        if network is None:
            return
        window, bad = self.recent[network], self.bad_updates(network)
        step = next(step for step in window if step)
        what = f"the {network} loss or gradient has been NaN/Inf since generator step {step}"
        if len(self.rollbacks) >= self.max_rollbacks or not self.checkpoint.is_file():
            tried = (
                f"{len(self.rollbacks)} rollback(s) did not help"
                if self.checkpoint.is_file()
                else "there is no checkpoint to roll back to yet"
            )
            raise DivergedError(
                f"training diverged: {what} ({bad} of its last {len(window)} updates skipped) and {tried}; "
                "lower the learning rates or add a penalty"
            )
        self.rollback(trainer, pl_module)
        log.warning("%s: rolled back to %s with learning rates x%g", what, self.checkpoint, self.lr_backoff)

    def rollback(self, trainer: pl.Trainer, pl_module: Any) -> None:
        """Weights and optimizer states of the last checkpoint, learning rates times ``lr_backoff``.

        The generator-step count goes on (the budget counts updates tried), the data stream too.
        """
        ckpt = load_weights_only(self.checkpoint, map_location=pl_module.device)
        pl_module.load_state_dict(ckpt["state_dict"])
        for opt, state in zip(trainer.optimizers, ckpt["optimizer_states"], strict=True):
            opt.load_state_dict(state)
            for group in opt.param_groups:
                group["lr"] *= self.lr_backoff
        for config in trainer.lr_scheduler_configs:  # schedulers recompute the lr from base_lrs
            config.scheduler.base_lrs = [lr * self.lr_backoff for lr in config.scheduler.base_lrs]
        network = self.frozen()
        self.rollbacks.append(
            {"g_step": pl_module.g_step, "to_step": ckpt["ganforge"]["g_step"], "network": network}
        )
        self.recent = {name: self._window() for name in self.recent}

    def report(self) -> dict[str, Any]:
        return {"skipped_updates": dict(self.skipped), "rollbacks": list(self.rollbacks)}

    def state_dict(self) -> dict[str, Any]:
        return self.report()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped.update(state_dict.get("skipped_updates", {}))
        self.rollbacks = list(state_dict.get("rollbacks", []))

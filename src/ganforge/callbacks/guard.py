"""Divergence guard: training that cannot go on is caught at the update that shows it.

Two conditions are guarded, G and D counted apart (the other's healthy updates never hide a network
in trouble):

- *Diverged*: an update whose loss or gradient is NaN/Inf, or a generator update whose gradient norm
  is above ``max_grad_norm_g`` (finite, but G's gradient flows through D, and a norm like that means
  D's outputs have exploded: ``optim.lr_d=1e6`` gives G gradients of 1e14 and more; D's own norm is
  not limited, ``max_grad_norm_d``), is skipped and counted. When more than ``max_bad_steps`` of the last
  ``2 * max_bad_steps`` updates of one network were skipped, the weights roll back to the last
  checkpoint with the learning rates scaled by ``lr_backoff`` (at most ``max_rollbacks`` times), then
  the run stops with exit code 3 (status ``diverged``).
- *Collapsed* (a dead network): the gradient norm of a network's last ``dead_steps`` updates was at
  most ``dead_grad_norm`` (0: exactly zero, e.g. a generator whose tanh outputs are saturated by
  ``optim.lr_g=1e6``: constant samples, finite losses, and nothing left to learn from). ``on_dead``
  says what then: ``rollback`` (as above, then stop) or ``stop`` at once; exit code 3 (status
  ``collapsed``).

Both read the one number per update the check already copies to the host (loss and gradient norm
travel in one transfer). Checkpoints are never written from non-finite weights
(:func:`~ganforge.callbacks.checkpoint.save_checkpoint`), and the periodic ones not while skipped or
dead updates are in the window, so a rollback returns to weights from before the trouble."""

from __future__ import annotations

import logging
import math
from collections import deque
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor

from ganforge.checkpoint_file import load_weights_only
from ganforge.errors import CollapsedError, ConfigError, DivergedError

log = logging.getLogger(__name__)

DEAD_ACTIONS = ("rollback", "stop")
LR_KEYS = {"generator": "optim.lr_g", "discriminator": "optim.lr_d"}


class DivergenceGuard(Callback):
    """Installs itself as ``pl_module.guard``; the module asks :meth:`accept` before every update.

    The check costs one host sync per update (the module otherwise syncs only to log).
    """

    def __init__(
        self,
        checkpoint: str,
        max_bad_steps: int = 20,
        lr_backoff: float = 0.5,
        max_rollbacks: int = 2,
        max_grad_norm_g: float | None = 1e8,
        max_grad_norm_d: float | None = None,
        dead_steps: int | None = 20,
        dead_grad_norm: float = 0.0,
        on_dead: str = "rollback",
    ) -> None:
        if on_dead not in DEAD_ACTIONS:
            raise ConfigError(
                f"callbacks.guard.on_dead={on_dead!r}: must be one of {', '.join(DEAD_ACTIONS)}"
            )
        for key, value in (("max_bad_steps", max_bad_steps), ("dead_steps", dead_steps)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(
                    f"callbacks.guard.{key} must be a positive integer (or null), got {value!r}"
                )
        self.checkpoint = Path(checkpoint)
        self.max_bad_steps = max_bad_steps
        self.lr_backoff = lr_backoff
        self.max_rollbacks = max_rollbacks
        self.max_grad_norm = {"generator": max_grad_norm_g, "discriminator": max_grad_norm_d}
        self.dead_steps = dead_steps
        self.dead_grad_norm = dead_grad_norm
        self.on_dead = on_dead
        self.skipped = {"discriminator": 0, "generator": 0}
        self.rollbacks: list[dict[str, Any]] = []
        self.recent = {name: self._window() for name in self.skipped}  # per network: step if skipped, else 0
        self.dead_since: dict[str, int | None] = dict.fromkeys(self.skipped)  # first step of a dead streak
        self.dead_run = dict.fromkeys(self.skipped, 0)  # length of the streak

    def _window(self) -> deque[int]:
        return deque(maxlen=2 * self.max_bad_steps)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        pl_module.guard = self

    def accept(self, loss: Tensor, grad_norm: Tensor, network: str, g_step: int) -> bool:
        """Whether the update of ``network`` may go ahead (loss and gradient norm finite, the norm not
        above the network's ``max_grad_norm_*``); also counts the updates with a dead (zero) gradient."""
        norm = grad_norm.detach().float().reshape(())
        total, value = torch.stack((loss.detach().float().reshape(()) + norm, norm)).tolist()  # one sync
        limit = self.max_grad_norm[network]
        ok = math.isfinite(total) and (limit is None or value <= limit)
        self.recent[network].append(0 if ok else g_step)
        if not ok:
            self.skipped[network] += 1
        if ok and value <= self.dead_grad_norm:
            if not self.dead_run[network]:
                self.dead_since[network] = g_step
            self.dead_run[network] += 1
        else:
            self.dead_run[network], self.dead_since[network] = 0, None
        return ok

    def bad_updates(self, network: str) -> int:
        """Skipped updates of ``network`` among its last ``2 * max_bad_steps``."""
        return sum(1 for step in self.recent[network] if step)

    def frozen(self) -> str | None:
        """The network with more than ``max_bad_steps`` recent updates skipped (the worse one), or None."""
        network = max(self.recent, key=self.bad_updates)
        return network if self.bad_updates(network) > self.max_bad_steps else None

    def dead(self) -> str | None:
        """The network whose last ``dead_steps`` updates had a dead gradient (the longer streak), or None."""
        if self.dead_steps is None:
            return None
        network = max(self.dead_run, key=lambda name: self.dead_run[name])
        return network if self.dead_run[network] >= self.dead_steps else None

    def skipping(self) -> bool:
        """Whether a recent update of G or D was skipped or dead: weights a rollback should not return to."""
        return any(self.bad_updates(network) for network in self.recent) or any(self.dead_run.values())

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        network = self.frozen()
        if network is not None:
            window, bad = self.recent[network], self.bad_updates(network)
            step = next(step for step in window if step)
            most = self.max_grad_norm[network]
            limit = f" or its gradient norm above {most:g}" if most is not None else ""
            what = f"the {network} loss or gradient has been NaN/Inf{limit} since generator step {step}"
            detail = f" ({bad} of its last {len(window)} updates skipped)"
            self.stop_or_roll_back(
                trainer, pl_module, network, what, detail, DivergedError, "training diverged"
            )
            return
        network = self.dead()
        if network is None:
            return
        run, since = self.dead_run[network], self.dead_since[network]
        what = (
            f"the {network} has stopped learning: its gradient has been zero in its last {run} updates, "
            f"since generator step {since} (a dead network, e.g. saturated outputs)"
        )
        if self.on_dead == "stop":
            raise CollapsedError(f"training collapsed: {what}; {self.advice(trainer, network)}")
        self.stop_or_roll_back(trainer, pl_module, network, what, "", CollapsedError, "training collapsed")

    @staticmethod
    def rates(trainer: pl.Trainer) -> str:
        """The learning rates in use: ``optim.lr_g=0.0002, optim.lr_d=1e+06``."""
        return ", ".join(
            f"{LR_KEYS[name]}={opt.param_groups[0]['lr']:g}"
            for name, opt in zip(("generator", "discriminator"), trainer.optimizers, strict=False)
        )

    def advice(self, trainer: pl.Trainer, network: str) -> str:
        """What to try, with the learning rates in use."""
        return f"lower the learning rates (now {self.rates(trainer)}) or add a penalty"

    def stop_or_roll_back(
        self,
        trainer: pl.Trainer,
        pl_module: Any,
        network: str,
        what: str,
        detail: str,
        error: type,
        head: str,
    ) -> None:
        if len(self.rollbacks) >= self.max_rollbacks or not self.checkpoint.is_file():
            tried = (
                f"{len(self.rollbacks)} rollback(s) did not help"
                if self.checkpoint.is_file()
                else "there is no checkpoint to roll back to yet"
            )
            raise error(f"{head}: {what}{detail}, and {tried}; {self.advice(trainer, network)}")
        self.rollback(trainer, pl_module, network, "collapsed" if error is CollapsedError else "diverged")
        log.warning(
            "%s: rolled back to %s, learning rates now %s", what, self.checkpoint, self.rates(trainer)
        )

    def rollback(
        self, trainer: pl.Trainer, pl_module: Any, network: str | None = None, why: str = "diverged"
    ) -> None:
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
        self.rollbacks.append(
            {
                "g_step": pl_module.g_step,
                "to_step": ckpt["ganforge"]["g_step"],
                "network": network or self.frozen(),
                "why": why,
            }
        )
        self.recent = {name: self._window() for name in self.recent}
        self.dead_run = dict.fromkeys(self.dead_run, 0)
        self.dead_since = dict.fromkeys(self.dead_since)

    def report(self) -> dict[str, Any]:
        return {"skipped_updates": dict(self.skipped), "rollbacks": list(self.rollbacks)}

    def state_dict(self) -> dict[str, Any]:
        return self.report()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped.update(state_dict.get("skipped_updates", {}))
        self.rollbacks = list(state_dict.get("rollbacks", []))

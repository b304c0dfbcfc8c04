"""Is the discriminator overfitting? D's outputs on its training reals against reals it never saw.

Karras et al. 2020 (ADA, fig. 1b) show the symptom of limited data: D's outputs on the training images
and on held-out images drift apart as training goes on; ADA's r_t = E[sign(D(x_train))] is the heuristic
that tracks it without held-out data. Every ``every`` generator steps this callback measures both on
fixed sets of un-augmented reals, with a copy of D in training mode (batch statistics as in training,
and the real D's buffers and the RNG untouched), and logs ``val/d_train``, ``val/d_heldout``,
``val/d_gap`` (train − held-out), ``val/rt_train`` and ``val/rt_heldout``. The held-out values need
data that keeps items back (``data.limit`` on the digits); without them only the training ones are
logged; r_t only for losses with a real/fake boundary (as ADA's). Inert at ``every: 0``.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor

from ganforge.ada import BOUNDARIES
from ganforge.callbacks.health import d_loss_name
from ganforge.errors import ConfigError
from ganforge.loggers import logger_fault

log = logging.getLogger(__name__)


class DiscriminatorOverfit(Callback):
    """D's mean logit and mean sign on ``num_samples`` training reals and as many held-out ones."""

    def __init__(self, every: int = 0, num_samples: int = 512) -> None:
        if every < 0 or num_samples < 1:
            raise ConfigError(
                f"callbacks.overfit: every={every} must be >= 0 (0: off) and num_samples={num_samples} >= 1"
            )
        self.every = every
        self.num_samples = num_samples
        self.sets: dict[str, tuple[Tensor, Tensor]] = {}
        self._last_step = -1

    def check(self, datamodule: Any) -> None:
        if not self.every:
            return
        if getattr(datamodule, "paired", False) or getattr(datamodule, "unpaired", False):
            raise ConfigError(
                "callbacks.overfit.every: D's outputs on training vs held-out reals are measured for "
                "task=generation (set callbacks.overfit.every=0 for translation)"
            )

    def setup(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        if not self.every or self.sets:
            return
        datamodule = trainer.datamodule
        n = min(self.num_samples, datamodule.num_items())
        order = torch.randperm(datamodule.num_items(), generator=torch.Generator().manual_seed(0))[:n]
        self.sets["train"] = datamodule.items(order.tolist())
        held = datamodule.held_out_items(self.num_samples)
        if held is not None:
            self.sets["heldout"] = held
        else:
            log.info("callbacks.overfit: the data keeps no items back; logging D on training reals only")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if self.every and pl_module.reached(self.every):
            self.measure(trainer, pl_module)

    def measure(self, trainer: pl.Trainer, pl_module: Any) -> dict[str, float]:
        """Measure now (once per step); log on rank 0. Returns the ``val/*`` values."""
        step = pl_module.g_step
        if step == self._last_step or not self.sets:
            return {}
        self._last_step = step
        judge = copy.deepcopy(pl_module.discriminator).train()
        boundary = BOUNDARIES.get(d_loss_name(pl_module))  # r_t's sign is about the loss's real/fake boundary
        values: dict[str, float] = {}
        batch = trainer.datamodule.batch_size
        with torch.no_grad():
            for name, (x, y) in self.sets.items():
                logits = []
                for at in range(0, len(x), batch):
                    part = (x[at : at + batch].to(pl_module.device), y[at : at + batch].to(pl_module.device))
                    xb, yb = pl_module.task.real(part)  # the labels only for a conditional D, as in training
                    logits.append(pl_module.discriminate(xb, yb, net=judge)[0].float().flatten())
                out = torch.cat(logits)
                values[f"val/d_{name}"] = float(out.mean())
                if boundary is not None:  # (none for unbounded critics: WGAN)
                    values[f"val/rt_{name}"] = float((out - boundary).sign().mean())
        if "val/d_heldout" in values:
            values["val/d_gap"] = values["val/d_train"] - values["val/d_heldout"]
        pl_module.last_metrics.update(values)
        if trainer.is_global_zero:
            for logger in list(trainer.loggers):
                with logger_fault(trainer, logger):
                    logger.log_metrics({**values, "trainer/g_step": step}, step=step)
        return values

"""``checkpoints/last.ckpt``: always resumable, written atomically (temp file, then rename)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

log = logging.getLogger(__name__)


def weights_finite(module: torch.nn.Module) -> bool:
    """Whether every parameter and buffer of ``module`` is finite (one host sync)."""
    tensors = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()) if tensors else True


def save_checkpoint(trainer: pl.Trainer, path: Path) -> bool:
    """``trainer.save_checkpoint`` to a temporary name, then an atomic rename (collective under DDP).

    Weights with NaN/Inf are never written: the previous file stays. Returns whether it wrote.
    """
    if not weights_finite(trainer.lightning_module):
        log.warning("not writing %s: the weights hold NaN/Inf (keeping the previous checkpoint)", path.name)
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    trainer.save_checkpoint(tmp, weights_only=False)  # rank 0 writes
    if trainer.is_global_zero:
        os.replace(tmp, path)
    return True


class LastCheckpoint(Callback):
    """Saves ``last.ckpt`` every ``every`` generator steps and when training ends.

    The file is first written under a temporary name and then renamed, so a crash or a
    signal during the write never leaves a truncated ``last.ckpt`` behind.
    """

    def __init__(self, dirpath: str, every: int = 1000, filename: str = "last.ckpt") -> None:
        self.dirpath = Path(dirpath)
        self.every = every
        self.filename = filename

    @property
    def path(self) -> Path:
        return self.dirpath / self.filename

    def save(self, trainer: pl.Trainer) -> None:
        save_checkpoint(trainer, self.path)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        step = pl_module.g_step
        if pl_module.reached(self.every) and step < pl_module.total_steps:
            self.save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.save(trainer)

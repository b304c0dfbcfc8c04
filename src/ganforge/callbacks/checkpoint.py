"""``checkpoints/last.ckpt``: always resumable, written atomically (temp file, then rename)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


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
        tmp = self.dirpath / f".{self.filename}.tmp"
        trainer.save_checkpoint(tmp, weights_only=False)  # collective under DDP; rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, self.path)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        step = pl_module.g_step
        if self.every > 0 and step % self.every == 0 and step < pl_module.total_steps:
            self.save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.save(trainer)

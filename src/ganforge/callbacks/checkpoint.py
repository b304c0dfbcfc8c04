"""``checkpoints/last.ckpt``: always resumable, written atomically (temp file, then rename)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


def save_checkpoint(trainer: pl.Trainer, path: Path) -> None:
    """``trainer.save_checkpoint`` to a temporary name, then an atomic rename (collective under DDP)."""
    tmp = path.with_name(f".{path.name}.tmp")
    trainer.save_checkpoint(tmp, weights_only=False)  # rank 0 writes
    if trainer.is_global_zero:
        os.replace(tmp, path)


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
        if self.every > 0 and step % self.every == 0 and step < pl_module.total_steps:
            self.save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.save(trainer)

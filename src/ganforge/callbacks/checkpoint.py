"""``checkpoints/last.ckpt``: always resumable, written atomically (temp file, then rename)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from ganforge.checkpoint_file import checkpoint_bytes, write_atomically

log = logging.getLogger(__name__)


def weights_finite(module: torch.nn.Module) -> bool:
    """Whether every parameter and buffer of ``module`` is finite (one host sync)."""
    tensors = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()) if tensors else True


def save_checkpoint(trainer: pl.Trainer, path: Path) -> bool:
    """``trainer.save_checkpoint`` to a temporary name, then an atomic rename (collective under DDP).

    Weights with NaN/Inf are never written: the previous file stays. Returns whether it wrote. A write
    that fails (a full disk) removes its temporary file, keeps the previous one and raises a one-line
    :class:`~ganforge.errors.ResourceError`, which stops the run.
    """
    if not weights_finite(trainer.lightning_module):
        log.warning("not writing %s: the weights hold NaN/Inf (keeping the previous checkpoint)", path.name)
        return False
    write_atomically(
        path,
        lambda tmp: trainer.save_checkpoint(tmp, weights_only=False),  # rank 0 writes
        publish=trainer.is_global_zero,
        needed=checkpoint_bytes(trainer.lightning_module, trainer.optimizers),
    )
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
            guard = getattr(pl_module, "guard", None)
            if guard is not None and guard.skipping():  # keep the checkpoint a rollback would return to
                log.warning(
                    "not writing %s at step %d: updates are being skipped (NaN/Inf)", self.path.name, step
                )
                return
            self.save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.save(trainer)


class ResumedLearningRates(Callback):
    """On a resume, ``optim.lr_g``/``optim.lr_d`` given other values than the checkpoint was trained with
    apply: the restored rates are scaled by new/old (so a schedule's progress and a rollback's backoff
    carry on) and a line in the log says so. Rates left as they were keep the checkpoint's."""

    KEYS = ("lr_g", "lr_d")  # the optimizers' order: G, D

    def __init__(self, optim: dict[str, Any]) -> None:
        self.now = {key: optim.get(key) for key in self.KEYS}
        self.changed: dict[int, tuple[str, float, float]] = {}  # optimizer index: (key, old, new)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        stored = ((checkpoint.get("ganforge") or {}).get("config") or {}).get("optim") or {}
        for index, key in enumerate(self.KEYS):
            old, new = stored.get(key), self.now[key]
            if isinstance(old, (int, float)) and isinstance(new, (int, float)) and 0 < old != new:
                self.changed[index] = (key, float(old), float(new))

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        for index, (key, old, new) in self.changed.items():
            optimizer = trainer.optimizers[index]
            for group in optimizer.param_groups:
                group["lr"] *= new / old
            for config in trainer.lr_scheduler_configs:
                if config.scheduler.optimizer is optimizer:
                    config.scheduler.base_lrs = [lr * new / old for lr in config.scheduler.base_lrs]
            if pl_module.run_config is not None:  # later checkpoints record the rate in use
                pl_module.run_config.setdefault("optim", {})[key] = new
            log.warning("resuming with optim.%s=%g (the checkpoint was trained with %g)", key, new, old)

"""``checkpoints/last.ckpt`` (always resumable: weights, optimizer, scheduler and loop state) and
``best.ckpt`` (weights, config and metrics only: what ganforge-eval and -sample need, a fraction of the
size), written atomically (temp file, then rename) by a Lightning ``ModelCheckpoint`` that counts
generator steps."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from weakref import proxy

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from ganforge.checkpoint_file import checkpoint_bytes, write_atomically
from ganforge.errors import ConfigError
from ganforge.loggers import logger_fault

log = logging.getLogger(__name__)


def weights_finite(module: torch.nn.Module) -> bool:
    """Whether every parameter and buffer of ``module`` is finite (one host sync)."""
    tensors = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()) if tensors else True


def save_checkpoint(trainer: pl.Trainer, path: Path, weights_only: bool = False) -> bool:
    """``trainer.save_checkpoint`` to a temporary name, then an atomic rename (collective under DDP);
    ``weights_only``: without the optimizer, scheduler and callback state only a resume needs.

    Weights with NaN/Inf are never written: the previous file stays. Returns whether it wrote. A write
    that fails (a full disk) removes its temporary file, keeps the previous one and raises a one-line
    :class:`~ganforge.errors.ResourceError`, which stops the run.
    """
    if not weights_finite(trainer.lightning_module):
        log.warning("not writing %s: the weights hold NaN/Inf (keeping the previous checkpoint)", path.name)
        return False
    write_atomically(
        path,
        lambda tmp: trainer.save_checkpoint(tmp, weights_only=weights_only),  # rank 0 writes
        publish=trainer.is_global_zero,
        needed=checkpoint_bytes(trainer.lightning_module, trainer.optimizers, weights_only=weights_only),
    )
    return True


class GANCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, on generator steps: ``last.ckpt`` every ``every`` generator steps
    and when training ends, ``best.ckpt`` when the metrics callback finds the monitored metric improved
    (weights only; none with ``save_best=False``, the metrics still measured and logged).

    Every write is atomic (:func:`save_checkpoint`: never a truncated file, never NaN weights), and
    loggers hear of each one as from ``ModelCheckpoint`` (``last_model_path``, ``best_model_path``), so
    ``logger.wandb.log_model=true|all`` uploads them as W&B artifacts and ``ckpt_path=last`` finds them.
    Lightning's own epoch- and validation-end saving is off: an epoch is the whole run here.
    """

    def __init__(
        self,
        dirpath: str,
        every: int = 1000,
        filename: str = "last.ckpt",
        save_best: bool = True,
    ) -> None:
        super().__init__(dirpath=dirpath)  # Lightning's own file naming is unused: paths are ours
        if not isinstance(save_best, bool):
            raise ConfigError(f"callbacks.checkpoint.save_best must be true or false, got {save_best!r}")
        self.every = every
        self.filename = filename
        self.writes_best = save_best

    @property
    def state_key(self) -> str:
        return self._generate_state_key(filename=self.filename)  # not `every`: a resume may change it

    @property
    def path(self) -> Path:
        return Path(self.dirpath) / self.filename

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The best/last paths of the run the checkpoint came from, when it is this run dir (a checkpoint
        copied from elsewhere starts this dir's records afresh, without ModelCheckpoint's warning)."""
        if state_dict.get("dirpath") == self.dirpath:
            super().load_state_dict(state_dict)

    def setup(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        """Keeps the configured directory (ModelCheckpoint would warn that it is not empty on a resume)."""
        self._fs = get_filesystem(self.dirpath)

    def save(self, trainer: pl.Trainer) -> None:
        """Writes ``last.ckpt`` now (skipped under ``trainer.fast_dev_run``, as ModelCheckpoint does)."""
        if trainer.fast_dev_run or not save_checkpoint(trainer, self.path):
            return
        self.last_model_path = str(self.path)
        self._announce(trainer, str(self.path))

    def save_best(self, trainer: pl.Trainer, path: Path, monitor: str, score: float) -> None:
        """Writes ``best.ckpt`` (weights only) for a new best ``score`` of ``monitor`` (the metrics
        callback decides; every rank calls this alike); nothing with ``save_best=False``."""
        if not self.writes_best or trainer.fast_dev_run:
            return
        if not save_checkpoint(trainer, path, weights_only=True):
            return
        value = torch.tensor(float(score))
        self.monitor, self.best_model_path, self.best_model_score = monitor, str(path), value
        self.best_k_models = {str(path): value}
        self.kth_best_model_path, self.kth_value = str(path), value
        self._announce(trainer, str(path))

    def _announce(self, trainer: pl.Trainer, path: str) -> None:
        """What ``ModelCheckpoint._save_checkpoint`` records, and each logger hears of the file."""
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = path
        if trainer.is_global_zero:
            for logger in list(trainer.loggers):
                with logger_fault(trainer, logger):
                    logger.after_save_checkpoint(proxy(self))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        step = pl_module.g_step
        if pl_module.reached(self.every) and step < pl_module.total_steps:
            guard = getattr(pl_module, "guard", None)
            if guard is not None and guard.skipping():  # keep the checkpoint a rollback would return to
                log.warning(
                    "not writing %s at step %d: the divergence guard is skipping updates or sees a dead "
                    "network",
                    self.path.name,
                    step,
                )
                return
            self.save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        pass  # one epoch is the whole run: on_train_end writes last.ckpt

    def on_validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        pass  # best.ckpt comes from the metrics callback (save_best)

    def on_exception(self, trainer: pl.Trainer, pl_module: Any, exception: BaseException) -> None:
        pass  # a crashed run keeps its last good checkpoint

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

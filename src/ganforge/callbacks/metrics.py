"""Evaluate the generator every ``metrics.every`` generator steps and at the end: ``val/*`` to every
logger and to ``trainer.callback_metrics``, ``checkpoints/best.ckpt`` by the monitored metric (W&B keeps
the best value itself, see ``ganforge.loggers.WandbLogger``).

An evaluation is what a validation is in other Lightning code: after one, the other callbacks'
``on_validation_end`` runs, so ``EarlyStopping(monitor="val/fid")`` or ``ModelCheckpoint(monitor=...)``
act on it (the trainer config has no validation loop of its own, see ``conf/trainer/default.yaml``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ProgressBar

from ganforge.callbacks.checkpoint import GANCheckpoint, save_checkpoint
from ganforge.directions import better
from ganforge.errors import ConfigError
from ganforge.loggers import logger_fault
from ganforge.metrics.suite import MetricSettings
from ganforge.metrics.suites import Suite, make_suite

log = logging.getLogger(__name__)


class MetricsCallback(Callback):
    """Runs a :class:`~ganforge.metrics.suite.MetricSuite` during training; inert without metrics.

    ``check`` runs before training (wrong metric for the data, missing Inception weights);
    ``setup`` trains or loads the classifier and the cached reference features.
    """

    def __init__(self, config: Any, cache_dir: str, dirpath: str) -> None:
        self.settings = MetricSettings.from_config(config)
        self.cache_dir = cache_dir
        self.dirpath = Path(dirpath)
        self.suite: Suite | None = None
        self.best: dict[str, float] = {}
        self.best_step: int | None = None
        self.latest: dict[str, float] = {}
        self._last_step = -1

    def check(self, datamodule: Any) -> None:
        if self.settings is not None:
            self.suite = make_suite(self.settings, datamodule, self.cache_dir)
            monitor, keys = self.suite.monitor, self.suite.keys
            if monitor not in keys:  # best.ckpt would never be written
                raise ConfigError(
                    f"metrics.monitor={monitor}: no metric of this run logs it; choose one of "
                    f"{', '.join(sorted(keys))}"
                )

    def setup(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        if self.settings is None:
            return
        if self.suite is None:
            self.check(trainer.datamodule)
        assert self.suite is not None
        if hasattr(self.suite, "test_mode"):  # translation: how the task runs G is part of the protocol
            self.suite.test_mode = getattr(pl_module.task, "test_mode", "eval")
        # rank 0 trains/caches the classifier and reference features; the others then read the cache
        if trainer.is_global_zero:
            self.suite.prepare(pl_module.device, trainer.global_rank, trainer.world_size)
        trainer.strategy.barrier("ganforge-metrics-prepare")
        if not trainer.is_global_zero:
            self.suite.prepare(pl_module.device, trainer.global_rank, trainer.world_size)
        info = self.suite.info
        if "n_real" in info:  # what the image metrics compare (equal sizes: see MetricSuite.prepare)
            log.info("metrics: %d generated samples against %d real ones", info["n_fake"], info["n_real"])
        if "classifier_accuracy" in info:
            how = "cached" if info["classifier_cached"] else "trained"
            log.info(
                "metrics: feature classifier (%s) held-out accuracy %.3f", how, info["classifier_accuracy"]
            )
        if "selfsup_top1" in info:  # how well it tells the reference images apart (1: always)
            how = "cached" if info["selfsup_cached"] else "trained"
            log.info(
                "metrics: self-supervised extractor (%s, %d images) contrastive top-1 %.3f",
                how,
                info["selfsup_images"],
                info["selfsup_top1"],
            )
        for logger in list(trainer.loggers) if trainer.is_global_zero else []:  # W&B: val/fid_protocol
            if info.get("protocol_tags") and hasattr(logger, "log_protocols"):
                with logger_fault(trainer, logger):
                    logger.log_protocols(info["protocol_tags"])

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        every = self.settings.every if self.settings else 0
        if pl_module.reached(every) or pl_module.g_step >= pl_module.total_steps:  # the last one too
            self.evaluate(trainer, pl_module)
            self._validation_end(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if any(getattr(cb, "stopped_at", None) is not None for cb in trainer.callbacks):
            return  # preempted: last.ckpt is written, leave the signal's grace time to the requeue
        self.evaluate(trainer, pl_module)

    def evaluate(self, trainer: pl.Trainer, pl_module: Any) -> dict[str, float]:
        """Measure now (once per step), log on rank 0, keep ``best.ckpt``; returns the ``val/*`` values."""
        step = pl_module.g_step
        if self.suite is None or step == self._last_step:
            return {}
        self._last_step = step
        rank_0_buffers(trainer, pl_module)
        values = self.suite.measure_module(pl_module, trainer.global_rank, trainer.world_size)
        self.latest = values
        pl_module.last_metrics.update(values)
        monitor = self.suite.monitor
        improved = monitor in values and better(monitor, values[monitor], self.best.get(monitor))
        # rank 0 decides: saving best.ckpt is collective, a rank that stayed out would hang the others
        improved = bool(trainer.strategy.broadcast(improved, src=0))
        for name, value in values.items():
            if better(name, value, self.best.get(name)):
                self.best[name] = value
        if improved:
            self.best_step = step
            self._save_best(trainer, monitor, values[monitor])
        # what self.log fills (also at the end of training, where self.log is not allowed)
        trainer.callback_metrics.update({k: torch.tensor(float(v)) for k, v in values.items()})
        if trainer.is_global_zero:
            self._log(trainer, values, step)
        return values

    def _save_best(self, trainer: pl.Trainer, monitor: str, value: float) -> None:
        """``best.ckpt``, through the checkpoint callback when there is one (loggers hear of it: W&B
        artifacts with ``log_model``)."""
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / "best.ckpt"
        checkpoint = next((cb for cb in trainer.callbacks if isinstance(cb, GANCheckpoint)), None)
        if checkpoint is not None:
            checkpoint.save_best(trainer, path, monitor, value)
        else:
            save_checkpoint(trainer, path, weights_only=True)  # as GANCheckpoint.save_best

    def _validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        """The other callbacks' ``on_validation_end`` after an evaluation during training (early stopping,
        a user's ModelCheckpoint on ``val/*``); not the progress bar, which draws no validation bar."""
        if self.suite is None or trainer.sanity_checking:
            return
        for callback in trainer.callbacks:
            if callback is not self and not isinstance(callback, ProgressBar):
                callback.on_validation_end(trainer, pl_module)

    def _log(self, trainer: pl.Trainer, values: dict[str, float], step: int) -> None:
        for logger in list(trainer.loggers):
            with logger_fault(trainer, logger):
                logger.log_metrics({**values, "trainer/g_step": step}, step=step)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "latest": self.latest}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = dict(state_dict.get("best", {}))
        self.best_step = state_dict.get("best_step")
        self.latest = dict(state_dict.get("latest", {}))


def rank_0_buffers(trainer: pl.Trainer, pl_module: Any) -> None:
    """Under DDP, G's buffers (batch-norm running statistics, also the EMA G's) as rank 0 has them, on
    every rank, before a measurement: each rank's drift from its own batches between the broadcasts DDP
    makes at every step, and rank 0's are what the checkpoint saves and ganforge-eval measures."""
    if trainer.world_size < 2 or not torch.distributed.is_initialized():
        return
    for net in (pl_module.generator, getattr(pl_module, "ema_generator", None)):
        for buffer in net.buffers() if net is not None else ():
            torch.distributed.broadcast(buffer, src=0)

"""One training run with Lightning: build the data, nets, loss and callbacks from the config (everything
that can refuse the run, before any logger starts), fit, and write the run's summary.

``ganforge.train`` (the command line) imports this only once the config passed its checks, so that a
refused run, ``--help`` and ``--cfg`` do not wait for Lightning's imports.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from ganforge.build import build
from ganforge.callbacks.checkpoint import GANCheckpoint, ResumedLearningRates
from ganforge.callbacks.guard import DivergenceGuard
from ganforge.callbacks.health import health_issues
from ganforge.callbacks.metrics import MetricsCallback
from ganforge.callbacks.preemption import Preemption, lightning_plugins
from ganforge.callbacks.progress import to_log_files
from ganforge.callbacks.samples import SampleGrid
from ganforge.checkpoint_file import (
    check_free_space,
    checkpoint_bytes,
    read_checkpoint,
    write_error,
    write_text_atomically,
)
from ganforge.config import make
from ganforge.cpu import apply_cpu_threads
from ganforge.errors import CollapsedError, DataError, DivergedError, GanforgeError, ResourceError, refusals
from ganforge.loggers import build_loggers, hydra_choices, wandb_location
from ganforge.memory import check_step_memory, out_of_memory
from ganforge.run_dir import RunStart
from ganforge.signals import take_early_signal

QUIET_WARNINGS = (
    r".*does not have many workers.*",
    r".*Experiment logs directory .* exists and is not empty.*",
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*The `srun` command is available on your system but is not used.*",  # local runs on a Slurm host
)
QUIET_INFO = ("litlogger", "`Trainer.fit` stopped", "validation will run after every batch")
log = logging.getLogger("ganforge.train")  # the command's log lines (train.log), whichever module writes them


# what writes outputs besides the log: left out of a trainer.fast_dev_run
OUTPUT_CALLBACKS = (GANCheckpoint, MetricsCallback, SampleGrid, Preemption)


class _DropInfo(logging.Filter):
    """Hides Lightning's info lines that mislead here (its stop message counts D+G optimizer steps)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in QUIET_INFO)


def quiet_lightning() -> None:
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_DropInfo())


def config_digest(cfg: DictConfig) -> str:
    """A short hash of the resolved config: two runs with the same digest ran the same setup."""
    text = OmegaConf.to_yaml(cfg, resolve=True, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fit(cfg: DictConfig, out: Path, start: RunStart) -> dict[str, Any]:
    """Train the GAN of ``cfg`` into ``out``, starting as ``start`` says (checked, and the run dir locked,
    by the caller: :func:`ganforge.train.train`); returns the run summary. A
    :class:`~ganforge.errors.GanforgeError` raised before training starts is marked as a refusal."""
    quiet_lightning()
    drop_log_files_on_full_disk()
    ckpt_path, dev_run = start.ckpt_path, start.dev_run
    with refusals():
        datamodule, module, callbacks = prepare(cfg, out, start)
    loggers = [] if dev_run else build_loggers(cfg.get("logger"), resuming=ckpt_path is not None)
    trainer: pl.Trainer = make(
        cfg.trainer,
        max_steps=module.optimizer_steps(cfg.train.steps),
        # Lightning adds a ModelCheckpoint of its own unless there is one (callbacks=none: none at all)
        enable_checkpointing=any(isinstance(cb, ModelCheckpoint) for cb in callbacks),
        logger=loggers or False,
        callbacks=callbacks,
        plugins=lightning_plugins(),
    )
    hparams = {**OmegaConf.to_container(cfg, resolve=True), **hydra_choices()}  # + choice/<group>
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)

    summary: dict[str, Any] = {"status": "running", "output_dir": str(out)}
    began = time.time()
    failure: BaseException | None = None
    preemption = next((cb for cb in callbacks if isinstance(cb, Preemption)), None)
    early = take_early_signal(preemption)
    try:
        try:
            if early is None:
                trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
            else:  # stopped before training started: nothing new to save
                log.warning("%s before training started: stopping", early.name)
                preemption.received, preemption.stopped_at = early, module.g_step
        except torch.OutOfMemoryError:
            raise out_of_memory(cfg, module.g_step) from None
        except OSError as exc:  # any other output (a sample grid) on a full disk: one line too
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise write_error(Path(exc.filename or out), exc) from None
        if early is not None:
            module.g_step = ckpt_g_step(ckpt_path)
            preemption.stopped_at = module.g_step
        summary["status"] = "finished" if module.g_step >= cfg.train.steps else "stopped"
        for cb in callbacks:
            if isinstance(cb, Preemption) and cb.stopped_at is not None and summary["status"] == "stopped":
                summary.update(status="preempted", preemption=cb.report())
    except BaseException as exc:
        failure = exc
        # Lightning answers a KeyboardInterrupt (a second Ctrl-C) with its own shutdown and sys.exit(1)
        interrupted = isinstance(exc, SystemExit) and trainer.interrupted
        summary["status"] = "interrupted" if interrupted else failed_status(exc)
        summary["error"] = "KeyboardInterrupt" if interrupted else f"{type(exc).__name__}: {exc}"
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        elapsed = time.time() - began  # this segment; the total adds the earlier ones
        summary.update(
            g_steps=module.g_step,
            d_steps=module.g_step * cfg.train.n_critic,
            steps_target=cfg.train.steps,
            wall_time_s=round(elapsed, 3),
            wall_time_total_s=round(module.wall_time_before + elapsed, 3),
            last=module.last_metrics,
            **metrics_summary(callbacks),
            config_digest=config_digest(cfg),
            resumed_from=str(ckpt_path) if ckpt_path else None,
            checkpoint=None if dev_run else str(out / "checkpoints" / "last.ckpt"),
            samples=None if dev_run else str(out / "samples"),
            wandb=wandb_location(trainer.loggers),
            health=health_issues(callbacks),
            guard=next((cb.report() for cb in callbacks if isinstance(cb, DivergenceGuard)), None),
        )
        if trainer.is_global_zero:
            to_log_files(summary_line(summary), log)  # train.log only: the console gets report()'s table
        if trainer.is_global_zero and not dev_run:
            try:
                write_text_atomically(out / "summary.json", json.dumps(summary, indent=2) + "\n")
            except ResourceError as err:  # e.g. the disk that stopped the run: keep its error first
                if failure is None:
                    raise
                log.warning("%s", err)
    return summary


def prepare(cfg: DictConfig, out: Path, start: RunStart) -> tuple[Any, Any, list[Any]]:
    """Everything that can refuse the run once Lightning is imported, before any logger starts: the data,
    the nets, the callbacks."""
    ckpt_path, dev_run = start.ckpt_path, start.dev_run
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    devices = cfg.trainer.get("devices", 1)
    processes = devices if accelerator == "cpu" and isinstance(devices, int) and devices > 0 else 1
    apply_cpu_threads(cfg.train.get("cpu_threads", "auto"), accelerator, processes)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, module = build(cfg)
    module.run_config = OmegaConf.to_container(cfg, resolve=True)  # saved in checkpoints: eval, sample
    callbacks = [make(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if dev_run:  # as Lightning's fast_dev_run: no checkpoints, and here no grids or metrics either
        callbacks = [cb for cb in callbacks if not isinstance(cb, OUTPUT_CALLBACKS)]
    if ckpt_path is not None:  # learning rates changed for the resume apply (and are logged)
        callbacks.append(ResumedLearningRates(OmegaConf.to_container(cfg.optim, resolve=True)))
    for callback in callbacks:  # e.g. metrics that cannot work on this data: fail before any logger starts
        if hasattr(callback, "check"):
            callback.check(datamodule)
    for callback in callbacks:  # a disk too full for one checkpoint: say so now, not after training
        if isinstance(callback, GANCheckpoint):
            check_free_space(callback.dirpath, checkpoint_bytes(module))
    check_step_memory(cfg, datamodule, module)  # a batch that cannot fit: one line, not the OOM killer
    check_finite_data(datamodule, cfg.seed)
    return datamodule, module, callbacks


def check_finite_data(datamodule: Any, seed: int) -> None:
    """A DataError when real samples hold NaN/Inf (checked once on a batch of them, before training,
    not in the hot loop: a NaN batch later is skipped by the divergence guard)."""
    if not hasattr(datamodule, "real_batch"):
        return
    x = datamodule.real_batch(16, seed=seed)
    if not bool(torch.isfinite(x).all()):
        raise DataError(
            f"the real data is not finite: {int((~torch.isfinite(x)).sum())} NaN/Inf values in 16 samples; "
            "check the data files and the data.* settings"
        )


def ckpt_g_step(ckpt_path: Path | None) -> int:
    """The generator step a checkpoint was written at (0 without one)."""
    return int(read_checkpoint(ckpt_path)["ganforge"]["g_step"]) if ckpt_path else 0


# --- train.log on a full disk --------------------------------------------------------------------------
def drop_log_files_on_full_disk() -> None:
    """A log file that cannot be written for lack of space is dropped (with one warning) as a failed
    logger is, instead of Python's ``--- Logging error ---`` and a traceback for every later line."""
    loggers = [
        logging.getLogger(),
        *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict)),
    ]
    for logger in loggers:
        for handler in list(getattr(logger, "handlers", [])):
            if isinstance(handler, logging.FileHandler) and not getattr(handler, "_ganforge_guarded", False):
                handler.handleError = _full_disk_handler(handler, handler.handleError)  # type: ignore[method-assign]
                handler._ganforge_guarded = True  # type: ignore[attr-defined]


def _full_disk_handler(handler: logging.FileHandler, original: Any) -> Any:
    def handle_error(record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError) or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            return original(record)
        for logger in [logging.getLogger(), *logging.root.manager.loggerDict.values()]:
            if isinstance(logger, logging.Logger) and handler in logger.handlers:
                logger.removeHandler(handler)
        try:
            handler.close()
        except (OSError, ValueError):
            pass
        print(
            f"ganforge-train: warning: cannot write {handler.baseFilename} (no space left on device); "
            "it is dropped and the log goes on in the terminal only",
            file=sys.stderr,
        )
        return None

    return handle_error


def failed_status(exc: BaseException) -> str:
    """summary.json's status for a run that ended with ``exc``."""
    if isinstance(exc, CollapsedError):
        return "collapsed"
    if isinstance(exc, DivergedError):
        return "diverged"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, GanforgeError):
        return "failed"  # stopped cleanly with a one-line reason (e.g. a full disk)
    return "crashed"


def metrics_summary(callbacks: list[Any]) -> dict[str, Any]:
    """``best`` metric values, the step of ``best.ckpt`` and how the metrics were measured."""
    for callback in callbacks:
        if isinstance(callback, MetricsCallback) and callback.suite is not None:
            return {"best": callback.best, "best_step": callback.best_step, "metrics": callback.suite.info}
    return {}


def summary_line(summary: dict[str, Any]) -> str:
    """The run's outcome in one line for train.log: status, steps, wall time, the final losses and metrics."""
    last, best = summary.get("last") or {}, summary.get("best") or {}
    keys = ("train/d_loss", "train/g_loss", *sorted(k for k in last if k.startswith("val/")))
    values = [
        f"{k}={last[k]:.4g}" + (f" (best {best[k]:.4g})" if k in best else "")
        for k in keys
        if isinstance(last.get(k), int | float)
    ]
    head = (
        f"{summary['status']}: {summary['g_steps']}/{summary['steps_target']} generator steps in "
        f"{summary['wall_time_s']:.1f} s"
    )
    return "  ".join([head, *values])

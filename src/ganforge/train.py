"""``ganforge-train``: compose the config, build data, nets, loss and optimizers, train, summarise."""
# ruff: noqa: E402  (the signal handlers are installed before the slow imports)

from __future__ import annotations

import signal
import sys
from pathlib import Path

# SIGTERM or SIGUSR2 while Python is still importing torch and Lightning (seconds) must not kill the
# job with the default handler: the command line installs a handler that only takes note, first thing;
# the run stops cleanly at the first point it can (before training, or after the first batch).
EARLY_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)
_early_signals: list[int] = []


def _note_signal(signum: int, frame: object) -> None:
    _early_signals.append(signum)


def install_early_handlers() -> None:
    """Take note of :data:`EARLY_SIGNALS` from now on (where nothing else handles them yet)."""
    for sig in EARLY_SIGNALS:
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _note_signal)


if __name__ == "__main__" or Path(sys.argv[0]).name == "ganforge-train":  # the command line, not an import
    install_early_handlers()

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import threading
import time
import warnings
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from ganforge import CONFIG_PACKAGE
from ganforge.build import build
from ganforge.callbacks.checkpoint import GANCheckpoint, ResumedLearningRates
from ganforge.callbacks.guard import DivergenceGuard
from ganforge.callbacks.health import health_issues
from ganforge.callbacks.metrics import MetricsCallback
from ganforge.callbacks.preemption import (
    Preemption,
    exit_after_preemption,
    lightning_plugins,
    requeued_ckpt_path,
)
from ganforge.callbacks.progress import to_log_files
from ganforge.callbacks.samples import SampleGrid
from ganforge.checkpoint_file import (
    check_free_space,
    check_writable,
    checkpoint_bytes,
    read_checkpoint,
    write_error,
    write_text_atomically,
)
from ganforge.config import check_config, key_hints, make, resolve_ckpt_path
from ganforge.cpu import apply_cpu_threads
from ganforge.errors import (
    CollapsedError,
    ConfigError,
    DataError,
    DivergedError,
    GanforgeError,
    NothingToTrainError,
    ResourceError,
    RunDirInUseError,
)
from ganforge.loggers import build_loggers, finish_wandb, hydra_choices, wandb_location
from ganforge.memory import check_step_memory, out_of_memory
from ganforge.targets import check_targets

QUIET_WARNINGS = (
    r".*does not have many workers.*",
    r".*Experiment logs directory .* exists and is not empty.*",
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*The `srun` command is available on your system but is not used.*",  # local runs on a Slurm host
)
QUIET_INFO = ("litlogger", "`Trainer.fit` stopped", "validation will run after every batch")
log = logging.getLogger(__name__)
INTERRUPTED_EXIT = 128 + 2  # as a shell reports a process ended by SIGINT


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


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the GAN described by ``cfg``; returns the run summary (also written as summary.json).

    The run dir is locked while it runs (a second process on it is refused), and the signal handlers
    are those of before when it returns (Lightning's and ours are gone).
    """
    handlers = saved_signal_handlers()
    out = Path(cfg.paths.output_dir)
    try:
        try:
            check_config(cfg)
            locked = lock_run_dir(out)
        except GanforgeError as err:
            mark_refused(err)
            raise
        try:
            return _train(cfg, out)
        finally:
            if locked:
                unlock_run_dir(out)
    finally:
        restore_signal_handlers(handlers)


def mark_refused(err: GanforgeError) -> None:
    """Mark ``err`` as a refusal before training started (its run dir is left as it was found)."""
    err.refused = True  # type: ignore[attr-defined]


def _train(cfg: DictConfig, out: Path) -> dict[str, Any]:
    quiet_lightning()
    drop_log_files_on_full_disk()
    try:
        datamodule, module, callbacks, ckpt_path, dev_run = _prepare(cfg, out)
    except GanforgeError as err:
        mark_refused(err)
        raise
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
    start = time.time()
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
        summary.update(
            g_steps=module.g_step,
            d_steps=module.g_step * cfg.train.n_critic,
            steps_target=cfg.train.steps,
            wall_time_s=round(time.time() - start, 3),  # this segment; the total adds the earlier ones
            wall_time_total_s=round(module.wall_time_before + time.time() - start, 3),
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
            # train.log only: the console gets report()'s table (named for the module, also run as __main__)
            to_log_files(summary_line(summary), logging.getLogger("ganforge.train"))
        if trainer.is_global_zero and not dev_run:
            try:
                write_text_atomically(out / "summary.json", json.dumps(summary, indent=2) + "\n")
            except ResourceError as err:  # e.g. the disk that stopped the run: keep its error first
                if failure is None:
                    raise
                log.warning("%s", err)
    return summary


def _prepare(cfg: DictConfig, out: Path) -> tuple[Any, Any, list[Any], Path | None, bool]:
    """Everything that can refuse the run, before any logger starts: the data, the nets, the callbacks."""
    rerun = run_dir_source()
    if rerun is not None:  # a run dir's config read back (-cd <run>/.hydra -cn config): data, not code
        check_targets(cfg, f"{rerun}/config.yaml", cfg.get("allow_targets") or ())
    if cfg.get("metrics"):  # the metrics' classifier and reference features are cached there
        check_writable(Path(cfg.paths.cache_dir), "paths.cache_dir", folder=True)
    ckpt_path = resolve_ckpt_path(requeued_ckpt_path(cfg.ckpt_path, out), out, cfg)
    is_requeued = requeued()  # a requeued job continues its run dir
    dev_run = bool(cfg.trainer.get("fast_dev_run"))  # a quick check of the setup: nothing written but the log
    fresh_ok = (
        is_requeued or dev_run or cfg.train.get("overwrite", False) or cfg.ckpt_path in ("auto", "last")
    )
    if ckpt_path is None and not fresh_ok:
        check_fresh_run_dir(out)
    if ckpt_path is None and is_requeued and not cfg.train.get("overwrite", False):
        check_requeued_run_dir(out)
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
    return datamodule, module, callbacks, ckpt_path, dev_run


def run_dir_source() -> Path | None:
    """The ``.hydra`` folder of an earlier run this job's config was read from, if any (a folder of
    the config search path that holds Hydra's ``hydra.yaml`` and ``overrides.yaml``)."""
    if not HydraConfig.initialized():
        return None
    for source in HydraConfig.get().runtime.config_sources:
        folder = Path(source.path)
        if (
            source.schema == "file"
            and (folder / "hydra.yaml").is_file()
            and (folder / "overrides.yaml").is_file()
        ):
            return folder
    return None


def check_fresh_run_dir(out: Path) -> None:
    """A ConfigError when the run dir already holds a run that a fresh start would overwrite (its
    checkpoint, metrics and W&B id), unless ``ckpt_path=auto`` or ``train.overwrite=true`` says so."""
    found = [
        p.relative_to(out) for p in (out / "checkpoints" / "last.ckpt", out / "summary.json") if p.is_file()
    ]
    if found:
        raise ConfigError(
            f"{out} already holds a run ({', '.join(map(str, found))}): continue it with ckpt_path=auto, "
            "start it over with train.overwrite=true, or choose another hydra.run.dir"
        )


def check_requeued_run_dir(out: Path) -> None:
    """A ConfigError when a requeued Slurm job finds its run's outputs but no ``last.ckpt`` to continue
    from (deleted, or on a filesystem that lost it): starting over would overwrite the run."""
    found = [
        str(p.relative_to(out))
        for p in (out / "summary.json", out / "metrics.csv", *sorted((out / "checkpoints").glob("*.ckpt")))
        if p.is_file()
    ]
    if found:
        raise ConfigError(
            f"this requeued job's run dir {out} holds a run ({', '.join(found)}) but no "
            "checkpoints/last.ckpt to continue it from: put the checkpoint back, or start the run over "
            "with train.overwrite=true"
        )


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


# --- signals ------------------------------------------------------------------------------------------
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


def saved_signal_handlers() -> dict[signal.Signals, Any]:
    return {sig: signal.getsignal(sig) for sig in HANDLED_SIGNALS}


def restore_signal_handlers(handlers: dict[signal.Signals, Any]) -> None:
    """Put back the handlers of before the run (Lightning leaves its own installed)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig, handler in handlers.items():
        if handler is not None and signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)


def take_early_signal(preemption: Preemption | None) -> signal.Signals | None:
    """A stop signal noted before training started (see :func:`install_early_handlers`); the
    Preemption callback hears of later ones. Without that callback, the signal does what it would have."""
    if preemption is not None:
        preemption.early_signals = _early_signals
    if not _early_signals:
        return None
    sig = signal.Signals(_early_signals[-1])
    _early_signals.clear()
    if preemption is None or sig not in preemption.signals:
        signal.signal(sig, signal.SIG_DFL)
        signal.raise_signal(sig)
    return sig


# --- the run dir's lock -------------------------------------------------------------------------------
LOCK_NAME = ".ganforge.lock"
_locks: dict[Path, tuple[int, bool]] = {}  # run dir -> (the lock file's descriptor, dir made for it)


def is_rank_zero() -> bool:
    """Rank 0 of a (possibly distributed) run, from the environment as Lightning reads it."""
    return pl.utilities.rank_zero_only.rank == 0


def lock_run_dir(out: Path) -> bool:
    """Take the run dir's advisory lock (``flock`` on ``<run>/.ganforge.lock``, released by the kernel
    when the process ends, however it ends) for this process; True when taken here. A RunDirInUseError
    when another process holds it. Only rank 0 of a distributed run takes it."""
    key = out.resolve()
    if not is_rank_zero() or key in _locks:
        return False
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise RunDirInUseError(
                f"{out} is in use by another ganforge-train ({holder}); wait for it to end, or choose "
                "another hydra.run.dir"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino  # not unlinked by the holder meanwhile
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    stale = os.pread(fd, 200, 0).decode(errors="replace").strip()
    if stale:  # written by a process that ended without releasing it (killed): the kernel released it
        log.warning("%s: taking over the stale lock of %s (no longer running)", out, stale)
    os.ftruncate(fd, 0)
    os.pwrite(
        fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%H:%M:%S')}".encode(), 0
    )
    _locks[key] = (fd, made)
    return True


def unlock_run_dir(out: Path) -> None:
    """Release the lock taken by :func:`lock_run_dir` and remove its file (and the run dir, when it
    was made for the lock and is still empty)."""
    fd, made = _locks.pop(out.resolve(), (None, False))
    if fd is None:
        return
    try:
        (out / LOCK_NAME).unlink(missing_ok=True)  # while holding it: a waiting process sees a new inode
    finally:
        os.close(fd)
    if made:
        try:
            out.rmdir()
        except OSError:
            pass


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


def report(summary: dict[str, Any]) -> None:
    """Where the outputs are, printed for a person."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ganforge run", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("status", summary["status"])
    table.add_row("generator steps", f"{summary['g_steps']} / {summary['steps_target']}")
    table.add_row("wall time", f"{summary['wall_time_s']:.1f} s")
    last, best = summary["last"], summary.get("best") or {}
    for key in ("train/d_loss", "train/g_loss", *sorted(k for k in {*last, *best} if k.startswith("val/"))):
        final = f"{last[key]:.4g}" if key in last else "-"
        table.add_row(key, final + (f"  (best {best[key]:.4g})" if key in best else ""))
    if summary.get("health"):
        table.add_row("warnings", ", ".join(summary["health"]), style="yellow")
    console = Console(stderr=True)
    console.print(table)
    wandb = summary.get("wandb") or {}
    paths = [("output_dir", "outputs"), ("checkpoint", "checkpoint"), ("samples", "samples")]
    for key, label in [*paths, ("wandb", "W&B run")]:
        value = summary.get(key) if key != "wandb" else wandb.get("url") or wandb.get("dir")
        if value:
            console.print(f"[bold]{label:>10}[/bold]  {value}", soft_wrap=True, highlight=False)


def main() -> float | None:
    """Entry point of ``ganforge-train``: user mistakes exit with one line and code 2, also those that
    Hydra would meet before the run starts (a run dir it cannot create); an unknown key gets a hint."""
    handlers = saved_signal_handlers()  # put back at the end (main() called in a process of one's own)
    install_early_handlers()  # (already done at import when run as a command)
    overrides = [arg for arg in sys.argv[1:] if "=" in arg and not arg.startswith("-")]
    run_dir = None
    try:
        for arg in overrides:
            key, value = arg.split("=", 1)
            if key.lstrip("+") in ("hydra.run.dir", "hydra.sweep.dir"):
                check_writable(Path(value), key.lstrip("+"), folder=True)
            if key.lstrip("+") == "hydra.run.dir" and not NOT_A_RUN.intersection(sys.argv[1:]):
                run_dir = Path(value)
        # a run dir another process trains in: refused before Hydra writes its .hydra/ and train.log
        locked = run_dir is not None and run_dir.is_dir() and lock_run_dir(run_dir)
    except ConfigError as err:
        print(f"ganforge-train: error: {err}", file=sys.stderr)
        restore_signal_handlers(handlers)
        sys.exit(err.exit_code)
    global _found  # noqa: PLW0603
    _found = RunDirState.take(run_dir) if run_dir is not None else None
    try:
        return run_job()
    except SystemExit as exc:
        if exc.code == 1:  # Hydra printed why; e.g. train.stepz=5: add "did you mean train.steps?"
            for hint in key_hints(overrides):
                print(f"ganforge-train: {hint}", file=sys.stderr)
        raise
    finally:
        if locked:
            unlock_run_dir(run_dir)
        restore_signal_handlers(handlers)


# flags with which ganforge-train runs no job in hydra.run.dir
NOT_A_RUN = {
    "-m",
    "--multirun",
    "--help",
    "-h",
    "--hydra-help",
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--shell-completion",
    "-sc",
}


class SweepJobError(CompactHydraException):
    """A sweep job refused or stopped with a one-line reason: Hydra reports it in that line (no traceback)."""


class RunDirState:
    """What a run dir held before Hydra wrote into it (``.hydra/`` and ``train.log``), so that a run
    refused before training can leave it as it was found."""

    def __init__(
        self, path: Path, existed: bool, anchor: Path, hydra: dict[str, bytes] | None, log_size: int | None
    ):
        self.path, self.existed, self.anchor, self.hydra, self.log_size = (
            path,
            existed,
            anchor,
            hydra,
            log_size,
        )

    @classmethod
    def take(cls, path: Path) -> RunDirState:
        anchor = path
        while not anchor.exists() and anchor != anchor.parent:
            anchor = anchor.parent
        folder = path / ".hydra"
        hydra = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} if folder.is_dir() else None
        log_file = path / "train.log"
        return cls(
            path, path.exists(), anchor, hydra, log_file.stat().st_size if log_file.is_file() else None
        )

    def restore(self) -> None:
        """Put back ``.hydra/`` and ``train.log`` as they were (the run dir itself held a run)."""
        folder = self.path / ".hydra"
        if self.hydra is None:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for name, data in self.hydra.items():
                (folder / name).write_bytes(data)
        log_file = self.path / "train.log"
        if self.log_size is None:
            log_file.unlink(missing_ok=True)
        elif log_file.is_file():
            os.truncate(log_file, self.log_size)


_found: RunDirState | None = None  # the run dir as main() found it (an explicit hydra.run.dir)
HYDRA_ONLY = {".hydra", "train.log", LOCK_NAME}  # what a run dir holds before its run writes anything


def leave_as_found(out: Path) -> None:
    """After a run was refused before training: remove the run dir Hydra made for it (and the empty
    folders above it that it made), or put back what Hydra overwrote in an existing one."""
    for logger in [logging.getLogger(), *logging.root.manager.loggerDict.values()]:
        for handler in list(getattr(logger, "handlers", [])):
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == out:
                logger.removeHandler(handler)
                handler.close()
    state = _found if _found is not None and _found.path.resolve() == out.resolve() else None
    if not out.is_dir():
        return
    if state is not None and state.existed:
        state.restore()
        return
    if state is None and not set(os.listdir(out)) <= HYDRA_ONLY:
        return  # not made by this job
    shutil.rmtree(out, ignore_errors=True)
    anchor = state.anchor if state is not None else Path.cwd()
    parent = out.parent
    while parent != anchor and parent.is_relative_to(anchor) and parent != parent.parent:
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break
        parent = parent.parent


@hydra.main(version_base="1.3", config_path=CONFIG_PACKAGE, config_name="train")
def run_job(cfg: DictConfig) -> float | None:
    """One ``ganforge-train`` job (Hydra calls it once per run, once per job of a sweep)."""
    try:
        summary = train(cfg)
    except NothingToTrainError as err:
        if not requeued():
            return job_failed(err)
        # Slurm requeued a job that had finished: that is no failure (exit 0), nothing is changed
        print(f"ganforge-train: {err}", file=sys.stderr)
        return None
    except GanforgeError as err:
        return job_failed(err)
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once (the first one stops after the batch)
        print("ganforge-train: interrupted: stopped without writing a checkpoint", file=sys.stderr)
        finish_wandb(exit_code=INTERRUPTED_EXIT)
        sys.exit(INTERRUPTED_EXIT)
    except BaseException:
        finish_wandb(exit_code=1)
        raise
    preempted = summary["status"] == "preempted"
    finish_wandb(exit_code=0, preempting=preempted)
    rank = pl.utilities.rank_zero_only.rank
    if HydraConfig.initialized() and rank == 0:
        report(summary)
    if preempted:
        exit_after_preemption(summary["preemption"], rank)
    return optimized_value(cfg.get("optimized_metric"), summary)


def requeued() -> bool:
    """Whether this is a Slurm job that has been requeued (it continues its own run dir)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def job_failed(err: GanforgeError) -> None:
    """The one line of ``err``, then its exit code (a sweep job: Hydra records the job as failed and
    reports it in that line). A run refused before training leaves its run dir as it was found."""
    line = f"ganforge-train: error: {err}"
    print(line, file=sys.stderr)
    finish_wandb(exit_code=err.exit_code)
    if getattr(err, "refused", False) and not isinstance(err, RunDirInUseError) and is_rank_zero():
        if HydraConfig.initialized():
            leave_as_found(Path(HydraConfig.get().runtime.output_dir))
    if in_multirun():  # the sweep records this job as failed and runs the others
        raise SweepJobError(line) from None
    sys.exit(err.exit_code)


def in_multirun() -> bool:
    """Whether this is one job of a Hydra multirun (a sweep)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def optimized_value(metric: str | None, summary: dict[str, Any]) -> float | None:
    """The final value of ``metric`` (``optimized_metric``), what sweepers such as Optuna minimize."""
    if not metric:
        return None
    value = summary["last"].get(metric)
    if value is None:
        logged = ", ".join(sorted(summary["last"])) or "nothing"
        print(f"ganforge-train: warning: optimized_metric={metric} not logged ({logged})", file=sys.stderr)
    return value


if __name__ == "__main__":
    main()

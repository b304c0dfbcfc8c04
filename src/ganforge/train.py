"""``ganforge-train``: compose the config, build data, nets, loss and optimizers, train, summarise."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
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
from ganforge.callbacks.samples import SampleGrid
from ganforge.checkpoint_file import (
    check_free_space,
    check_writable,
    checkpoint_bytes,
    write_error,
    write_text_atomically,
)
from ganforge.config import check_config, key_hints, make, resolve_ckpt_path
from ganforge.errors import ConfigError, DivergedError, GanforgeError, ResourceError
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
    """Train the GAN described by ``cfg``; returns the run summary (also written as summary.json)."""
    quiet_lightning()
    check_config(cfg)
    rerun = run_dir_source()
    if rerun is not None:  # a run dir's config read back (-cd <run>/.hydra -cn config): data, not code
        check_targets(cfg, f"{rerun}/config.yaml", cfg.get("allow_targets") or ())
    out = Path(cfg.paths.output_dir)
    if cfg.get("metrics"):  # the metrics' classifier and reference features are cached there
        check_writable(Path(cfg.paths.cache_dir), "paths.cache_dir", folder=True)
    ckpt_path = resolve_ckpt_path(requeued_ckpt_path(cfg.ckpt_path, out), out, cfg)
    requeued = int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0  # a requeued job continues its run dir
    dev_run = bool(cfg.trainer.get("fast_dev_run"))  # a quick check of the setup: nothing written but the log
    fresh_ok = requeued or dev_run or cfg.train.get("overwrite", False) or cfg.ckpt_path in ("auto", "last")
    if ckpt_path is None and not fresh_ok:
        check_fresh_run_dir(out)
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

    loggers = [] if dev_run else build_loggers(cfg.get("logger"), resuming=ckpt_path is not None)
    trainer: pl.Trainer = make(
        cfg.trainer,
        max_steps=cfg.train.steps * (cfg.train.n_critic + 1),
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
    try:
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except torch.OutOfMemoryError:
            raise out_of_memory(cfg, module.g_step) from None
        except OSError as exc:  # any other output (a sample grid) on a full disk: one line too
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise write_error(Path(exc.filename or out), exc) from None
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
        if trainer.is_global_zero and not dev_run:
            try:
                write_text_atomically(out / "summary.json", json.dumps(summary, indent=2) + "\n")
            except ResourceError as err:  # e.g. the disk that stopped the run: keep its error first
                if failure is None:
                    raise
                log.warning("%s", err)
    return summary


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


def failed_status(exc: BaseException) -> str:
    """summary.json's status for a run that ended with ``exc``."""
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
    overrides = [arg for arg in sys.argv[1:] if "=" in arg and not arg.startswith("-")]
    try:
        for arg in overrides:
            key, value = arg.split("=", 1)
            if key.lstrip("+") in ("hydra.run.dir", "hydra.sweep.dir"):
                check_writable(Path(value), key.lstrip("+"), folder=True)
    except ConfigError as err:
        print(f"ganforge-train: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    try:
        return run_job()
    except SystemExit as exc:
        if exc.code == 1:  # Hydra printed why; e.g. train.stepz=5: add "did you mean train.steps?"
            for hint in key_hints(overrides):
                print(f"ganforge-train: {hint}", file=sys.stderr)
        raise


@hydra.main(version_base="1.3", config_path=CONFIG_PACKAGE, config_name="train")
def run_job(cfg: DictConfig) -> float | None:
    """One ``ganforge-train`` job (Hydra calls it once per run, once per job of a sweep)."""
    try:
        summary = train(cfg)
    except GanforgeError as err:
        print(f"ganforge-train: error: {err}", file=sys.stderr)
        finish_wandb(exit_code=err.exit_code)
        if in_multirun():  # the sweep records this job as failed and runs the others
            raise
        sys.exit(err.exit_code)
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

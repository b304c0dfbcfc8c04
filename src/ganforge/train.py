"""``ganforge-train``: compose the config, build data, nets, loss and optimizers, train, summarise."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ganforge.build import build
from ganforge.callbacks.guard import DivergenceGuard
from ganforge.callbacks.health import health_issues
from ganforge.callbacks.metrics import MetricsCallback
from ganforge.callbacks.preemption import (
    Preemption,
    exit_after_preemption,
    lightning_plugins,
    requeued_ckpt_path,
)
from ganforge.config import CONFIG_PACKAGE, check_config, make, resolve_ckpt_path
from ganforge.errors import DivergedError, GanforgeError
from ganforge.loggers import build_loggers, finish_wandb, hydra_choices, wandb_location

QUIET_WARNINGS = (
    r".*does not have many workers.*",
    r".*Experiment logs directory .* exists and is not empty.*",
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*The `srun` command is available on your system but is not used.*",  # local runs on a Slurm host
)
QUIET_INFO = ("litlogger", "`Trainer.fit` stopped")


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
    out = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(requeued_ckpt_path(cfg.ckpt_path, out), out)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, module = build(cfg)
    module.run_config = OmegaConf.to_container(cfg, resolve=True)  # saved in checkpoints: eval, sample
    callbacks = [make(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    for callback in callbacks:  # e.g. metrics that cannot work on this data: fail before any logger starts
        if hasattr(callback, "check"):
            callback.check(datamodule)

    loggers = build_loggers(cfg.get("logger"))
    trainer: pl.Trainer = make(
        cfg.trainer,
        max_steps=cfg.train.steps * (cfg.train.n_critic + 1),
        logger=loggers or False,
        callbacks=callbacks,
        plugins=lightning_plugins(),
    )
    hparams = {**OmegaConf.to_container(cfg, resolve=True), **hydra_choices()}  # + choice/<group>
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)

    summary: dict[str, Any] = {"status": "running", "output_dir": str(out)}
    start = time.time()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        summary["status"] = "finished" if module.g_step >= cfg.train.steps else "stopped"
        for cb in callbacks:
            if isinstance(cb, Preemption) and cb.stopped_at is not None and summary["status"] == "stopped":
                summary.update(status="preempted", preemption=cb.report())
    except BaseException as exc:
        summary["status"] = "diverged" if isinstance(exc, DivergedError) else "crashed"
        summary["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        summary.update(
            g_steps=module.g_step,
            d_steps=module.g_step * cfg.train.n_critic,
            steps_target=cfg.train.steps,
            wall_time_s=round(time.time() - start, 3),
            last=module.last_metrics,
            **metrics_summary(callbacks),
            config_digest=config_digest(cfg),
            resumed_from=str(ckpt_path) if ckpt_path else None,
            checkpoint=str(out / "checkpoints" / "last.ckpt"),
            samples=str(out / "samples"),
            wandb=wandb_location(trainer.loggers),
            health=health_issues(callbacks),
            guard=next((cb.report() for cb in callbacks if isinstance(cb, DivergenceGuard)), None),
        )
        if trainer.is_global_zero:
            out.mkdir(parents=True, exist_ok=True)
            (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


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


@hydra.main(version_base="1.3", config_path=CONFIG_PACKAGE, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Entry point of ``ganforge-train``: user mistakes exit with one line and code 2."""
    try:
        summary = train(cfg)
    except GanforgeError as err:
        print(f"ganforge-train: error: {err}", file=sys.stderr)
        finish_wandb(exit_code=err.exit_code)
        if in_multirun():  # the sweep records this job as failed and runs the others
            raise
        sys.exit(err.exit_code)
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

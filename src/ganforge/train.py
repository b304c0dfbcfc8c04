"""``ganforge-train``: compose the config, check it, then train (:mod:`ganforge.fit`) and summarise.

Lightning and the nets are imported only once the config passed its checks: a refused run, ``--help``
and ``--cfg`` answer without waiting for those imports (seconds).
"""
# ruff: noqa: E402  (the signal handlers are installed before the slow imports)

from __future__ import annotations

import sys
from pathlib import Path

from ganforge.signals import install_early_handlers, restore_signal_handlers, saved_signal_handlers

if __name__ == "__main__" or Path(sys.argv[0]).name == "ganforge-train":  # the command line, not an import
    install_early_handlers()

from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from ganforge import CONFIG_PACKAGE
from ganforge.checkpoint_file import check_writable
from ganforge.config import check_config, key_hints
from ganforge.errors import ConfigError, GanforgeError, NothingToTrainError, RunDirInUseError, refusals
from ganforge.process import finish_wandb, in_multirun, is_rank_zero, process_rank, requeued
from ganforge.run_dir import RunDirState, check_run_start, leave_as_found, lock_run_dir, unlock_run_dir

INTERRUPTED_EXIT = 128 + 2  # as a shell reports a process ended by SIGINT


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the GAN described by ``cfg``; returns the run summary (also written as summary.json).

    The run dir is locked while it runs (a second process on it is refused), and the signal handlers
    are those of before when it returns (Lightning's and ours are gone).
    """
    handlers = saved_signal_handlers()
    out = Path(cfg.paths.output_dir)
    try:
        with refusals():
            check_config(cfg)
            locked = lock_run_dir(out)
        try:
            with refusals():
                start = check_run_start(cfg, out)
            from ganforge.fit import fit  # Lightning's imports: only for a run that passed these checks

            return fit(cfg, out, start)
        finally:
            if locked:
                unlock_run_dir(out)
    finally:
        restore_signal_handlers(handlers)


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


_found: RunDirState | None = None  # the run dir as main() found it (an explicit hydra.run.dir)


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
    rank = process_rank()
    if HydraConfig.initialized() and rank == 0:
        report(summary)
    if preempted:
        from ganforge.callbacks.preemption import exit_after_preemption

        exit_after_preemption(summary["preemption"], rank)
    return optimized_value(cfg.get("optimized_metric"), summary)


def job_failed(err: GanforgeError) -> None:
    """The one line of ``err``, then its exit code (a sweep job: Hydra records the job as failed and
    reports it in that line). A run refused before training leaves its run dir as it was found."""
    line = f"ganforge-train: error: {err}"
    print(line, file=sys.stderr)
    finish_wandb(exit_code=err.exit_code)
    if err.refused and not isinstance(err, RunDirInUseError) and is_rank_zero():
        if HydraConfig.initialized():
            leave_as_found(Path(HydraConfig.get().runtime.output_dir), _found)
    if in_multirun():  # the sweep records this job as failed and runs the others
        raise SweepJobError(line) from None
    sys.exit(err.exit_code)


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

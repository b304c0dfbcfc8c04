"""What a ``ganforge-train`` process knows of itself without importing Lightning: its rank, whether
it is a requeued Slurm job or one job of a sweep, and how to close its W&B run."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning_utilities.core.rank_zero import rank_zero_only

# where Lightning reads a process's rank before a trainer sets it (the first one set wins)
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def process_rank() -> int:
    """This process's global rank: the one a Lightning trainer set, else the environment's, as
    Lightning reads it (the same ``rank_zero_only.rank`` Lightning's rank-zero helpers use)."""
    rank = getattr(rank_zero_only, "rank", None)
    if rank is not None:
        return int(rank)
    value = next((os.environ[key] for key in RANK_VARIABLES if os.environ.get(key) is not None), "0")
    return int(value)


def is_rank_zero() -> bool:
    """Rank 0 of a (possibly distributed) run."""
    return process_rank() == 0


def requeued() -> bool:
    """Whether this is a Slurm job that has been requeued (it continues its own run dir)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def requeued_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """``auto`` in a requeued Slurm job whose run dir has a ``last.ckpt`` (it continues); else ``ckpt_path``.

    Whatever ``ckpt_path`` the job was submitted with, its second start must continue its own run.
    """
    return "auto" if requeued() and (output_dir / "checkpoints" / "last.ckpt").is_file() else ckpt_path


def in_multirun() -> bool:
    """Whether this is one job of a Hydra multirun (a sweep)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def finish_wandb(exit_code: int = 0, preempting: bool = False) -> None:
    """Close the W&B run if one is open (also after an error), so its files are complete.

    ``preempting``: the run stopped to be requeued and will continue (W&B shows it as preempted).
    """
    wandb: Any = sys.modules.get("wandb")  # not imported: no W&B run was started
    if wandb is not None and getattr(wandb, "run", None) is not None:
        try:
            if preempting:
                wandb.run.mark_preempting()
            wandb.finish(exit_code=exit_code)
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"wandb.finish failed: {exc}", stacklevel=2)

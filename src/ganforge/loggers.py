"""Start the configured loggers; one that fails to start warns and the run goes on without it."""

from __future__ import annotations

import sys
import warnings
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger


def build_loggers(cfg: DictConfig | None) -> list[Logger]:
    """Instantiate every logger in ``cfg`` and start it (W&B's run begins here, not mid-training)."""
    loggers: list[Logger] = []
    for name, conf in (cfg or {}).items():
        if conf is None:
            continue
        try:
            logger = instantiate(conf)
            _ = logger.experiment  # starts the backend now, so a failure is caught here
        except Exception as exc:  # noqa: BLE001 - any backend failure must not stop training
            warnings.warn(
                f"logger {name!r} failed to start and is disabled: {type(exc).__name__}: {exc}", stacklevel=2
            )
            continue
        loggers.append(logger)
    return loggers


def finish_wandb(exit_code: int = 0, preempting: bool = False) -> None:
    """Close the W&B run if one is open (also after an error), so its files are complete.

    ``preempting``: the run stopped to be requeued and will continue (W&B shows it as preempted).
    """
    wandb: Any = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        try:
            if preempting:
                wandb.run.mark_preempting()
            wandb.finish(exit_code=exit_code)
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"wandb.finish failed: {exc}", stacklevel=2)

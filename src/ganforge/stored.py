"""A checkpoint (or a generator of ``ganforge-export``) read and checked with torch alone: its dict, the
config it was trained with (only targets ganforge writes) and its task. ``ganforge-eval`` and
``ganforge-sample`` read it before they import Lightning and the metric libraries (seconds), so that a
mistake (a wrong file, a metric or option the checkpoint's task cannot have) is refused at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class

from ganforge.checkpoint_file import checked_checkpoint, is_export, read_checkpoint, read_saved
from ganforge.errors import ConfigError
from ganforge.targets import check_targets

GENERATION_TASK = "ganforge.tasks.generation.GenerationTask"  # a config without a task group trained this


@dataclass
class StoredRun:
    """What :func:`read_run` found: ``saved`` (the file's dict), ``config`` (the run config, checked),
    ``task`` (its task's name: generation, paired or unpaired) and whether it is an exported G."""

    path: str
    saved: dict[str, Any]
    config: dict[str, Any]
    task: str
    exported: bool = False


def read_run(path: str | Path, exported: bool = False) -> StoredRun:
    """The checkpoint at ``path`` (``exported``: or an exported generator) with its stored config, whose
    targets must be ones ganforge writes (:func:`~ganforge.targets.check_targets`); a ConfigError in one
    line naming the file otherwise."""
    saved = read_saved(path) if exported else read_checkpoint(path)
    if exported and is_export(saved):
        config = saved.get("config")
        if not isinstance(config, dict) or "model" not in config:
            raise ConfigError(f"ckpt_path={path}: an exported generator with parts missing (damaged?)")
    else:
        config = checked_checkpoint(saved, path).get("ganforge", {}).get("config")
        if not isinstance(config, dict):
            raise ConfigError(
                f"ckpt_path={path}: the checkpoint holds no ganforge config (written by another tool?)"
            )
    check_targets(config, f"ckpt_path={path}")
    task = config.get("task") or {"_target_": GENERATION_TASK}
    try:
        name = getattr(get_class(str(task.get("_target_", GENERATION_TASK))), "name", None)
    except (ImportError, ValueError):
        name = None
    if name not in ("generation", "paired", "unpaired"):
        raise ConfigError(f"ckpt_path={path}: its task {task.get('_target_')} is not a ganforge task")
    return StoredRun(str(path), saved, config, name, exported and is_export(saved))


def pick_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; a ConfigError for a device this machine lacks."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device={name}: not a device (auto, cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name}: this machine has no CUDA device; use device=cpu or auto")
    return device

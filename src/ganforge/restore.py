"""Rebuild a run from one of its checkpoints: the config it was trained with, its data and its nets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ganforge.build import build
from ganforge.checkpoint_file import read_checkpoint
from ganforge.errors import ConfigError
from ganforge.targets import check_targets


def restore(path: str | Path, device: torch.device | str = "cpu") -> tuple[DictConfig, Any, Any, dict]:
    """(config, data module, GANModule with the checkpoint's weights in eval mode, checkpoint dict).

    The stored config instantiates only targets ganforge writes (:mod:`ganforge.targets`), plus those
    the command's ``allow_targets`` trusts; anything else is refused before any of it is built."""
    ckpt = read_checkpoint(path)
    config = ckpt.get("ganforge", {}).get("config")
    if config is None:
        raise ConfigError(
            f"ckpt_path={path}: the checkpoint holds no ganforge config (written by another tool?)"
        )
    check_targets(config, f"ckpt_path={path}")
    cfg = OmegaConf.create(config)
    datamodule, module = build(cfg)
    module.load_state_dict(ckpt["state_dict"])
    module.g_step = int(ckpt["ganforge"].get("g_step", 0))
    module.to(device).eval()
    return cfg, datamodule, module, ckpt


def pick_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)

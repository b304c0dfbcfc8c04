"""Reading a checkpoint file safely: ``weights_only`` unpickling, one-line errors for what is not one."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from ganforge.errors import ConfigError


def directory_hint(path: Path) -> str:
    """What to say when a checkpoint path is a directory (a run dir, or its checkpoints/)."""
    for candidate in (path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
        if candidate.is_file():
            return f"a directory, not a checkpoint file; did you mean ckpt_path={candidate}?"
    return "a directory, not a checkpoint file (pass e.g. <run dir>/checkpoints/last.ckpt)"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path``; a ConfigError naming the file when it is missing or unreadable."""
    if path in (None, "", "???"):
        raise ConfigError("ckpt_path=<file> is required (a checkpoint written by ganforge-train)")
    file = Path(path).expanduser()
    if file.is_dir():
        raise ConfigError(f"ckpt_path={path}: {directory_hint(file)}")
    if not file.is_file():
        raise ConfigError(f"ckpt_path={path}: no such file")
    if file.stat().st_size == 0:
        raise ConfigError(f"ckpt_path={path}: an empty file, not a checkpoint")
    try:
        ckpt = load_weights_only(file)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))  # weights_only met a type it will not build
        if found is None:
            raise ConfigError(f"ckpt_path={path}: not a readable checkpoint (truncated or corrupt)") from None
        raise ConfigError(
            f"ckpt_path={path}: refused: the checkpoint holds {found.group(1)}, which could run code when "
            "loaded; ganforge checkpoints hold only tensors, numbers, strings and containers of them"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise ConfigError(
            f"ckpt_path={path}: not a readable checkpoint (truncated or corrupt: {exc})"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"ckpt_path={path}: not a Lightning checkpoint")
    return ckpt


def load_weights_only(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load`` that unpickles only tensors, numbers, strings and containers (no code can run).

    Everything ganforge and Lightning put into a checkpoint is of these types, so every read of a
    checkpoint (eval, sample, resume, the guard's rollback) goes through here.
    """
    return torch.load(path, map_location=map_location, weights_only=True)

"""Checkpoint files: reading them safely (``weights_only`` unpickling, one-line errors for what is not
one) and writing outputs atomically (a temporary name, then a rename; a full disk is one line)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pickle
import re
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganforge.errors import ConfigError, ResourceError

MB = 1 << 20


def directory_hint(path: Path) -> str:
    """What to say when a checkpoint path is a directory (a run dir, or its checkpoints/)."""
    for candidate in (path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
        if candidate.is_file():
            return f"a directory, not a checkpoint file; did you mean ckpt_path={candidate}?"
    return "a directory, not a checkpoint file (pass e.g. <run dir>/checkpoints/last.ckpt)"


EXPORT_KEY = "ganforge_generator"  # marks a file of ganforge-export (G alone); its value: the format version


def is_export(saved: Any) -> bool:
    """Whether ``saved`` (what a file unpickled to) is a generator written by ``ganforge-export``."""
    return isinstance(saved, dict) and EXPORT_KEY in saved


def export_hint(path: str | Path) -> str:
    """What to say when an exported generator is given where a training checkpoint is needed."""
    return (
        f"ckpt_path={path}: an exported generator (ganforge-export), which holds G alone, for "
        "ganforge-sample; ganforge-eval takes the run's checkpoints/best.ckpt or last.ckpt, a resume its "
        "last.ckpt"
    )


def read_saved(path: str | Path) -> Any:
    """What the file at ``path`` holds (a checkpoint, or an exported generator), unpickled with
    ``weights_only``; a ConfigError naming the file when it is missing, unreadable or would run code."""
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
        return load_weights_only(file)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))  # weights_only met a type it will not build
        if found is None:
            raise ConfigError(f"ckpt_path={path}: not a readable checkpoint (truncated or corrupt)") from None
        raise ConfigError(
            f"ckpt_path={path}: refused: the checkpoint holds {found.group(1)}, which could run code when "
            "loaded; ganforge checkpoints hold only tensors, numbers, strings and containers of them"
        ) from None
    # random bytes read as a legacy pickle fail in many ways (IndexError, KeyError, ...): one line each
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, LookupError, TypeError) as exc:
        raise ConfigError(
            f"ckpt_path={path}: not a readable checkpoint (truncated or corrupt: {exc})"
        ) from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path`` (:func:`read_saved`); a ConfigError for a file that is not a
    Lightning checkpoint (an exported generator among them)."""
    return checked_checkpoint(read_saved(path), path)


def checked_checkpoint(saved: Any, path: str | Path) -> dict[str, Any]:
    """``saved`` when it is a Lightning checkpoint, else a ConfigError naming ``path`` and what it is."""
    if is_export(saved):
        raise ConfigError(export_hint(path))
    if not isinstance(saved, dict) or "state_dict" not in saved:
        raise ConfigError(f"ckpt_path={path}: not a Lightning checkpoint")
    return saved


def check_resumable(path: Path, saved: dict) -> None:
    """A ConfigError when the checkpoint to resume from (read as ``saved``) holds weights only (a
    ``best.ckpt``): Lightning would fail on the missing optimizer state after the run's setup."""
    if "optimizer_states" in saved:
        return
    last = path.with_name("last.ckpt")
    instead = str(last) if last.is_file() else "the run's checkpoints/last.ckpt"
    raise ConfigError(
        f"ckpt_path={path}: holds the weights only (for ganforge-eval and ganforge-sample), not the "
        f"optimizer state a resume needs; resume from {instead} (or ckpt_path=auto with "
        "hydra.run.dir=<that run>)"
    )


def load_weights_only(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load`` that unpickles only tensors, numbers, strings and containers (no code can run).

    Everything ganforge and Lightning put into a checkpoint is of these types, so every read of a
    checkpoint (eval, sample, resume, the guard's rollback) goes through here.
    """
    return torch.load(path, map_location=map_location, weights_only=True)


def temp_path(path: Path) -> Path:
    """Where ``path`` is written before the rename that publishes it (same directory: same filesystem)."""
    return path.with_name(f".{path.name}.tmp")


def free_bytes(directory: Path) -> int:
    """Free space on the filesystem that holds ``directory`` (or its nearest existing parent)."""
    directory = Path(directory).absolute()
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return shutil.disk_usage(directory).free


def write_error(path: Path, exc: OSError, needed: int | None = None) -> ResourceError:
    """One line for an output that could not be written: which file, why, and on a full disk the space
    it needs and the space left."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        size = f"about {needed / MB:.1f} MB" if needed else "more space"
        return ResourceError(
            f"cannot write {path}: no space left on the device (it needs {size}, "
            f"{free_bytes(path.parent) / MB:.1f} MB free); free some space, then resume with ckpt_path=auto"
        )
    return ResourceError(f"cannot write {path}: {exc.strerror or exc}")


def write_atomically(
    path: Path, write: Callable[[Path], None], publish: bool = True, needed: int | None = None
) -> None:
    """``write(temp)``, then rename the temporary file to ``path``: ``path`` is the old file or the new
    one, never a part of one. When the write fails (a full disk), the temporary file is removed, the
    old ``path`` stays and a :class:`ResourceError` says why in one line. ``publish=False``: only
    write (a DDP rank that does not own the file)."""
    tmp = temp_path(path)
    try:
        write(tmp)
        if publish:
            os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(path, exc, needed) from None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold ``flock`` on ``<path>.lock`` for the block (released by the kernel however the process ends):
    processes that would each make the same cached file (the jobs of a sweep starting together) make it
    once, the others wait and then read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_text_atomically(path: Path, text: str) -> None:
    """A text file (e.g. ``summary.json``) written with :func:`write_atomically`: never empty or cut."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: tmp.write_text(text), needed=len(text.encode()))


def tensor_bytes(tensors: Any) -> int:
    """Bytes of the tensors in a (nested) dict/list/tuple, e.g. a state dict or an optimizer state."""
    if isinstance(tensors, torch.Tensor):
        return tensors.numel() * tensors.element_size()
    if isinstance(tensors, dict):
        return sum(tensor_bytes(v) for v in tensors.values())
    if isinstance(tensors, (list, tuple)):
        return sum(tensor_bytes(v) for v in tensors)
    return 0


def checkpoint_bytes(
    module: nn.Module, optimizers: list[torch.optim.Optimizer] | tuple = (), weights_only: bool = False
) -> int:
    """About the size a checkpoint of ``module`` will have on disk: its state dict, plus (unless
    ``weights_only``: ``best.ckpt``) the optimizers' state (before their first step, two moments per
    trained parameter, as Adam keeps), plus 5% and 64 KB for the pickle and the metadata (within a few %
    of the real size for ring8/MLP and DCGAN)."""
    weights = tensor_bytes(module.state_dict())
    if weights_only:
        return int(1.05 * weights) + 64 * 1024
    trained = sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)
    state = sum(tensor_bytes(opt.state_dict()["state"]) for opt in optimizers)
    return int(1.05 * (weights + max(state, 2 * trained))) + 64 * 1024


def check_free_space(directory: Path, needed: int) -> None:
    """A :class:`ResourceError` before training when ``directory`` cannot take a checkpoint of ``needed``
    bytes (better than training for hours and then saving nothing)."""
    free = free_bytes(directory)
    if free < needed:
        raise ResourceError(
            f"not enough free space for checkpoints in {directory}: one needs about {needed / MB:.1f} MB, "
            f"{free / MB:.1f} MB free; free some space or write the run elsewhere (hydra.run.dir=...)"
        )


def check_writable(path: Path, key: str, folder: bool = False) -> None:
    """A ConfigError naming ``key`` when ``path`` (a file, or with ``folder`` a folder, about to be
    written) cannot be: a file stands where a folder must be, or the place is read-only. Checked
    before any work starts."""
    path = Path(path).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if (existing != path or folder) and not existing.is_dir():
        raise ConfigError(f"{key}={path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK):
        where = "" if existing == path else f" in {existing}"
        raise ConfigError(f"{key}={path}: cannot write{where} (read-only, or no permission)")

"""A run dir's lock (one ``ganforge-train`` process at a time), how a run starts in it (fresh or from
which checkpoint) and the checks that keep a fresh start from overwriting a run, and what a run refused
before training leaves behind (nothing of its own). Lightning is not imported here: these refusals come
before its seconds of imports."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ganforge.checkpoint_file import check_writable
from ganforge.config import resolve_ckpt_path
from ganforge.errors import ConfigError, RunDirInUseError
from ganforge.process import is_rank_zero, requeued, requeued_ckpt_path
from ganforge.targets import check_targets

LOCK_NAME = ".ganforge.lock"
HYDRA_ONLY = {".hydra", "train.log", LOCK_NAME}  # what a run dir holds before its run writes anything
_locks: dict[Path, tuple[int, bool]] = {}  # run dir -> (the lock file's descriptor, dir made for it)
log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class RunStart:
    """How a run starts in its run dir: the checkpoint it continues (None: a fresh start) and whether it
    is a ``trainer.fast_dev_run`` (a quick check of the setup: nothing written but the log)."""

    ckpt_path: Path | None
    dev_run: bool


def check_run_start(cfg: DictConfig, out: Path) -> RunStart:
    """How the run of ``cfg`` starts in ``out``, refused (a ConfigError) when it cannot: a config read back
    from a run dir that names targets ganforge does not write, a cache dir it cannot write, a checkpoint
    that is missing, foreign or of another setup (or, in a requeued job, already finished), a fresh start
    over an earlier run."""
    rerun = run_dir_source()
    if rerun is not None:  # a run dir's config read back (-cd <run>/.hydra -cn config): data, not code
        check_targets(cfg, f"{rerun}/config.yaml", cfg.get("allow_targets") or ())
    if cfg.get("metrics"):  # the metrics' classifier and reference features are cached there
        check_writable(Path(cfg.paths.cache_dir), "paths.cache_dir", folder=True)
    ckpt_path = resolve_ckpt_path(requeued_ckpt_path(cfg.ckpt_path, out), out, cfg)
    is_requeued = requeued()  # a requeued job continues its run dir
    dev_run = bool(cfg.trainer.get("fast_dev_run"))
    overwrite = cfg.train.get("overwrite", False)
    fresh_ok = is_requeued or dev_run or overwrite or cfg.ckpt_path in ("auto", "last")
    if ckpt_path is None and not fresh_ok:
        check_fresh_run_dir(out)
    if ckpt_path is None and is_requeued and not overwrite:
        check_requeued_run_dir(out)
    return RunStart(ckpt_path, dev_run)


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


def leave_as_found(out: Path, found: RunDirState | None) -> None:
    """After a run was refused before training: remove the run dir Hydra made for it (and the empty
    folders above it that it made), or put back what Hydra overwrote in an existing one (``found``: the
    run dir as the command line found it, when it named one)."""
    for logger in [logging.getLogger(), *logging.root.manager.loggerDict.values()]:
        for handler in list(getattr(logger, "handlers", [])):
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == out:
                logger.removeHandler(handler)
                handler.close()
    state = found if found is not None and found.path.resolve() == out.resolve() else None
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

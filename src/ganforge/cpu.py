"""CPU threads for training on the CPU (``train.cpu_threads``): torch starts one intra-op thread per core
of the machine, whatever share of it this process may use; next to other busy processes those threads
spin-wait on each other and a step can take many times longer. See experiments/bench/threads.py."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import torch

from ganforge.errors import ConfigError

log = logging.getLogger(__name__)


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, lowered by a cgroup CPU quota (containers)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"
    try:
        limit, period = quota.read_text().split()[:2]
        if limit != "max":
            cpus = min(cpus, max(1, math.floor(int(limit) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def busy_elsewhere() -> float:
    """Runnable processes besides this one, from the 1-minute load average (0 where there is none)."""
    try:
        return max(0.0, os.getloadavg()[0] - 1.0)
    except OSError:
        return 0.0


def threads_for(setting: Any, accelerator: str, processes: int = 1) -> int | None:
    """The intra-op thread count ``train.cpu_threads`` asks for: None leaves torch's choice, an integer is
    taken as it is, ``auto`` on the CPU shares the usable CPUs among this node's training processes
    (unless ``OMP_NUM_THREADS`` is set: the user's or the launcher's choice stands)."""
    if setting is None:
        return None
    if setting == "auto":
        if os.environ.get("OMP_NUM_THREADS"):  # the user's (or the launcher's) choice stands
            return None
        if accelerator not in ("cpu", "auto") or torch.cuda.is_available() and accelerator == "auto":
            return None  # on a GPU the CPU threads only feed it: torch's default
        return max(1, usable_cpus() // max(1, processes))
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ConfigError(f"train.cpu_threads must be auto, null or a positive integer, got {setting!r}")
    return setting


def apply_cpu_threads(setting: Any, accelerator: str, processes: int = 1) -> int:
    """Set torch's intra-op threads from ``train.cpu_threads``; warn in one line when other processes
    already keep the usable CPUs busy (then ``OMP_NUM_THREADS=1`` is the safe choice). Returns the count."""
    threads = threads_for(setting, accelerator, processes)
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    cpus, others = usable_cpus(), busy_elsewhere()
    if accelerator == "cpu" and torch.get_num_threads() > 1 and others >= cpus:
        log.warning(
            "the machine is busy (load %.1f on %d usable CPUs) and training uses %d CPU threads: "
            "threads that wait on each other can make each step many times slower; run it with "
            "OMP_NUM_THREADS=1 (or train.cpu_threads=1)",
            others + 1,
            cpus,
            torch.get_num_threads(),
        )
    return torch.get_num_threads()

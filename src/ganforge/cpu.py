"""CPU threads for training on the CPU (``train.cpu_threads``): torch starts one intra-op thread per core
of the machine, whatever share of it this process may use; next to other busy processes those threads
spin-wait on each other and a step can take many times longer. See experiments/bench/threads.py."""

from __future__ import annotations

import logging
import math
import os
import time
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


def idle_cpus(window: float = 0.25) -> float | None:
    """CPUs of the machine left idle by every process over ``window`` seconds (``/proc/stat``; None
    where there is none): what other busy processes leave to this one, measured now, not averaged."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])  # idle + iowait, all (without guest time)

    try:
        idle0, total0 = sample()
        time.sleep(window)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (idle1 - idle0) / (total1 - total0) * (os.cpu_count() or 1)


def auto_threads(usable: int, processes: int, idle: float | None) -> int:
    """``usable`` CPUs shared among ``processes``, no more than the ``idle`` CPUs (rounded) shared alike:
    threads beyond what other busy processes leave only wait on each other."""
    share = max(1, usable // max(1, processes))
    return share if idle is None else max(1, min(share, math.floor(idle / max(1, processes) + 0.5)))


def threads_for(setting: Any, accelerator: str, processes: int = 1) -> int | None:
    """The intra-op thread count ``train.cpu_threads`` asks for: None leaves torch's choice, an integer is
    taken as it is, ``auto`` on the CPU shares the usable CPUs among this node's training processes, no
    more than the CPUs other processes leave idle right now (measured: next to a busy process two threads
    were 7.6 times slower per step than on a quiet machine, one thread 1.5 times; see
    experiments/bench/threads.py). ``OMP_NUM_THREADS``, when set, stands (the user's or the launcher's)."""
    if setting is None:
        return None
    if setting == "auto":
        if os.environ.get("OMP_NUM_THREADS"):  # the user's (or the launcher's) choice stands
            return None
        if accelerator not in ("cpu", "auto") or torch.cuda.is_available() and accelerator == "auto":
            return None  # on a GPU the CPU threads only feed it: torch's default
        return auto_threads(usable_cpus(), processes, idle_cpus())
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ConfigError(f"train.cpu_threads must be auto, null or a positive integer, got {setting!r}")
    return setting


def apply_cpu_threads(setting: Any, accelerator: str, processes: int = 1) -> int:
    """Set torch's intra-op threads from ``train.cpu_threads``. A count chosen by hand (or torch's, with
    ``null``) gets a one-line warning when it exceeds the CPUs other processes leave idle (then
    ``auto`` or ``OMP_NUM_THREADS=1`` is the safe choice); ``auto`` measured them already and takes no
    more. Returns the count."""
    threads = threads_for(setting, accelerator, processes)
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    if setting != "auto" and accelerator == "cpu" and threads > 1:
        idle = idle_cpus()
        if idle is not None and threads * processes > idle + 0.5:
            log.warning(
                "other processes keep the CPUs busy (%.1f of %d idle) and training runs %d CPU threads "
                "per process: threads that wait on each other can make each step several times slower; "
                "use train.cpu_threads=auto or OMP_NUM_THREADS=1",
                idle,
                os.cpu_count() or 1,
                threads,
            )
    return threads

"""train.cpu_threads: torch's CPU threads from the CPUs this process may use, shared among the node's
processes; the user's OMP_NUM_THREADS stands; bad values are one line before training."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from ganforge.cpu import apply_cpu_threads, auto_threads, idle_cpus, threads_for, usable_cpus
from ganforge.errors import ConfigError
from helpers import compose_cfg


def cpus_by_hand() -> int:
    cpus = len(os.sched_getaffinity(0))
    quota = Path("/sys/fs/cgroup/cpu.max")
    if quota.is_file():
        limit, period = quota.read_text().split()[:2]
        if limit != "max":
            cpus = min(cpus, max(1, math.floor(int(limit) / int(period))))
    return cpus


def test_usable_cpus_are_the_affinity_mask_within_the_cgroup_quota():
    assert usable_cpus() == cpus_by_hand()


def test_auto_takes_no_more_threads_than_the_idle_cpus():
    """The rule: the usable CPUs shared among the processes, capped by the idle ones shared alike."""
    assert auto_threads(8, 1, None) == 8 and auto_threads(8, 2, None) == 4 and auto_threads(1, 4, None) == 1
    assert auto_threads(2, 1, 2.0) == 2  # a quiet 2-CPU machine: both (1.5x faster than one, measured)
    assert auto_threads(2, 1, 1.1) == 1  # one busy process beside: one thread (7.6x slower with two)
    assert auto_threads(2, 1, 0.0) == 1 and auto_threads(16, 2, 6.0) == 3 and auto_threads(16, 1, 15.6) == 16
    idle = idle_cpus(0.05)
    assert idle is None or 0.0 <= idle <= (os.cpu_count() or 1) + 1e-6


def test_auto_shares_the_cpus_among_the_processes_unless_omp_num_threads_is_set(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert 1 <= threads_for("auto", "cpu") <= cpus_by_hand()
    assert 1 <= threads_for("auto", "cpu", processes=2) <= max(1, cpus_by_hand() // 2)
    assert threads_for("auto", "gpu") is None  # the CPU only feeds the GPU: torch's default
    assert threads_for(None, "cpu") is None and threads_for(3, "cpu") == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads_for("auto", "cpu") is None


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "many"])
def test_a_bad_setting_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="train.cpu_threads must be auto, null or a positive integer"):
        threads_for(bad, "cpu")


def test_apply_sets_torchs_threads_and_the_train_refuses_a_bad_value(tmp_path):
    before = torch.get_num_threads()
    try:
        assert apply_cpu_threads(1, "cpu") == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    from ganforge.train import train

    with pytest.raises(ConfigError, match="train.cpu_threads"):
        train(compose_cfg(tmp_path / "run", "data=ring8", "model=mlp", "train.cpu_threads=0"))
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before anything trained

"""train.cpu_threads: torch's CPU threads from the CPUs this process may use, shared among the node's
processes; the user's OMP_NUM_THREADS stands; bad values are one line before training."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from ganforge.cpu import apply_cpu_threads, threads_for, usable_cpus
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


def test_auto_shares_the_cpus_among_the_processes_unless_omp_num_threads_is_set(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads_for("auto", "cpu") == cpus_by_hand()
    assert threads_for("auto", "cpu", processes=2) == max(1, cpus_by_hand() // 2)
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

"""Shared fixtures."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

# Tiny nets on a small machine: one intra-op thread per process beats threads fighting over the
# cores (set before torch is imported; subprocesses and DDP ranks inherit it).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from helpers import train_run  # noqa: E402

# One cache for the whole session (metrics classifier, reference features), also for subprocesses:
# trained once, reused by every test, never the user's own cache.
if "GANFORGE_CACHE_DIR" not in os.environ:
    os.environ["GANFORGE_CACHE_DIR"] = tempfile.mkdtemp(prefix="ganforge-cache-")
    atexit.register(shutil.rmtree, os.environ["GANFORGE_CACHE_DIR"], ignore_errors=True)


@pytest.fixture
def run(tmp_path: Path):
    """``run(name, *overrides)`` trains into ``tmp_path/name`` and returns (summary, output dir)."""

    def _run(name: str, *overrides: str) -> tuple[dict[str, Any], Path]:
        out = tmp_path / name
        return train_run(out, *overrides), out

    return _run


@pytest.fixture(scope="session")
def local_ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 2-process local DDP run of ``ddp_runs.DDP_ARGS``, trained once per session."""
    from ddp_runs import run_local_ddp

    return run_local_ddp(tmp_path_factory.mktemp("local_ddp") / "run")

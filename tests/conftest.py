"""Shared fixtures."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

# Tiny nets on a small machine: one intra-op thread per process beats threads fighting over the
# cores (set before torch is imported; subprocesses and DDP ranks inherit it).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# One cache for the whole session (metrics classifier, reference features), also for subprocesses:
# trained once, reused by every test, never the user's own cache.
if "GANFORGE_CACHE_DIR" not in os.environ:
    os.environ["GANFORGE_CACHE_DIR"] = tempfile.mkdtemp(prefix="ganforge-cache-")
    atexit.register(shutil.rmtree, os.environ["GANFORGE_CACHE_DIR"], ignore_errors=True)


@pytest.fixture
def run(tmp_path: Path):
    """``run(name, *overrides)`` trains into ``tmp_path/name`` and returns (summary, output dir)."""

    # imported here, not at the top: pytest-xdist's controller then never imports Lightning
    from helpers import train_run

    def _run(name: str, *overrides: str) -> tuple[dict[str, Any], Path]:
        out = tmp_path / name
        return train_run(out, *overrides), out

    return _run


def _mount_tmpfs(mount: Path, options: str) -> Path:
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    return mount


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 2 MB filesystem (needs root; skipped elsewhere): a disk that fills up."""
    yield _mount_tmpfs(tmp_path / "disk", "size=2m")
    subprocess.run(["umount", "-l", str(tmp_path / "disk")], check=True)  # lazy: a busy mount too


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only filesystem (root may write anywhere else; mounting needs root: skipped elsewhere)."""
    yield _mount_tmpfs(tmp_path / "ro", "ro,size=1m")
    subprocess.run(["umount", "-l", str(tmp_path / "ro")], check=True)


@pytest.fixture(scope="session")
def local_ddp_run(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The 2-process local DDP run of ``ddp_runs.DDP_ARGS`` (read-only for the tests), trained once per
    session: under xdist in the session's base temp dir, which all workers share (the DDP and the Slurm
    group ask for it from two workers: the first trains it under a lock, the other waits and reads it)."""
    from ddp_runs import run_local_ddp
    from ganforge.checkpoint_file import file_lock

    if worker_id == "master":  # no xdist
        return run_local_ddp(tmp_path_factory.mktemp("local_ddp") / "run")
    out = tmp_path_factory.getbasetemp().parent / "local_ddp" / "run"
    with file_lock(out.parent):  # <base>/local_ddp.lock: the run's folder holds the run alone
        if not (out / "summary.json").is_file():
            shutil.rmtree(out, ignore_errors=True)  # a run cut short by a failed worker: trained again
            out.parent.mkdir(parents=True, exist_ok=True)
            run_local_ddp(out)
    return out


# --- which tests are slow, and which must run one at a time --------------------------------------------
# A test is slow when it, or a fixture it uses, trains, starts a process or runs a benchmark: `make
# test-fast` (-m "not slow") leaves those out. Tests that start 2-process DDP jobs or use the local
# Slurm share one xdist group each, so that `make test` (pytest -n) never runs two at once.
SLOW_CALLS = (
    "train_run(",
    "command(",
    "cli(",
    "bench(",
    "run(",
    "train(",
    "subprocess.",
    "ddp_train(",
    "train_process(",
    "assert_refused_before_training(",  # the command line's one-line refusals: a process each
    "entry_point(",  # a command run in this process (Hydra composes, it may train)
)


def _calls_slow_code(func: Any) -> bool:
    import inspect

    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        return False
    body = source.split(":", 1)[1] if source.lstrip().startswith(("def ", "@")) else source
    return any(call in body for call in SLOW_CALLS)


@pytest.hookimpl(tryfirst=True)  # before xdist, which groups by the marks this hook adds (--dist loadgroup)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        defs = fixtures.name2fixturedefs.values() if fixtures is not None else ()
        uses = [d.func for defs_ in defs for d in defs_ if d.baseid]  # the project's own fixtures
        if item.get_closest_marker("slow") is None and (
            _calls_slow_code(getattr(item, "function", None)) or any(_calls_slow_code(f) for f in uses)
        ):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("slurm") is not None:
            item.add_marker(pytest.mark.xdist_group("slurm"))
        elif "ddp" in item.nodeid.lower() or "local_ddp_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ddp)
            item.add_marker(pytest.mark.xdist_group("ddp"))
    # the long serial groups (DDP, Slurm) first, then the other slow tests, the quick ones last: xdist
    # hands work out in this order, so the end of a run is short tests that even out the workers'
    # loads instead of one worker running a long group alone (stable: files keep their order inside)
    items.sort(key=_start_order)


@pytest.hookimpl(trylast=True)  # after xdist's hook, which should have given grouped tests "@group" ids
def pytest_collection_finish(session: pytest.Session) -> None:
    """On an xdist worker with ``--dist loadgroup``: a usage error when the groups did not take (the ids
    of grouped tests lack their ``@group`` suffix, as with pytest 9.2 and pytest-xdist 3.8), instead of
    DDP and Slurm tests silently running side by side."""
    if not (hasattr(session.config, "workerinput") and session.config.getvalue("loadgroup")):
        return
    lost = [i.nodeid for i in session.items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if lost:
        raise pytest.UsageError(
            f"--dist loadgroup did not group {lost[0]} (and {len(lost) - 1} more): this pytest and "
            "pytest-xdist do not work together (pytest-xdist#1386); install the dev extras' pytest (< 9.2)"
        )


def _start_order(item: pytest.Item) -> int:
    if item.get_closest_marker("xdist_group") is not None:
        return 0
    return 1 if item.get_closest_marker("slow") is not None else 2

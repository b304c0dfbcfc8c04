"""Issue 25, runs and processes: one process per run dir (an advisory lock), Slurm requeues of a finished
run or of a run that lost its checkpoint, a signal right after start, and signal handlers put back
after an in-process run. Real subprocesses and real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from helpers import command, train_run

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
TOY = ("data=ring8", "model=mlp", "logger=[csv]", "metrics=[]", "train.log_every=1")
REQUEUED = {"SLURM_JOB_ID": "4242", "SLURM_RESTART_COUNT": "1"}


def train_process(out: Path, *args: str, cwd: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ganforge.train", *TOY, *args, f"hydra.run.dir={out}"]
    return subprocess.Popen(
        cmd, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def wait_for_rows(path: Path, rows: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_text().count("\n") > rows:
            return
        time.sleep(0.2)
    raise AssertionError(f"{path} did not reach {rows} rows")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ganforge-train: error:")]


def test_a_second_process_on_a_run_dir_is_refused_in_one_line(tmp_path):
    out = tmp_path / "run"
    first = train_process(out, "train.steps=100000", "train.ckpt_every=0", cwd=tmp_path)
    try:
        wait_for_rows(out / "metrics.csv", 10)
        config = (out / ".hydra" / "config.yaml").read_bytes()
        second = command(
            "train", *TOY, "ckpt_path=auto", "train.steps=100000", f"hydra.run.dir={out}", cwd=tmp_path
        )
        assert second.returncode == 2, second.stderr[-3000:]
        assert second.stderr.strip().splitlines() == [
            f"ganforge-train: error: {out} is in use by another ganforge-train (pid {first.pid} on "
            f"{os.uname().nodename}, since " + second.stderr.split(", since ", 1)[1].strip()
        ]
        assert (out / ".hydra" / "config.yaml").read_bytes() == config  # untouched by the second
    finally:
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    steps = [line.split(",")[0] for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert len(steps) == len(set(steps))  # each step once
    assert not (out / ".ganforge.lock").exists()  # released on exit


def test_a_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from ganforge.run_dir import lock_run_dir
            assert lock_run_dir(Path({str(out)!r}))
            print("locked", flush=True)
            time.sleep(600)
        """)],
        env=ENV, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    busy = command("train", *TOY, "train.steps=2", f"hydra.run.dir={out}", cwd=tmp_path)
    assert busy.returncode == 2 and f"pid {holder.pid} on" in busy.stderr, busy.stderr[-3000:]
    holder.send_signal(signal.SIGKILL)  # no chance to release it: the file stays, the kernel frees the lock
    holder.wait(timeout=60)
    assert (out / ".ganforge.lock").read_text().startswith(f"pid {holder.pid} on")
    res = command("train", *TOY, "train.steps=2", f"hydra.run.dir={out}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"taking over the stale lock of pid {holder.pid}" in res.stderr
    assert not (out / ".ganforge.lock").exists()


def test_a_slurm_requeue_of_a_finished_run_exits_0(tmp_path):
    out = tmp_path / "run"
    args = (*TOY, "train.steps=4", f"hydra.run.dir={out}")
    assert command("train", *args, cwd=tmp_path).returncode == 0
    summary = (out / "summary.json").read_bytes()
    res = command("train", *args, cwd=tmp_path, env=REQUEUED)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stderr.strip().splitlines()[-1].startswith("ganforge-train: ckpt_path=")
    assert "nothing to train" in res.stderr and "error" not in res.stderr
    assert (out / "summary.json").read_bytes() == summary
    res = command("train", *args, "ckpt_path=auto", cwd=tmp_path)  # not a requeue: still refused, exit 2
    assert res.returncode == 2 and "nothing to train" in error_lines(res.stderr)[0]


def test_a_requeued_run_that_lost_its_last_ckpt_is_refused(tmp_path):
    out = tmp_path / "run"
    args = (*TOY, "train.steps=12", f"hydra.run.dir={out}")
    assert command("train", *args, cwd=tmp_path).returncode == 0
    (out / "checkpoints" / "last.ckpt").unlink()
    rows = (out / "metrics.csv").read_text()
    res = command("train", *args, cwd=tmp_path, env=REQUEUED)
    assert res.returncode == 2, res.stderr[-3000:]
    [line] = error_lines(res.stderr)
    assert "holds a run (summary.json, metrics.csv) but no checkpoints/last.ckpt" in line
    assert (out / "metrics.csv").read_text() == rows  # not started over


def test_sigterm_right_after_start_stops_cleanly(tmp_path):
    """SIGTERM while Python still imports torch and Lightning: before, the default handler killed the
    process (exit -15, no summary); now it is noted and the run stops before training, exit 143."""
    out = tmp_path / "run"
    proc = train_process(out, "train.steps=100000", cwd=tmp_path)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "preempted" and summary["preemption"]["signal"] == "SIGTERM"
    assert "Traceback" not in stderr


def test_an_in_process_run_puts_the_signal_handlers_back(tmp_path):
    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
    before = {sig: signal.getsignal(sig) for sig in signals}
    summary = train_run(tmp_path / "run", "data=ring8", "model=mlp", "train.steps=3")
    assert summary["status"] == "finished"
    assert {sig: signal.getsignal(sig) for sig in signals} == before

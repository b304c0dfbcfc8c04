"""Slurm for real: a sweep through the submitit launcher, a 2-task DDP job, preemption and requeue.

These run against a live Slurm controller: CI starts a single-node one with slurm/local/up.sh
(as root). Without one they skip, saying why. The commands are those of slurm/README.md, with
overrides appended that make them tiny and fit a 2-CPU node.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ddp_runs import DDP_ARGS, metrics_rows, weights
from wandb_records import read_records

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "slurm" / "README.md"
ENV = {
    **os.environ,
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "OMP_NUM_THREADS": "1",
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # the venv, for sbatch
    # tests/job_callbacks.py inside the jobs
    "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p),
}
# the commands of slurm/README.md that these tests run
SWEEP_ON_SLURM = (
    "ganforge-train -m hydra/launcher=slurm hydra.launcher.cpus_per_task=1 model=mlp data=ring8 "
    "loss=nonsaturating,hinge"
)
DDP_JOB = "sbatch --ntasks-per-node=2 --cpus-per-task=1 slurm/train.sbatch trainer.accelerator=cpu model=mlp"
TINY = ["train.steps=20", "train.log_every=5", "train.sample_every=0", "logger=[csv,wandb]", "metrics=[]"]


def slurm_unavailable() -> str | None:
    """Why no Slurm controller answers here, or ``None`` when one does."""
    if shutil.which("sinfo") is None:
        return "no Slurm here (sinfo not found): run slurm/local/up.sh as root to start a local one"
    try:
        res = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: the Slurm controller does not answer"
    if res.returncode != 0:
        return f"sinfo failed: {res.stderr.strip()[:200]} (slurm/local/up.sh starts a local Slurm)"
    if not any(state.startswith(("idle", "mix", "alloc")) for state in res.stdout.split()):
        return f"no Slurm node is up (sinfo: {res.stdout.strip()!r})"
    return None


REASON = slurm_unavailable()
needs_slurm = pytest.mark.skipif(REASON is not None, reason=REASON or "")
pytestmark = pytest.mark.slurm


def ganforge(command: str) -> list[str]:
    """A README command line as an argv list, ``ganforge-train`` run by this interpreter."""
    argv = shlex.split(command)
    assert argv[0] == "ganforge-train"
    return [sys.executable, "-m", "ganforge.train", *argv[1:]]


def wandb_run(job_dir: Path) -> list:
    """The ``run`` records of every offline W&B run in ``job_dir`` (one per start of the job)."""
    files = sorted(job_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert files, f"no W&B run in {job_dir}"
    return [r.run for f in files for r in read_records(f) if r.WhichOneof("record_type") == "run"]


def test_readme_shows_the_commands_run_here():
    text = README.read_text()
    for command in (SWEEP_ON_SLURM, DDP_JOB):
        assert command in text, command


@needs_slurm
def test_sweep_through_the_slurm_launcher(tmp_path):
    sweep = tmp_path / "sweep_on_slurm"
    cmd = [*ganforge(SWEEP_ON_SLURM), *TINY, f"hydra.sweep.dir={sweep}"]
    res = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = {}
    for num, loss in ((0, "nonsaturating"), (1, "hinge")):
        job = sweep / str(num)
        summary = (job / "summary.json").read_text()
        assert '"status": "finished"' in summary and '"g_steps": 20' in summary
        assert (job / "checkpoints" / "last.ckpt").is_file()
        (run,) = wandb_run(job)
        assert run.run_group == "sweep_on_slurm" and run.job_type == "train"
        assert run.display_name == f"loss={loss}"  # what the sweep varies, not its fixed overrides
        assert list(run.tags) == ["dev"]
        runs[num] = run.run_id
    assert runs[0] != runs[1]
    # the jobs ran under Slurm: submitit's folder holds one log per array task
    assert len(list((sweep / ".submitit").glob("*_*/*_log.out"))) == 2


@needs_slurm
def test_ddp_job_on_slurm_equals_the_local_ddp_run(tmp_path, local_ddp_run):
    argv = [str(ROOT / a) if a.endswith(".sbatch") else a for a in shlex.split(DDP_JOB)]
    cmd = [argv[0], "--parsable", *argv[1:], *(a for a in DDP_ARGS if a not in argv)]
    res = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip().split(";")[0]
    state = wait_for_job(job_id)
    log = (tmp_path / f"slurm-{job_id}.out").read_text()
    assert state == "COMPLETED 0:0", (state, log[-3000:])
    run = tmp_path / "outputs" / "train" / f"slurm-{job_id}"
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log  # two ranks, placed by Slurm
    assert metrics_rows(run) == metrics_rows(local_ddp_run)
    slurm_weights, local_weights = weights(run), weights(local_ddp_run)
    assert slurm_weights.keys() == local_weights.keys()
    for name, value in slurm_weights.items():
        assert torch.equal(value, local_weights[name]), name


def wait_for_job(job_id: str, timeout: float = 240) -> str:
    """Wait until the job has left the queue; its final ``State ExitCode`` from accounting."""
    deadline = time.time() + timeout
    while subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip():
        if time.time() > deadline:
            subprocess.run(["scancel", job_id], timeout=30)
            raise AssertionError(f"job {job_id} still queued after {timeout} s")
        time.sleep(0.5)
    for _ in range(20):  # accounting may lag the queue by a moment
        acct = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "state,exitcode"], capture_output=True, text=True
        ).stdout.split()
        if acct and acct[0].split("|")[0] not in ("RUNNING", "PENDING", "COMPLETING"):
            return acct[0].replace("|", " ")
        time.sleep(0.5)
    raise AssertionError(f"no final state for job {job_id} in accounting")


def submitted_job(sweep: Path, timeout: float = 60) -> str:
    """The Slurm id of the single job that submitit submitted for ``sweep`` (its folder's name)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = [p.name for p in (sweep / ".submitit").glob("[0-9]*") if p.is_dir()]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no submitit job folder in {sweep}")


def wait_for_rows(csv_path: Path, rows: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if csv_path.is_file() and csv_path.read_text().count("\n") > rows:
            return
        assert proc.poll() is None, "the sweep ended before the job was signalled"
        time.sleep(0.2)
    raise AssertionError(f"{csv_path} did not reach {rows} rows")


@needs_slurm
def test_preempted_job_checkpoints_requeues_and_finishes(tmp_path):
    """SIGUSR2 mid-run (Slurm's time-limit warning): last.ckpt, requeue, resume, every step once."""
    steps = 40
    sweep = tmp_path / "preempted"
    cmd = [
        *ganforge(
            "ganforge-train -m hydra/launcher=slurm hydra.launcher.cpus_per_task=1 model=mlp data=ring8"
        ),
        f"train.steps={steps}",
        "train.log_every=1",
        "train.sample_every=0",
        "train.ckpt_every=0",
        "logger=[csv,wandb]",
        "metrics=[]",
        "+callbacks.throttle={_target_:job_callbacks.Throttle,seconds:0.25}",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        job_id = submitted_job(sweep)
        wait_for_rows(sweep / "0" / "metrics.csv", 5, proc)
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["scancel", job_id], timeout=30)
    assert proc.returncode == 0, out[-3000:]
    job = sweep / "0"
    log = "".join(p.read_text() for p in sorted((sweep / ".submitit").glob("*/*_log.err")))
    assert "ganforge-train: preempted at generator step" in log and f"requeued job {job_id}" in log
    summary = (job / "summary.json").read_text()
    assert '"status": "finished"' in summary and f'"g_steps": {steps}' in summary
    assert "last.ckpt" in summary  # resumed_from: the requeued start continued from the checkpoint
    shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert "Restarts=1" in shown, shown
    # every step logged exactly once, across both starts
    assert [int(row["step"]) for row in metrics_rows(job)] == list(range(1, steps + 1))
    # one W&B run, continued: both starts wrote the same run id
    starts = wandb_run(job)
    assert len(starts) == 2 and starts[0].run_id == starts[1].run_id
    assert torch.load(job / "checkpoints" / "last.ckpt", weights_only=False)["ganforge"]["g_step"] == steps

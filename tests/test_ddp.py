"""DDP with 2 CPU processes (gloo): finishes without hangs, counts steps right, only rank 0 writes outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def test_ddp_two_cpu_processes(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "ganforge.train",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "train.steps=6",
        "train.n_critic=2",
        "train.log_every=2",
        "train.sample_every=3",
        "train.ckpt_every=3",
        "logger=[csv]",
        "metrics=[]",  # metrics under DDP: tests/test_metrics_run.py
        f"hydra.run.dir={out}",
    ]
    res = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    # one run dir, written once: rank 1 only adds Hydra's log of its own process
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        ".hydra/config.yaml",
        ".hydra/hydra.yaml",
        ".hydra/overrides.yaml",
        "checkpoints/last.ckpt",
        "hparams.yaml",
        "metrics.csv",
        "samples/step_0000003.png",
        "samples/step_0000006.png",
        "summary.json",
        "train.log",
        "train_ddp_process_1.log",
    ]
    assert list(tmp_path.iterdir()) == [out]  # no second timestamped dir from the relaunched rank
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["g_steps"] == 6 and summary["d_steps"] == 12
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 6 * 3
    assert (out / "metrics.csv").read_text().count("\n") == 4

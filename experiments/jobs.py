"""What the experiment scripts share: one ``ganforge-train`` job at a time (W&B offline), and a job that
already finished is not rerun (its ``summary.json`` is reused), so a study can be stopped and continued."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def train_job(run_dir: Path, args: list[str]) -> dict[str, Any]:
    """The summary of the ``ganforge-train`` job with ``args`` in ``run_dir``, training it if needed."""
    summary = run_dir / "summary.json"
    if not summary.is_file():
        cmd = [sys.executable, "-m", "ganforge.train", *args, f"hydra.run.dir={run_dir}"]
        env = {**os.environ, "WANDB_MODE": "offline"}
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads(summary.read_text())

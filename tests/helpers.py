"""Compose the real config tree into a tmp dir and train in-process."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ganforge import CONFIG_DIR
from main_call import call_main

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

ROOT = Path(__file__).resolve().parents[1]
FAST = ["logger=[csv]", "train.log_every=1", "train.sample_every=0", "train.ckpt_every=0", "metrics=[]"]


def compose_cfg(out: Path, *overrides: str) -> DictConfig:
    """The real ``train`` config with ``overrides``, writing into ``out``."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
        fast = [o for o in FAST if o.split("=", 1)[0] not in given]  # the caller's value wins
        return compose("train", overrides=[*fast, f"paths.output_dir={out}", *overrides])


def train_run(out: Path, *overrides: str) -> dict[str, Any]:
    """Train in this process; returns the run summary."""
    from ganforge.train import train

    return train(compose_cfg(out, *overrides))


class CrashAt(pl.Callback):
    """Raises after generator step ``step``: a fault in the middle of training."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if pl_module.g_step >= self.step:
            raise RuntimeError(f"injected crash at generator step {pl_module.g_step}")


class KeepCheckpoint(pl.Callback):
    """Copies ``src`` (the run's last.ckpt) to ``to`` when generator step ``step + 1`` starts, on rank 0:
    the checkpoint written at ``step`` is complete then, and it is what a run that crashed after
    ``step`` resumes from (a straight run keeps it, so no second run has to crash to make one)."""

    def __init__(self, step: int, src: str, to: str) -> None:
        self.step, self.src, self.to = step, Path(src), Path(to)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if trainer.is_global_zero and pl_module.g_step == self.step and not self.to.exists():
            import shutil

            self.to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.src, self.to)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the big-endian IDX format (magic 2051 for 3-D images, 2049 for labels)."""
    magic = 0x0800 + array.ndim  # type code 8 = unsigned byte
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def fake_mnist(root: Path, folder: str = "MNIST", n: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """A tiny MNIST in torchvision's layout: root/<folder>/raw/{train,t10k}-{images,labels}-idx?-ubyte."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    images[0] = 0
    images[1] = 255
    labels = (np.arange(n) % 10).astype(np.uint8)
    write_idx(raw / "train-images-idx3-ubyte", images)
    write_idx(raw / "train-labels-idx1-ubyte", labels)
    write_idx(raw / "t10k-images-idx3-ubyte", images[:10])
    write_idx(raw / "t10k-labels-idx1-ubyte", labels[:10])
    return images, labels


# two local CPU processes under DDP (gloo), for ``command("train", *DDP_CPU, ...)``
DDP_CPU = ("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")


def command(name: str, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300):
    """``python -m ganforge.<name> *args`` in a subprocess (W&B offline), output captured.
    ``eval`` and ``sample`` (no signals, no training) run their entry point in this process instead
    (:func:`entry_point`): the same code and output, without a Python start-up per call."""
    if name in ("eval", "sample") and env is None:
        return entry_point(name, *args, cwd=cwd)
    return _python(["-m", f"ganforge.{name}", *args], cwd, env, timeout)


def entry_point(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``ganforge-<name> *args`` through ``ganforge.<name>.main`` (Hydra included) in this process, from
    ``cwd``: its exit code and what it printed, as a finished subprocess would give them."""
    import logging

    here, root = os.getcwd(), logging.getLogger()
    handlers, level = list(root.handlers), root.level
    os.chdir(cwd)
    try:
        code, out, err = call_main(name, list(args))
    finally:
        os.chdir(here)
        for handler in root.handlers[:]:  # what Hydra's job logging added goes with the job
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)
    return subprocess.CompletedProcess([f"ganforge-{name}", *args], code, out, err)


FRESH_MAINS = """
import json, sys
from main_call import call_main

results = [call_main(name, args) for name, args in json.loads(sys.argv[1])]
heavy = ["pytorch_lightning", "torchmetrics", "torchvision", "torch_fidelity"]
print(json.dumps({"results": results, "heavy": [m for m in heavy if m in sys.modules]}))
"""


def mains_in_a_fresh_process(
    cases: list[tuple[str, list[str]]], cwd: Path
) -> tuple[list[subprocess.CompletedProcess], list[str]]:
    """Each ``(name, args)`` of ``cases`` through ``ganforge.<name>.main`` (``ganforge-<name> *args``), one
    after the other in one new interpreter: what each returned and printed, and which of the heavy
    libraries (Lightning, the metric libraries) that process imported by the end."""
    code = [sys.executable, "-c", FRESH_MAINS, json.dumps(cases)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    res = subprocess.run(code, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    done = [
        subprocess.CompletedProcess([f"ganforge-{name}", *args], code, out, err)
        for (name, args), (code, out, err) in zip(cases, report["results"], strict=True)
    ]
    return done, report["heavy"]


def bench(name: str, *args: str, cwd: Path, timeout: int = 600):
    """``python experiments/bench/<name>.py *args`` in a subprocess, output captured."""
    return _python([str(ROOT / "experiments" / "bench" / f"{name}.py"), *args], cwd, None, timeout)


def _python(args: list[str], cwd: Path, env: dict[str, str] | None, timeout: int):
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_refused_before_training(tmp_path: Path, *args: str, message: str) -> None:
    """``ganforge-train *args`` exits 2 with one ``error:`` line holding ``message``, and no checkpoint
    (its entry point in this process: the one line and the code are what is under test)."""
    res = entry_point("train", *args, "logger=[csv]", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    code, stderr = res.returncode, res.stderr
    assert code == 2, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("ganforge-train: error:")]
    assert len(errors) == 1 and message in errors[0], stderr[-2000:]
    assert not (tmp_path / "run" / "checkpoints").exists()

"""Where ``ganforge-eval``'s start-up goes, and how soon a mistake is refused (by ``ganforge-eval`` and by
``ganforge-train``): each figure in fresh processes (one torch thread), the median of ``--repeat`` runs,
one JSON line each.

- ``imports``: ``python -c pass``, ``import torch``, ``import pytorch_lightning`` (it pulls torchmetrics,
  torchvision and scipy), ``import torch_fidelity``, ``import ganforge.eval`` (what the command's start
  costs before its first check);
- ``phases``: one eval done step by step in one process: reading and checking the checkpoint with torch
  alone, the heavy imports, building data and nets, the metric suite's preparation (feature network and
  reference features: cached after the first call), the measurement;
- ``commands``: the whole ``ganforge-eval`` (features cached) and the time to its refusal of a mistake
  (``metrics=[psnr]`` on a generation checkpoint); ``ganforge-train``'s refusal of ``train.steps=0`` and
  its ``--help``; for each tree given with ``--src`` side by side (``--src old=/path/to/old/checkout``:
  its ``src/`` goes first on ``PYTHONPATH``).

    python experiments/bench/startup.py                         # trains a tiny digits checkpoint first
    python experiments/bench/startup.py --src old=../ganforge-old --repeat 5
    python experiments/bench/startup.py --ckpt runs/x/checkpoints/last.ckpt --metrics fid,kid
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMPORTS = {
    "python": "pass",
    "torch": "import torch",
    "pytorch_lightning": "import pytorch_lightning",
    "torch_fidelity": "import torch_fidelity",
    "ganforge.eval": "import ganforge.eval",
}
PHASES = """
import json, sys, time
t = [time.perf_counter()]
from ganforge.metrics.settings import MetricSettings, check_request
from ganforge.stored import read_run
run = read_run(sys.argv[1])
settings = check_request(MetricSettings.from_config(json.loads(sys.argv[2])), run.task)
t.append(time.perf_counter())
from ganforge.metrics.suites import make_suite
from ganforge.restore import restore
t.append(time.perf_counter())
_, datamodule, module, _ = restore(run, "cpu")
t.append(time.perf_counter())
suite = make_suite(settings, datamodule, sys.argv[3], module.task)
import torch
suite.prepare(torch.device("cpu"))
t.append(time.perf_counter())
suite.measure_module(module)
t.append(time.perf_counter())
names = ["read_and_check_s", "heavy_imports_s", "build_s", "prepare_metrics_s", "measure_s"]
print(json.dumps({n: b - a for n, a, b in zip(names, t, t[1:])}))
"""


def env_for(src: Path | None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src / "src"), env.get("PYTHONPATH", "")])
    return env


def timed(cmd: list[str], env: dict[str, str], cwd: Path, ok: tuple[int, ...] = (0,)) -> tuple[float, str]:
    start = time.perf_counter()
    res = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if res.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd[:4])}...: exit {res.returncode}\n{res.stderr[-2000:]}")
    return wall, res.stdout + res.stderr


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def tiny_checkpoint(tmp: Path) -> Path:
    """A digits DCGAN of 20 steps (widths 8): the checkpoint every figure below reads."""
    run = tmp / "run"
    cmd = [sys.executable, "-m", "ganforge.train", "model.generator.width=8", "model.discriminator.width=8"]
    cmd += ["train.steps=20", "metrics=[]", "logger=[csv]", f"hydra.run.dir={run}"]
    timed(cmd, env_for(None), tmp)
    return run / "checkpoints" / "last.ckpt"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", type=Path, help="a checkpoint (default: train a tiny digits one)")
    parser.add_argument("--metrics", default="fid", help="what ganforge-eval measures (comma-separated)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--src", action="append", default=[], help="LABEL=CHECKOUT to compare with this one")
    args = parser.parse_args()
    trees = {"this": None} | {k: Path(v).resolve() for k, v in (s.split("=", 1) for s in args.src)}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ckpt = args.ckpt.resolve() if args.ckpt else tiny_checkpoint(tmp)
        cache = tmp / "cache"
        metrics = [f"metrics=[{args.metrics}]", "metrics.num_samples=2000", f"paths.cache_dir={cache}"]
        eval_cmd = [sys.executable, "-m", "ganforge.eval", f"ckpt_path={ckpt}", f"out={tmp}/eval.json"]
        timed([*eval_cmd, *metrics], env_for(None), tmp)  # the feature network and reference: cached
        for name, code in IMPORTS.items():
            walls = [timed([sys.executable, "-c", code], env_for(None), tmp)[0] for _ in range(args.repeat)]
            print(json.dumps({"kind": "imports", "what": name, "wall_s": median(walls)}), flush=True)
        group = {"num_samples": 2000, args.metrics.split(",")[0]: True}
        phases: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            cmd = [sys.executable, "-c", PHASES, str(ckpt), json.dumps(group), str(cache)]
            out = timed(cmd, env_for(None), tmp)[1]
            for key, value in json.loads(out.strip().splitlines()[-1]).items():
                phases.setdefault(key, []).append(value)
        print(json.dumps({"kind": "phases"} | {k: median(v) for k, v in phases.items()}), flush=True)
        for label, src in trees.items():
            full = [timed([*eval_cmd, *metrics], env_for(src), tmp)[0] for _ in range(args.repeat)]
            wrong = [*eval_cmd, "metrics=[psnr]", f"paths.cache_dir={cache}"]
            refused = [timed(wrong, env_for(src), tmp, ok=(2,))[0] for _ in range(args.repeat)]
            train = [sys.executable, "-m", "ganforge.train"]
            steps_0 = [*train, "train.steps=0", f"hydra.run.dir={tmp}/refused"]
            train_refused = [timed(steps_0, env_for(src), tmp, ok=(2,))[0] for _ in range(args.repeat)]
            train_help = [timed([*train, "--help"], env_for(src), tmp)[0] for _ in range(args.repeat)]
            line = {"kind": "commands", "tree": label, "eval_s": median(full), "refusal_s": median(refused)}
            line |= {"train_refusal_s": median(train_refused), "train_help_s": median(train_help)}
            print(json.dumps(line | {"load_before": round(os.getloadavg()[0], 2)}), flush=True)


if __name__ == "__main__":
    main()

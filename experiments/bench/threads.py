"""CPU threads on a shared machine: the same short training, plain loop and ganforge, at torch's default
thread count and at one thread, each in a fresh process (OpenMP reads its settings at start-up).

Prints one JSON line per (loop, setting) with the seconds per generator step, and the machine's state
(CPUs this process may use, the load average before the run: other busy processes count). Run it on a
quiet machine and next to another busy torch process to see what oversubscription costs:

    python experiments/bench/threads.py                          # cyclegan16_cpu, 20 steps
    python experiments/bench/threads.py --case pix2pix16_cpu --steps 50
    python experiments/bench/threads.py --busy 1                  # + one busy torch process beside it

Settings: ``default`` (what torch picks: one thread per core), ``omp1`` (``OMP_NUM_THREADS=1``),
``passive`` (default threads with ``OMP_WAIT_POLICY=PASSIVE``: idle threads sleep instead of spinning),
``ganforge`` (ganforge's own choice, ``train.cpu_threads=auto``; only for the ganforge loop).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETTINGS = {
    "default": {},
    "omp1": {"OMP_NUM_THREADS": "1"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
}
BUSY = "import torch\nx = torch.randn(512, 512)\nwhile True:\n    x = (x @ x).tanh()\n"


def child(case: str, steps: int, loop: str, extra: list[str]) -> None:
    """In the measured process: one timed run of ``loop`` (plain or ganforge)."""
    import torch

    sys.path.insert(0, str(HERE))
    from overhead import CASES, config, ganforge_run, plain_loop

    overrides, _, device = CASES[case]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config([*overrides, *extra], steps, device, Path(tmp) / "run")
        seconds = plain_loop(cfg, device) if loop == "plain" else ganforge_run(cfg)
    print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads()}))


def measure(case: str, steps: int, loop: str, setting: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env |= SETTINGS.get(setting, {}) | {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    extra = ["train.cpu_threads=auto"] if setting == "ganforge" else ["train.cpu_threads=null"]
    load = os.getloadavg()[0]
    cmd = [sys.executable, __file__, "--child", loop, "--case", case, "--steps", str(steps), *extra]
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "case": case,
        "loop": loop,
        "setting": setting,
        "steps": steps,
        "s_per_step": round(result["seconds"] / steps, 4),
        "threads": result["threads"],
        "process_wall_s": round(wall, 1),
        "cpus": len(os.sched_getaffinity(0)),
        "load_before": round(load, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", default="cyclegan16_cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--busy", type=int, default=0, help="busy torch processes beside it")
    parser.add_argument("--settings", default="default,omp1,passive,ganforge")
    parser.add_argument("--child", choices=["plain", "ganforge"], help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()
    if args.child:
        child(args.case, args.steps, args.child, extra)
        return
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.busy)]
    try:
        time.sleep(3 if busy else 0)
        for setting in args.settings.split(","):
            for loop in ("plain", "ganforge"):
                if setting == "ganforge" and loop == "plain":
                    continue
                line = measure(args.case, args.steps, loop, setting) | {"busy_beside": args.busy}
                print(json.dumps(line), flush=True)
    finally:
        for proc in busy:
            proc.kill()


if __name__ == "__main__":
    main()

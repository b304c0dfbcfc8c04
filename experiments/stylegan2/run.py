"""StyleGAN2 against the DCGAN and SNGAN-ResNet presets on the digits, at the same wall-clock budget.

Each preset trains for ``--minutes`` of training time (``trainer.max_time``; ``train.steps`` set far
beyond it), one after another, with ``--threads`` torch threads; then ``ganforge-eval`` measures every
last checkpoint (its EMA G where the preset keeps one) with the same classifier-feature metrics: FID,
KID, improved precision and recall, 1,797 generated samples against the 1,797 digits. Writes
``results.json`` and ``results.md`` next to this file and copies each run's last sample grid
(``samples_<preset>.png``); the runs go to ``runs/`` (reused when there).

    python experiments/stylegan2/run.py --minutes 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PRESETS = ["stylegan2_digits", "digits_dcgan", "digits_sngan_resnet"]
METRICS = ["metrics=[fid,kid,prc]", "metrics.num_samples=2000"]  # capped at the 1,797 digits


def run(args: list[str], threads: int) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, "-m", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def train(
    preset: str, run_dir: Path, minutes: int | None, seed: int, threads: int, *extra: str
) -> dict[str, Any]:
    """The preset trained for ``minutes`` of training time, or as ``extra`` says (unless already there);
    its summary."""
    summary = run_dir / "summary.json"
    if not summary.is_file():
        budget = ["train.steps=1000000", f"trainer.max_time=00:00:{minutes:02d}:00"] if minutes else []
        overrides = [
            f"experiment={preset}",
            *budget,
            *extra,
            "train.sample_every=0",
            "train.ckpt_every=0",
            "metrics=[]",
            "logger=[csv]",
            f"seed={seed}",
            "train.overwrite=true",
            f"hydra.run.dir={run_dir}",
        ]
        run(["ganforge.train", *overrides], threads)
    return json.loads(summary.read_text())


def evaluate(ckpt: Path, out: Path, threads: int) -> dict[str, Any]:
    if not out.is_file():
        run(["ganforge.eval", f"ckpt_path={ckpt}", *METRICS, f"out={out}"], threads)
    return json.loads(out.read_text())


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| preset | G steps | steps/s | FID | KID | precision | recall |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| `{r['preset']}` | {r['g_steps']:,} | {r['steps_per_s']:.2f} | {r['fid']:.2f} "
            f"| {r['kid']:.4f} | {r['precision']:.3f} | {r['recall']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=int, default=5, help="training time per preset")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job (OMP_NUM_THREADS)")
    args = parser.parse_args()
    rows = []
    for preset in PRESETS:
        run_dir = HERE / "runs" / f"{preset}_{args.minutes}min_seed{args.seed}"
        summary = train(preset, run_dir, args.minutes, args.seed, args.threads)
        values = evaluate(run_dir / "checkpoints" / "last.ckpt", run_dir / "eval.json", args.threads)[
            "metrics"
        ]
        grid = sorted((run_dir / "samples").glob("*.png"))
        if grid:
            shutil.copy(grid[-1], HERE / f"samples_{preset}.png")
        rows.append(
            {
                "preset": preset,
                "g_steps": summary["g_steps"],
                "wall_time_s": summary["wall_time_s"],
                "steps_per_s": summary["g_steps"] / summary["wall_time_s"],
                "fid": values["val/fid"],
                "kid": values["val/kid"],
                "precision": values["val/precision"],
                "recall": values["val/recall"],
            }
        )
        print(json.dumps(rows[-1]))
    # why: those that ran more steps, at StyleGAN2's number of steps (quality per step), and StyleGAN2's
    # speed without its regularization passes (what the lazy R1 and path-length passes cost)
    sg2_steps = rows[0]["g_steps"]
    same_steps = []
    for preset in [r["preset"] for r in rows[1:] if r["g_steps"] > sg2_steps]:  # those that ran more steps
        run_dir = HERE / "runs" / f"{preset}_{sg2_steps}steps_seed{args.seed}"
        summary = train(preset, run_dir, None, args.seed, args.threads, f"train.steps={sg2_steps}")
        values = evaluate(run_dir / "checkpoints" / "last.ckpt", run_dir / "eval.json", args.threads)[
            "metrics"
        ]
        same_steps.append({"preset": preset, "g_steps": sg2_steps, "fid": values["val/fid"]})
        print(json.dumps(same_steps[-1]))
    probe = {}
    for name, extra in (
        ("with_regularization", []),
        ("without_regularization", ["~loss.penalties.r1", "~loss.g_penalties.path_length"]),
    ):
        run_dir = HERE / "runs" / f"stylegan2_digits_speed_{name}"
        summary = train("stylegan2_digits", run_dir, None, args.seed, args.threads, "train.steps=300", *extra)
        probe[name] = summary["g_steps"] / summary["wall_time_s"]
    print(json.dumps(probe))
    setup = {"minutes": args.minutes, "seed": args.seed, "threads": args.threads}
    result = {"setup": setup, "rows": rows, "same_steps": same_steps, "stylegan2_steps_per_s": probe}
    (HERE / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "results.md").write_text(table(rows))


if __name__ == "__main__":
    main()

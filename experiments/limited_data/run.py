"""Limited data: what DiffAugment, ADA, LeCam + DiffAugment and bCR buy a DCGAN whose D overfits.

The ``digits_dcgan`` preset on the bundled digits at 100 %, 20 % and 10 % (``data.limit``: a fixed
subset, the same for every seed), one job per method × size × seed. Every job logs, over its steps:
FID and KID against **all 1,797 digits** (``metrics.reference=all``: the population the subsets were
drawn from, one classifier and one reference set for every size), and D's outputs on 512 of its
training reals and on 512 digits it never saw (``callbacks.overfit``: ``val/d_gap``, ADA's
``val/rt_train``). Writes ``results.json``, ``results.md`` (mean ± std over seeds) and
``results.png`` (FID and D's train/held-out gap over steps) next to this file; the runs go to
``runs/`` (reused when finished).

    python experiments/limited_data/run.py --steps 3000 --seeds 0 1 2 --workers 2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DIGITS = 1797
SIZES = {100: None, 20: 359, 10: 180}  # percent of the digits: data.limit
POLICY = "train.diffaugment=[color,translation,cutout]"  # DiffAugment's policy (Zhao et al. 2020)
METHODS = {
    "none": [],
    "diffaugment": [POLICY],
    # the paper's target 0.6; kimg 100 instead of 500 so that p can reach 1 within 192 kimg (3,000 steps)
    "ada": ["train.ada.enabled=true", "train.ada.kimg=100"],
    "lecam+diffaugment": ["loss/regularizer=lecam", POLICY],  # λ 0.3, decay 0.99 (the paper's CIFAR-10)
    "bcr": ["loss/regularizer=bcr"],  # λ_real = λ_fake = 10, flip + translation (Zhao et al. 2021)
}


def job(method: str, percent: int, seed: int, args: argparse.Namespace) -> dict[str, Any] | None:
    """Train one job (unless it finished before); its curves and summary (None: not run, --collect)."""
    run_dir = args.out / f"{method}_{percent}pct_{args.steps}steps_seed{seed}"
    summary_file = run_dir / "summary.json"
    done = summary_file.is_file() and json.loads(summary_file.read_text()).get("status") == "finished"
    if not done and args.collect:
        return None
    if not done:
        limit = SIZES[percent]
        overrides = [
            "experiment=digits_dcgan",
            f"data.limit={'null' if limit is None else limit}",
            f"train.steps={args.steps}",
            f"seed={seed}",
            "metrics=[fid,kid]",
            "metrics.reference=all",
            f"metrics.every={args.eval_every}",
            f"callbacks.overfit.every={args.overfit_every}",
            "train.sample_every=0",
            "train.ckpt_every=0",
            "logger=[csv]",
            f"task_name=limited_{method}_{percent}pct",
            "train.overwrite=true",
            f"hydra.run.dir={run_dir}",
            *METHODS[method],
        ]
        env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": str(args.threads)}
        subprocess.run(
            [sys.executable, "-m", "ganforge.train", *overrides],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(run_dir.parent / f"{run_dir.name}.err", "w"),  # noqa: SIM115
        )
    summary = json.loads(summary_file.read_text())
    curves: dict[str, list[tuple[int, float]]] = {}
    with open(run_dir / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            for key in ("val/fid", "val/kid", "val/d_gap", "val/rt_train", "train/ada_p"):
                if row.get(key):
                    curves.setdefault(key, []).append((int(row["trainer/g_step"]), float(row[key])))
    print(f"{method} {percent}% seed {seed}: FID {curves['val/fid'][-1][1]:.2f}", flush=True)
    return {
        "method": method,
        "percent": percent,
        "seed": seed,
        "wall_time_s": summary["wall_time_s"],
        "curves": curves,
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def last(curve: list[tuple[int, float]]) -> float:
    return curve[-1][1]


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per size × method: final FID/KID, best FID over the run, D's final gap and r_t."""
    out = []
    for percent in SIZES:
        for method in METHODS:
            mine = [r for r in rows if r["method"] == method and r["percent"] == percent]
            if not mine:
                continue
            c = [r["curves"] for r in mine]
            line = {"percent": percent, "method": method, "seeds": len(mine)}
            line["fid"] = mean_std([last(x["val/fid"]) for x in c])
            line["kid"] = mean_std([last(x["val/kid"]) for x in c])
            line["best_fid"] = mean_std([min(v for _, v in x["val/fid"]) for x in c])
            line["rt_train"] = mean_std([last(x["val/rt_train"]) for x in c])
            if all("val/d_gap" in x for x in c):
                line["d_gap"] = mean_std([last(x["val/d_gap"]) for x in c])
            line["wall_time_s"] = statistics.fmean(r["wall_time_s"] for r in mine)
            out.append(line)
    return out


def table(lines: list[dict[str, Any]], steps: int) -> str:
    head = (
        f"| data | method | seeds | FID at {steps:,} steps | best FID of the run | KID ×10³ "
        "| D train − held-out | r_t (train) | wall time |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    body = []
    for x in lines:
        size = f"{x['percent']} % ({SIZES[x['percent']] or DIGITS:,})"
        gap = f"{x['d_gap'][0]:.2f} ± {x['d_gap'][1]:.2f}" if "d_gap" in x else "–"
        body.append(
            f"| {size} | {x['method']} | {x['seeds']} | {x['fid'][0]:.2f} ± {x['fid'][1]:.2f} "
            f"| {x['best_fid'][0]:.2f} ± {x['best_fid'][1]:.2f} "
            f"| {1e3 * x['kid'][0]:.1f} ± {1e3 * x['kid'][1]:.1f} | {gap} "
            f"| {x['rt_train'][0]:.2f} ± {x['rt_train'][1]:.2f} | {x['wall_time_s']:.0f} s |"
        )
    return head + "\n".join(body) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """FID (mean over seeds, band: ± std) and D's train − held-out gap over steps, one row per size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(len(SIZES), 2, figsize=(11, 3.2 * len(SIZES)), squeeze=False)
    for i, percent in enumerate(SIZES):
        for method in METHODS:
            mine = [r["curves"] for r in rows if r["method"] == method and r["percent"] == percent]
            for j, key in enumerate(("val/fid", "val/d_gap")):
                if not mine or not all(key in c for c in mine):
                    continue
                steps = [s for s, _ in mine[0][key]]
                values = np.array([[v for _, v in c[key]][: len(steps)] for c in mine])
                mean, std = values.mean(0), values.std(0)
                axes[i, j].plot(steps, mean, label=method)
                axes[i, j].fill_between(steps, mean - std, mean + std, alpha=0.2)
        size = f"{percent} % of the digits ({SIZES[percent] or DIGITS})"
        axes[i, 0].set(title=f"FID vs all 1,797 digits — {size}", xlabel="generator step", ylabel="FID")
        axes[i, 1].set(title=f"D(train reals) − D(held-out reals) — {size}", xlabel="generator step")
        if SIZES[percent] is None:
            note = "no held-out digits at 100 %"
            axes[i, 1].text(0.5, 0.5, note, ha="center", transform=axes[i, 1].transAxes)
        if axes[i, 0].lines:
            axes[i, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="generator steps per job")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--eval-every", type=int, default=500, help="steps between FID/KID evaluations")
    parser.add_argument("--overfit-every", type=int, default=250, help="steps between D gap measurements")
    parser.add_argument("--workers", type=int, default=1, help="jobs at once (one core each)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job (OMP_NUM_THREADS)")
    parser.add_argument("--out", type=Path, default=HERE / "runs", help="run directories (not committed)")
    parser.add_argument("--collect", action="store_true", help="train nothing: tabulate the finished jobs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(m, p, s) for s in args.seeds for p in args.sizes for m in args.methods]
    with ThreadPoolExecutor(args.workers) as pool:
        rows = [r for r in pool.map(lambda j: job(*j, args), jobs) if r is not None]
    lines = aggregate(rows)
    setup = {key: getattr(args, key) for key in ("steps", "seeds", "eval_every", "overfit_every", "threads")}
    setup["workers"] = args.workers
    setup["seeds_finished"] = {f"{x['percent']}%/{x['method']}": x["seeds"] for x in lines}
    (HERE / "results.json").write_text(json.dumps({"setup": setup, "table": lines, "runs": rows}, indent=1))
    (HERE / "results.md").write_text(table(lines, args.steps))
    plot(rows, HERE / "results.png")
    print(table(lines, args.steps))


if __name__ == "__main__":
    main()

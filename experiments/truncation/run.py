"""The truncation trick (Brock et al. 2019) on digits: FID and precision/recall against ψ.

Trains one digits DCGAN (the default job, 1,500 generator steps, a couple of CPU minutes; reused when
its checkpoint is there), then runs ``ganforge-eval`` on it at each ψ (and without truncation) with
the classifier-feature metrics training uses: FID, improved precision and recall (Kynkäänniemi et al.
2019), 1,797 generated samples against the 1,797 digits. Writes ``results.json`` and
``truncation.png`` next to this file, with ``ganforge-sample`` grids of the same 16 latents at
ψ = 0.5, 1 and off (``samples_<ψ>.png``); the runs go to ``runs/``.

    nice -n 15 python experiments/truncation/run.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PSIS: list[float | None] = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, None]
METRICS = ["metrics=[fid,prc]", "metrics.num_samples=2000"]  # capped at the 1,797 digits


def run(args: list[str]) -> None:
    env = {**os.environ, "WANDB_MODE": "offline"}
    subprocess.run([sys.executable, "-m", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def train(run_dir: Path, steps: int, seed: int) -> Path:
    """The digits DCGAN's ``last.ckpt`` (trained unless already there)."""
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        overrides = [f"train.steps={steps}", f"seed={seed}", "metrics=[]", "logger=[csv]"]
        run(["ganforge.train", *overrides, "train.overwrite=true", f"hydra.run.dir={run_dir}"])
    return ckpt


def evaluate(ckpt: Path, psi: float | None, out: Path) -> dict[str, Any]:
    """``ganforge-eval`` at truncation ``psi`` (None: off); its eval.json."""
    if not out.is_file():
        run(["ganforge.eval", f"ckpt_path={ckpt}", *METRICS, f"truncation={psi or 'null'}", f"out={out}"])
    return json.loads(out.read_text())


def sample_grid(ckpt: Path, psi: float | None, out: Path) -> None:
    """``ganforge-sample``: 16 samples at truncation ``psi`` (the same seed: the same latents, truncated)."""
    if not out.is_file():
        run(
            [
                "ganforge.sample",
                f"ckpt_path={ckpt}",
                "n=16",
                "seed=0",
                f"truncation={psi or 'null'}",
                f"out={out}",
            ]
        )


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["none" if r["truncation"] is None else f"{r['truncation']:g}" for r in rows]
    x = list(range(len(rows)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    left.plot(x, [r["fid"] for r in rows], "o-", color="C3")
    left.set(title="FID (classifier features)", xlabel="truncation ψ", ylabel="FID (lower is better)")
    right.plot(x, [r["precision"] for r in rows], "o-", label="precision (fidelity)")
    right.plot(x, [r["recall"] for r in rows], "s-", label="recall (diversity)")
    right.set(title="precision and recall", xlabel="truncation ψ", ylim=(0, 1.02))
    right.legend(loc="lower right")
    for ax in (left, right):
        ax.set_xticks(x, labels)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="generator steps of the DCGAN")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=HERE, help="where results.json and the plot go")
    args = parser.parse_args()
    runs = args.out / "runs"
    ckpt = train(runs / "dcgan_digits", args.steps, args.seed)
    rows = []
    for psi in PSIS:
        result = evaluate(ckpt, psi, runs / f"eval_{psi or 'none'}.json")
        values = result["metrics"]
        rows.append(
            {
                "truncation": result["truncation"],
                "fid": values["val/fid"],
                "precision": values["val/precision"],
                "recall": values["val/recall"],
                "num_samples": result["num_samples"],
                "g_step": result["g_step"],
            }
        )
    out = {"checkpoint": str(ckpt.relative_to(args.out)), "seed": args.seed, "results": rows}
    (args.out / "results.json").write_text(json.dumps(out, indent=2) + "\n")
    plot(rows, args.out / "truncation.png")
    for psi in (0.5, 1.0, None):
        sample_grid(ckpt, psi, args.out / f"samples_{psi or 'none'}.png")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

"""Adaptive discriminator augmentation (Karras et al. 2020) on limited data: DCGAN trained on 200 of the
bundled digits (``data.limit=200``) with and without ``train.ada``, then FID of each final generator
against all 1,797 digits (the metrics' classifier extractor, trained on the full set's labels; 1,797
generated samples): the distribution the 200 images were drawn from.

One ``ganforge-train`` job at a time; a finished job is reused. Writes ``results.json`` and prints the
Markdown table of the README.

    python experiments/ada/fid_limited_digits.py                       # 1500 generator steps each
    python experiments/ada/fid_limited_digits.py --steps 3000 --kimg 100 --seeds 1 2
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir

from ganforge import CONFIG_DIR
from ganforge.data.digits import DigitsDataModule
from ganforge.metrics.suite import MetricSettings
from ganforge.metrics.suites import make_suite
from ganforge.restore import restore

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # experiments/jobs.py
from jobs import train_job  # noqa: E402


def fid(ckpt: Path, reference: DigitsDataModule, metrics: Any, cache_dir: str) -> float:
    """FID of the checkpoint's generator against ``reference`` (as many samples as it has images)."""
    _, _, module, _ = restore(ckpt, "cpu")
    suite = make_suite(MetricSettings.from_config(metrics), reference, cache_dir)
    suite.prepare(torch.device("cpu"))
    return float(suite.measure_module(module)["val/fid"])


def ada_curve(run_dir: Path) -> list[float]:
    """The logged p, in order of the generator steps."""
    with open(run_dir / "metrics.csv", newline="") as f:
        return [float(r["train/ada_p"]) for r in csv.DictReader(f) if r.get("train/ada_p")]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1500, help="generator steps per job")
    parser.add_argument("--limit", type=int, default=200, help="training images (data.limit)")
    parser.add_argument("--kimg", type=float, default=100, help="train.ada.kimg (the paper: 500)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--out", type=Path, default=HERE / "runs", help="run directories (not committed)")
    parser.add_argument("--results", type=Path, default=HERE / "results.json")
    args = parser.parse_args()

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=["metrics=[fid]", "metrics.num_samples=2000"])
    cache_dir = str(cfg.paths.cache_dir)
    full = DigitsDataModule(resolution=16)
    variants = {"no augmentation": [], "ADA": ["train.ada.enabled=true", f"train.ada.kimg={args.kimg}"]}
    rows = []
    for seed in args.seeds:
        for name, extra in variants.items():
            tag = "ada" if extra else "plain"
            run_dir = args.out / f"{tag}_limit{args.limit}_steps{args.steps}_kimg{args.kimg:g}_seed{seed}"
            job = [
                f"data.limit={args.limit}",
                f"train.steps={args.steps}",
                f"seed={seed}",
                "metrics=[]",
                "train.sample_every=0",
                "train.ckpt_every=0",
                "logger=[csv]",
                "task_name=ada_limited_digits",
                *extra,
            ]
            summary = train_job(run_dir, job)
            ckpt = run_dir / "checkpoints" / "last.ckpt"
            p = ada_curve(run_dir) if extra else []
            row = {
                "variant": name,
                "seed": seed,
                "steps": summary["g_steps"],
                "fid_full": fid(ckpt, full, cfg.metrics, cache_dir),
                "final_p": p[-1] if p else None,
                "max_p": max(p) if p else None,
                "final_rt": summary["last"].get("train/ada_rt"),
                "wall_time_s": summary["wall_time_s"],
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    args.results.write_text(json.dumps(rows, indent=2) + "\n")
    print("| variant | seed | generator steps | FID vs all 1,797 digits | final p (max) | wall time |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        p = "–" if r["final_p"] is None else f"{r['final_p']:.3f} ({r['max_p']:.3f})"
        print(
            f"| {r['variant']} | {r['seed']} | {r['steps']} | {r['fid_full']:.2f} | {p} "
            f"| {r['wall_time_s']:.0f} s |"
        )


if __name__ == "__main__":
    main()

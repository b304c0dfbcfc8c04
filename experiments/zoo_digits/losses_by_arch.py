"""Every adversarial loss (``conf/loss/*.yaml``) × {DCGAN, ResNet} on the bundled digits: final FID and
wall time, everything else fixed (Adam 2e-4 betas (0.5, 0.999), batch 64, n_critic 1, seed 42).

DCGAN: width 32 with layer norm in D (the penalties of ``wgan_gp`` and ``dragan`` need a D without batch
norm; the same D for every loss). ResNet: SNGAN's blocks, width 32, spectral norm in D. One
``ganforge-train`` job at a time; a finished job is reused. Writes ``losses_by_arch.json`` and prints
the Markdown table.

    python experiments/zoo_digits/losses_by_arch.py                  # 500 generator steps each
    python experiments/zoo_digits/losses_by_arch.py --steps 1500 --archs dcgan
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # experiments/jobs.py
from jobs import train_job  # noqa: E402

LOSSES = sorted(p.stem for p in (HERE.parents[1] / "conf" / "loss").glob("*.yaml"))
ARCHS = {"dcgan": ["model=dcgan", "model.discriminator.norm=layer"], "resnet": ["model=resnet"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--losses", nargs="+", default=LOSSES, choices=LOSSES)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument("--steps", type=int, default=500, help="generator steps per job")
    parser.add_argument("--out", type=Path, default=HERE / "runs", help="run directories (not committed)")
    parser.add_argument("--results", type=Path, default=HERE / "losses_by_arch.json")
    args = parser.parse_args()

    rows = []
    for arch in args.archs:
        for loss in args.losses:
            job = [
                f"loss={loss}",
                *ARCHS[arch],
                f"train.steps={args.steps}",
                "metrics=[fid]",
                "metrics.every=0",
                "train.sample_every=0",
                "train.ckpt_every=0",
                "logger=[csv]",
                "task_name=zoo_losses_by_arch",
            ]
            summary = train_job(args.out / f"{arch}_{loss}_{args.steps}", job)
            last = summary["last"]
            row = {
                "arch": arch,
                "loss": loss,
                "steps": summary["g_steps"],
                "fid": last.get("val/fid"),
                "d_loss": last.get("train/d_loss"),
                "g_loss": last.get("train/g_loss"),
                "wall_time_s": summary["wall_time_s"],
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    args.results.write_text(json.dumps(rows, indent=2) + "\n")
    print("| loss | DCGAN FID | DCGAN wall time | ResNet FID | ResNet wall time |")
    print("| --- | --- | --- | --- | --- |")
    by = {(r["arch"], r["loss"]): r for r in rows}
    for loss in args.losses:
        cells = []
        for arch in ("dcgan", "resnet"):
            r = by.get((arch, loss))
            fid = f"{r['fid']:.2f}" if r and r["fid"] is not None else "—"
            cells += [fid, f"{r['wall_time_s']:.0f} s" if r else "—"]
        print(f"| {loss} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

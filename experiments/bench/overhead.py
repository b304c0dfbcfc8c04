"""What ganforge costs over the plain PyTorch loop a researcher would write, in one process.

Each case trains the same nets (built from the same config), with the same losses, optimizers and
data on the same device, for the same number of generator steps: once in a plain loop (D update,
then G update, no logging), once through ``ganforge.train.train`` (GANModule + Lightning Trainer,
CSV and offline W&B loggers, progress bar, health checks, divergence guard, a final checkpoint;
metrics and sample grids off, since the plain loop has none). Prints one JSON line per case:

    {"case": ..., "steps": ..., "plain_s": ..., "ganforge_s": ..., "ratio": plain_s / ganforge_s}

    python experiments/bench/overhead.py            # toy_mlp_cpu, dcgan_digits_cpu (+ dcgan32_gpu on CUDA)
    python experiments/bench/overhead.py --quick    # short runs (what CI runs: checks it works)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from ganforge.config import CONFIG_DIR
from ganforge.data.toy import GaussianMixtureDataModule, sample_mixture

CASES = {
    "toy_mlp_cpu": (["data=ring8", "model=mlp", "data.batch_size=256"], 2000, "cpu"),
    "dcgan_digits_cpu": (["data=digits", "model=dcgan", "data.batch_size=64"], 500, "cpu"),
    "dcgan32_gpu": (["data=cifar10", "model=dcgan", "data.batch_size=128"], 2000, "cuda"),
}
COMMON = [
    "metrics=[]",
    "logger=[csv,wandb]",
    "train.sample_every=0",
    "train.ckpt_every=0",
    "train.log_every=25",
]


def config(overrides: list[str], steps: int, device: str, out: Path):
    accel = "gpu" if device == "cuda" else "cpu"
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose(
            "train",
            overrides=[
                *COMMON,
                *overrides,
                f"train.steps={steps}",
                f"trainer.accelerator={accel}",
                f"paths.output_dir={out}",
            ],
        )


def plain_loop(cfg, device: str) -> float:
    """The hand-written reference: same nets, losses, optimizers and data; seconds for the steps."""
    from ganforge.train import build

    torch.manual_seed(cfg.seed)
    datamodule, module = build(cfg)
    G, D, loss = module.generator.to(device), module.discriminator.to(device), module.loss
    opt_g, opt_d = module.optimizer_g(G.parameters()), module.optimizer_d(D.parameters())
    n, batch = cfg.train.n_critic, cfg.data.batch_size
    gen = torch.Generator().manual_seed(cfg.seed)
    if isinstance(datamodule, GaussianMixtureDataModule):

        def real_batch() -> torch.Tensor:
            return sample_mixture(datamodule.centers, datamodule.std, batch, gen)[0].to(device)
    else:
        datamodule.setup("fit")
        images = datamodule.items(list(range(datamodule.num_items())))[0]

        def real_batch() -> torch.Tensor:
            return images[torch.randint(len(images), (batch,), generator=gen)].to(device)

    def step() -> None:
        for _ in range(n):
            with torch.no_grad():
                fake = G(torch.randn(batch, module.z_dim, device=device))
            d_loss = loss.d_loss(D(real_batch()), D(fake))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        g_loss = loss.g_loss(D(G(torch.randn(batch, module.z_dim, device=device))))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()

    for _ in range(5):  # warm-up, as Lightning's first steps include its own start-up
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(cfg.train.steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def ganforge_run(cfg) -> float:
    """Seconds of ``trainer.fit`` (the summary's wall time: start-up and final checkpoint included)."""
    from ganforge.loggers import finish_wandb
    from ganforge.train import train

    summary = train(cfg)
    finish_wandb()
    assert summary["status"] == "finished", summary
    return summary["wall_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="50 steps per case")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("overrides", nargs="*", help="extra config overrides for both runs (callbacks=none)")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    for name in args.cases.split(","):
        overrides, steps, device = CASES[name]
        if device == "cuda" and not torch.cuda.is_available():
            continue
        steps = 50 if args.quick else steps
        with tempfile.TemporaryDirectory() as tmp:
            cfg = config([*overrides, *args.overrides], steps, device, Path(tmp) / "run")
            plain_s = plain_loop(cfg, device)
            ganforge_s = ganforge_run(cfg)
        print(
            json.dumps(
                {
                    "case": name,
                    "overrides": args.overrides,
                    "steps": steps,
                    "plain_s": round(plain_s, 3),
                    "ganforge_s": round(ganforge_s, 3),
                    "ratio": round(plain_s / ganforge_s, 3),
                    "threads": torch.get_num_threads(),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()

"""What ganforge costs over the plain PyTorch loop a researcher would write, in one process.

Each case trains the same nets (built from the same config), with the same losses, optimizers and
data on the same device, for the same number of generator steps: once in a plain loop (D update,
then G update, no logging), once through ``ganforge.train.train`` (GANModule + Lightning Trainer,
CSV and offline W&B loggers, progress bar, health checks, divergence guard, a final checkpoint;
metrics and sample grids off, since the plain loop has none). Prints one JSON line per case:

    {"case": ..., "steps": ..., "plain_s": ..., "ganforge_s": ..., "ratio": plain_s / ganforge_s}

    python experiments/bench/overhead.py            # toy_mlp_cpu, dcgan_digits_cpu (+ dcgan32_gpu on CUDA)
    python experiments/bench/overhead.py --quick    # short runs (what CI runs: checks it works)
    python experiments/bench/overhead.py --cases dcgan32_gpu --switches all   # + one line per switch

Each loop runs ``--repeat`` times (3), alternating, and the fastest run of each counts. With
``--switches`` every speed switch (fused optimizers off, bf16, channels-last, compile, loader
workers, one step per batch) is timed against ganforge's defaults, alternating the same way:
``{"switch": ..., "ganforge_s": ..., "switch_s": ..., "speedup": ganforge_s / switch_s}``.
The plain loop uses torch's default optimizer implementation (what ``torch.optim.Adam(...)``
gives); ganforge's default is the fused one (``optim.fused``).
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

from ganforge import CONFIG_DIR
from ganforge.data.toy import GaussianMixtureDataModule, sample_mixture

CASES = {
    "toy_mlp_cpu": (["data=ring8", "model=mlp", "data.batch_size=256"], 2000, "cpu"),
    "dcgan_digits_cpu": (["data=digits", "model=dcgan", "data.batch_size=64"], 500, "cpu"),
    "dcgan32_gpu": (
        ["data=digits", "data.resolution=32", "model=dcgan", "data.batch_size=128"],
        2000,
        "cuda",
    ),
}
# the speed switches, each timed against ganforge's defaults (``--switches``); fused optimizers are on
# by default, so their line times them off
SWITCHES = {
    "unfused": ["optim.fused=false"],
    "bf16": ["trainer.precision=bf16-mixed"],
    "channels_last": ["model.channels_last=true"],
    "compile": ["model.compile=true"],
    "workers": ["data.num_workers=2", "data.pin_memory=true"],
    "steps_per_batch_1": ["train.steps_per_batch=1"],
}
COMMON = [
    "metrics=[]",
    "logger=[csv,wandb]",
    "~callbacks.samples",  # the plain loop draws no sample grids
    "train.ckpt_every=0",
    "train.log_every=25",
    "train.overwrite=true",  # each repeat trains again in the same run dir
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


def torch_default(factory, net: torch.nn.Module) -> torch.optim.Optimizer:
    """The configured optimizer class and hyperparameters with torch's default implementation (what a
    hand-written loop gets: ``torch.optim.Adam(params, lr=..., betas=...)``), not ganforge's fused one."""
    settings = {k: v for k, v in factory.keywords.items() if k not in ("fused", "foreach")}
    return factory.func(net.parameters(), **settings)


def plain_loop(cfg, device: str) -> float:
    """The hand-written reference: same nets, losses, optimizers and data; seconds for the steps."""
    from ganforge.build import build

    torch.manual_seed(cfg.seed)
    datamodule, module = build(cfg)
    G, D, loss = module.generator.to(device), module.discriminator.to(device), module.loss
    opt_g, opt_d = torch_default(module.optimizer_g, G), torch_default(module.optimizer_d, D)
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
                fake = G(torch.randn(batch, module.task.z_dim, device=device))
            d_loss = loss.d_loss(D(real_batch()), D(fake))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        g_loss = loss.g_loss(D(G(torch.randn(batch, module.task.z_dim, device=device))))
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


def timed(cfg, device: str, repeat: int) -> tuple[list[float], list[float]]:
    """Seconds of the plain loop and of ganforge, ``repeat`` times each, alternating (the machine's
    drift hits both alike); the minimum of each is the figure to compare (as ``timeit`` does)."""
    plain, ours = [], []
    for _ in range(repeat):
        plain.append(plain_loop(cfg, device))
        ours.append(ganforge_run(cfg))
    return plain, ours


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="50 steps per case, once")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--repeat", type=int, default=3, help="runs of each loop; the minimum counts")
    parser.add_argument(
        "--switches", default="", help=f"also time ganforge with each of: {','.join(SWITCHES)} (or 'all')"
    )
    parser.add_argument("overrides", nargs="*", help="extra config overrides for both runs (callbacks=none)")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    repeat = 1 if args.quick else args.repeat
    switches = list(SWITCHES) if args.switches == "all" else [s for s in args.switches.split(",") if s]
    for name in args.cases.split(","):
        overrides, steps, device = CASES[name]
        if device == "cuda" and not torch.cuda.is_available():
            continue
        steps = 50 if args.quick else steps
        with tempfile.TemporaryDirectory() as tmp:
            cfg = config([*overrides, *args.overrides], steps, device, Path(tmp) / "run")
            plain, ours = timed(cfg, device, repeat)
            report(
                name,
                steps,
                args.overrides,
                plain_s=min(plain),
                ganforge_s=min(ours),
                ratio=min(plain) / min(ours),
                runs={"plain_s": plain, "ganforge_s": ours},
            )
            for switch in switches:  # each against the defaults, alternating: drift hits both alike
                switched = config(
                    [*overrides, *args.overrides, *SWITCHES[switch]], steps, device, Path(tmp) / switch
                )
                base, runs = [], []
                for _ in range(repeat):
                    base.append(ganforge_run(cfg))
                    runs.append(ganforge_run(switched))
                report(
                    name,
                    steps,
                    args.overrides,
                    switch=switch,
                    ganforge_s=min(base),
                    switch_s=min(runs),
                    speedup=min(base) / min(runs),
                    runs={"ganforge_s": base, "switch_s": runs},
                )


def seconds(value):
    return round(value, 3) if isinstance(value, float) else value


def report(case: str, steps: int, overrides: list[str], **figures) -> None:
    """One JSON line: the case, its settings and the figures (seconds rounded to ms)."""
    rounded = {
        k: {n: [round(x, 3) for x in xs] for n, xs in v.items()} if isinstance(v, dict) else seconds(v)
        for k, v in figures.items()
    }
    line = {
        "case": case,
        "overrides": overrides,
        "steps": steps,
        **rounded,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()

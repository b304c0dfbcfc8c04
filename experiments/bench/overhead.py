"""What ganforge costs over the plain PyTorch loop a researcher would write, in one process.

Each case trains the same nets (built from the same config), with the same losses, optimizers and
data on the same device, for the same number of generator steps: once in a plain loop written as the
method's authors write theirs (noise to image: D update, then G update; pix2pix: one G forward shared by
D's and G's update; CycleGAN: one forward of both translators, G's update, then both D's on pooled
fakes; training data preloaded as tensors, no logging), once through ``ganforge.train.train``
(GANModule + Lightning Trainer, CSV and offline W&B loggers, progress bar, health checks, divergence
guard, a final checkpoint; metrics and sample grids off, since the plain loop has none). Prints one
JSON line per case:

    {"case": ..., "steps": ..., "plain_s": ..., "ganforge_s": ..., "ratio": plain_s / ganforge_s}

    python experiments/bench/overhead.py            # every CPU case (+ dcgan32_gpu on CUDA)
    python experiments/bench/overhead.py --cases pix2pix16_cpu,cyclegan16_cpu
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
    # image-to-image at 16 px (digits): pix2pix's U-Net + PatchGAN, CycleGAN's two ResNet translators and
    # two PatchGANs with image pools
    "pix2pix16_cpu": (["experiment=pix2pix_sr_digits"], 300, "cpu"),
    "cyclegan16_cpu": (["experiment=cyclegan_digits"], 150, "cpu"),
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
    G, D = module.generator.to(device), module.discriminator.to(device)
    opt_g, opt_d = torch_default(module.optimizer_g, G), torch_default(module.optimizer_d, D)
    gen = torch.Generator().manual_seed(cfg.seed)
    maker = {"paired": pix2pix_step, "unpaired": cyclegan_step}.get(module.task.name, gan_step)
    step = maker(cfg, datamodule, module, (G, D, opt_g, opt_d), gen, device)
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


def sampler(tensors: tuple[torch.Tensor, ...], batch: int, gen: torch.Generator, device: str):
    """Random training batches of preloaded tensors (the same rows of each)."""

    def draw() -> tuple[torch.Tensor, ...]:
        idx = torch.randint(len(tensors[0]), (batch,), generator=gen)
        return tuple(t[idx].to(device) for t in tensors)

    return draw


def gan_step(cfg, datamodule, module, nets, gen, device):
    """Noise to image: ``n_critic`` D updates on fresh latents, then one G update."""
    G, D, opt_g, opt_d = nets
    loss, n, batch, z_dim = module.loss, cfg.train.n_critic, cfg.data.batch_size, module.task.z_dim
    if isinstance(datamodule, GaussianMixtureDataModule):

        def real_batch() -> torch.Tensor:
            return sample_mixture(datamodule.centers, datamodule.std, batch, gen)[0].to(device)
    else:
        datamodule.setup("fit")
        draw = sampler(datamodule.items(list(range(datamodule.num_items())))[:1], batch, gen, device)

        def real_batch() -> torch.Tensor:
            return draw()[0]

    def step() -> None:
        for _ in range(n):
            with torch.no_grad():
                fake = G(torch.randn(batch, z_dim, device=device))
            d_loss = loss.d_loss(D(real_batch()), D(fake))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        g_loss = loss.g_loss(D(G(torch.randn(batch, z_dim, device=device))))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()

    return step


def pix2pix_step(cfg, datamodule, module, nets, gen, device):
    """pix2pix as its authors' ``Pix2PixModel.optimize_parameters``: fake = G(source) once; D's update
    on (source, target) against (source, fake.detach()); then G's on D(source, fake) + λ·L1."""
    G, D, opt_g, opt_d = nets
    loss, l1 = module.loss, module.task.l1_weight
    datamodule.setup("fit")
    pairs = datamodule.dataset.__getitems__(list(range(len(datamodule.dataset))))[:2]
    draw = sampler(pairs, cfg.data.batch_size, gen, device)

    def step() -> None:
        source, target = draw()
        fake = G(source)
        d_loss = loss.d_loss(D(torch.cat([source, target], 1)), D(torch.cat([source, fake.detach()], 1)))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        for p in D.parameters():
            p.requires_grad_(False)
        g_loss = loss.g_loss(D(torch.cat([source, fake], 1))) + l1 * (fake - target).abs().mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        for p in D.parameters():
            p.requires_grad_(True)

    return step


def cyclegan_step(cfg, datamodule, module, nets, gen, device):
    """CycleGAN as its authors' ``CycleGANModel.optimize_parameters``: both translations and their cycles
    once; G's update (adversarial + λ_cyc·cycle + λ_cyc·λ_id·identity); then D_A's and D_B's on the real
    images against pooled fakes (the same ``ImagePool`` rule as the authors')."""
    from ganforge.tasks.pool import ImagePool

    G, D, opt_g, opt_d = nets
    task, loss = module.task, module.loss
    datamodule.setup("fit")
    shape = tuple(datamodule.data_shape)
    pool_a, pool_b = ImagePool(task.pool_size, shape), ImagePool(task.pool_size, shape)
    a_all = datamodule.train_a(list(range(datamodule.num_train_a())))[0]
    b_all = datamodule.train_b(list(range(datamodule.num_train_b())))[0]
    draw_a = sampler((a_all,), cfg.data.batch_size, gen, device)
    draw_b = sampler((b_all,), cfg.data.batch_size, gen, device)
    lam, lam_id = task.cycle_weight, task.cycle_weight * task.identity_weight

    def step() -> None:
        (a,), (b,) = draw_a(), draw_b()
        fake_b, fake_a = G.ab(a), G.ba(b)
        rec_a, rec_b = G.ba(fake_b), G.ab(fake_a)
        for p in D.parameters():
            p.requires_grad_(False)
        g_loss = loss.g_loss(D.b(fake_b)) + loss.g_loss(D.a(fake_a))
        g_loss = g_loss + lam * ((rec_a - a).abs().mean() + (rec_b - b).abs().mean())
        if lam_id > 0:
            g_loss = g_loss + lam_id * ((G.ba(a) - a).abs().mean() + (G.ab(b) - b).abs().mean())
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        for p in D.parameters():
            p.requires_grad_(True)
        old_a, old_b = pool_a.query(fake_a.detach()), pool_b.query(fake_b.detach())
        d_loss = loss.d_loss(D.a(a), D.a(old_a)) + loss.d_loss(D.b(b), D.b(old_b))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

    return step


def ganforge_run(cfg) -> float:
    """Seconds of ``trainer.fit`` (the summary's wall time: start-up and final checkpoint included)."""
    from ganforge.process import finish_wandb
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

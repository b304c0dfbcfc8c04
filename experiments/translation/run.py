"""Image-to-image translation, measured on held-out images by the suites training uses.

pix2pix (the default part): for each setting, PSNR / SSIM / L1 / FID / class accuracy of (a) the trivial
baseline (G's input as the answer: bicubic upsampling, the noisy image), (b) the U-Net trained on L1
alone (``task.adversarial=false``) and (c) pix2pix (the same U-Net, + PatchGAN and the non-saturating
loss). CycleGAN (``--cyclegan``): on ``data=digits_translation`` (known answer T(a)), PSNR / SSIM / class
accuracy / FID of G_AB for (a) the identity map, (b) CycleGAN, (c) CycleGAN without the cycle term,
(d) pix2pix trained on the pairs (a, T(a)), the upper bound with pairs. Prints JSON; writes
``results*.json``, ``results*.md`` and a sample figure per setting into ``--out``.

    python experiments/translation/run.py                       # digits: x2 super-resolution, denoising
    python experiments/translation/run.py --cifar ../shared/datasets/cifar10-train-jpg.zip
    python experiments/translation/run.py --cyclegan
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir

from ganforge import CONFIG_DIR
from ganforge.build import build
from ganforge.callbacks.samples import grid_image
from ganforge.metrics.suite import MetricSettings
from ganforge.metrics.translation import TranslationSuite
from ganforge.metrics.unpaired import UnpairedSuite
from ganforge.restore import restore
from ganforge.tasks.base import as_rgb

METRICS = "metrics=[psnr,ssim,l1,fid,class_acc]"
VARIANTS = {"l1_only": ["task.adversarial=false"], "pix2pix": []}


def settings(args: argparse.Namespace) -> dict[str, list[str]]:
    """Setting name -> the overrides of its run (a preset plus the budget)."""
    digits = [f"train.steps={args.steps}", "train.sample_every=500", "metrics.every=500"]
    out = {
        "digits_sr_x2": ["experiment=pix2pix_sr_digits", *digits],
        "digits_denoise_0.5": ["experiment=pix2pix_denoise_digits", *digits],
    }
    if args.cifar:
        cifar = [
            f"data.source.root={args.cifar}",
            f"train.steps={args.cifar_steps}",
            f"model.generator.width={args.cifar_width}",
            f"model.discriminator.width={args.cifar_width}",
            "train.sample_every=1000",
            "metrics.every=1000",
            "metrics.num_samples=2000",
        ]
        out["cifar10_sr_x2"] = ["experiment=pix2pix_sr_cifar10", *cifar]
        out["cifar10_denoise_0.2"] = [
            "experiment=pix2pix_sr_cifar10", "data.degradation=denoise", "data.noise_std=0.2", *cifar
        ]  # fmt: skip
    return out


def train(run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """One ganforge-train job (W&B offline); returns its summary."""
    if not (run_dir / "summary.json").is_file():
        cmd = [
            sys.executable,
            "-m",
            "ganforge.train",
            *overrides,
            METRICS,
            "logger=[csv]",
            f"hydra.run.dir={run_dir}",
        ]
        env = {**os.environ, "WANDB_MODE": "offline"}
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads((run_dir / "summary.json").read_text())


class Identity:
    """The trivial baseline as a "generator": its answer is its input."""

    device = torch.device("cpu")

    def translate(self, source: torch.Tensor, direction: str | None = None) -> torch.Tensor:
        return source


def measured(overrides: list[str], runs: dict[str, Path], cache_dir: str) -> dict[str, dict[str, float]]:
    """The metrics of the input itself and of each run's final generator, through one suite (the same
    held-out pairs and extractor as training uses)."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=[*overrides, METRICS, "paths.output_dir=."])
    datamodule, _ = build(cfg)
    suite = TranslationSuite(MetricSettings.from_config(cfg.metrics), datamodule, cache_dir)
    suite.prepare(torch.device("cpu"))
    values = {"input": suite.measure(Identity(), torch.device("cpu"))}
    for variant, run_dir in runs.items():
        _, _, module, _ = restore(run_dir / "checkpoints" / "last.ckpt")
        values[variant] = suite.measure(module, torch.device("cpu"))
    return values


def figure(runs: dict[str, Path], path: Path, n: int = 8) -> None:
    """Rows of held-out examples: input | L1 only | pix2pix | ground truth."""
    outputs, source, target = [], None, None
    for run_dir in runs.values():
        _, datamodule, module, _ = restore(run_dir / "checkpoints" / "last.ckpt")
        source, target, _ = datamodule.val_items(list(range(n)))
        outputs.append(module.translate(source).float())
    columns = [source, *outputs, target]
    channels = max(c.shape[1] for c in columns)
    rows = torch.stack([as_rgb(c, channels) for c in columns], dim=1).flatten(0, 1)
    grid_image(rows, len(columns)).save(path)


CYCLE_RUNS = {
    "cyclegan": ["experiment=cyclegan_digits"],
    "no_cycle": ["experiment=cyclegan_digits", "task.cycle_weight=0"],  # identity terms off too (λ_id·λ_cyc)
    "pix2pix_paired": [
        "task=paired", "data=digits_translation_pairs", "model=unet", "loss=nonsaturating",
        "model.generator.width=32", "model.discriminator.width=32", "model.discriminator.n_layers=2",
        "optim/scheduler=constant_then_linear", "train.sample_every=500", "metrics.every=500",
    ],
}  # fmt: skip


def cyclegan_part(out: Path, steps: int, cache_dir: str) -> dict[str, Any]:
    """The CycleGAN rows: every model measured by the unpaired suite of ``experiment=cyclegan_digits``."""
    runs = {name: out / "cyclegan_digits" / name for name in CYCLE_RUNS}
    wall = {}
    for name, overrides in CYCLE_RUNS.items():
        metrics = [] if name == "pix2pix_paired" else ["metrics=default"]
        run_dir = runs[name]
        if not (run_dir / "summary.json").is_file():
            cmd = [sys.executable, "-m", "ganforge.train", *overrides, *metrics, f"train.steps={steps}",
                   "logger=[csv]", f"hydra.run.dir={run_dir}"]  # fmt: skip
            subprocess.run(
                cmd, check=True, env={**os.environ, "WANDB_MODE": "offline"}, stdout=subprocess.DEVNULL
            )
        wall[name] = json.loads((run_dir / "summary.json").read_text())["wall_time_s"]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(
            "train", overrides=["experiment=cyclegan_digits", "metrics=default", "paths.output_dir=."]
        )
    datamodule, _ = build(cfg)
    suite = UnpairedSuite(MetricSettings.from_config(cfg.metrics), datamodule, cache_dir)
    suite.prepare(torch.device("cpu"))
    results: dict[str, Any] = {"identity": suite.measure(Identity(), torch.device("cpu"))}
    modules = {}
    for name, run_dir in runs.items():
        _, _, modules[name], _ = restore(run_dir / "checkpoints" / "last.ckpt")
        results[name] = {**suite.measure(modules[name], torch.device("cpu")), "wall_time_s": wall[name]}
        if name == "pix2pix_paired":  # one direction only: its B -> A and cycle numbers mean nothing
            for key in ("val/fid_ba", "val/cycle_l1"):
                results[name].pop(key, None)
    a, _, truth = datamodule.val_a(list(range(8)))
    columns = [a, *(modules[name].translate(a, "AtoB").float() for name in CYCLE_RUNS), truth]
    rows = torch.stack(columns, dim=1).flatten(0, 1)
    grid_image(rows, len(columns)).save(out / "cyclegan_digits.png")
    return results


def cycle_table(results: dict[str, Any]) -> str:
    keys = ["val/psnr_ab", "val/ssim_ab", "val/class_acc_ab", "val/fid_ab", "val/fid_ba", "val/cycle_l1"]
    lines = [
        "| model | PSNR_ab (dB) ↑ | SSIM_ab ↑ | class acc_ab ↑ | FID_ab ↓ | FID_ba ↓ | cycle L1 ↓ |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[k]:.4g}" if k in row else "-" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="experiments/translation/runs", help="run dirs, results and figures")
    parser.add_argument("--steps", type=int, default=1500, help="generator steps of the digits runs")
    parser.add_argument("--cifar", default=None, help="CIFAR-10: the training zip or torchvision root")
    parser.add_argument("--cifar-steps", type=int, default=3000)
    parser.add_argument("--cifar-width", type=int, default=32, help="U-Net/PatchGAN width (the preset: 64)")
    parser.add_argument("--cyclegan", action="store_true", help="the CycleGAN part instead of pix2pix's")
    parser.add_argument(
        "--cyclegan-steps", type=int, default=2000, help="generator steps of each CycleGAN-part run"
    )
    args = parser.parse_args()
    out = Path(args.out)
    cache_dir = os.environ.get("GANFORGE_CACHE_DIR", str(Path.home() / ".cache" / "ganforge"))
    if args.cyclegan:
        results = cyclegan_part(out, args.cyclegan_steps, cache_dir)
        (out / "results_cyclegan.json").write_text(json.dumps(results, indent=2) + "\n")
        (out / "results_cyclegan.md").write_text(cycle_table(results))
        print(json.dumps(results))
        print(cycle_table(results))
        return
    results: dict[str, dict[str, Any]] = {}
    for name, overrides in settings(args).items():
        runs = {variant: out / name / variant for variant in VARIANTS}
        wall = {
            variant: train(runs[variant], [*overrides, *extra])["wall_time_s"]
            for variant, extra in VARIANTS.items()
        }
        row: dict[str, Any] = measured(overrides, runs, cache_dir)
        for variant, seconds in wall.items():
            row[variant]["wall_time_s"] = seconds
        figure(runs, out / f"{name}.png")
        results[name] = {"overrides": overrides, **row}
        print(json.dumps({name: results[name]}), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(table(results))
    print(table(results))


def table(results: dict[str, dict[str, Any]]) -> str:
    keys = ["val/psnr", "val/ssim", "val/l1", "val/fid", "val/class_acc"]
    lines = [
        "| setting | model | PSNR (dB) ↑ | SSIM ↑ | L1 ↓ | FID ↓ | class acc ↑ |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in results.items():
        for variant in ("input", *VARIANTS):
            values = " | ".join(f"{row[variant][k]:.4g}" if k in row[variant] else "-" for k in keys)
            lines.append(f"| {name} | {variant} | {values} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

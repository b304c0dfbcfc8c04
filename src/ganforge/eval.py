"""``ganforge-eval``: the metrics of a checkpoint with torch-fidelity, printed and written as JSON."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
import torch_fidelity
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch_fidelity.generative_model_base import GenerativeModelBase

from ganforge.config import CONFIG_PACKAGE, check_required
from ganforge.errors import GanforgeError
from ganforge.metrics.features import extractor_input
from ganforge.metrics.suite import (
    IMAGE_METRICS,
    MetricSettings,
    MetricSuite,
    build_extractor,
    check,
    reference_input,
)
from ganforge.metrics.suites import make_suite
from ganforge.restore import pick_device, restore

FIDELITY_KEYS = {
    "val/fid": "frechet_inception_distance",
    "val/kid": "kernel_inception_distance_mean",
    "val/kid_std": "kernel_inception_distance_std",
    "val/is": "inception_score_mean",
    "val/is_std": "inception_score_std",
    "val/precision": "precision",
    "val/recall": "recall",
}


class GeneratorInput(GenerativeModelBase):
    """A trained generator as torch-fidelity's input: latents in, uint8 images out. Conditional
    generators get labels drawn uniformly from ``seed`` (here: torch-fidelity's own draw needs np.int)."""

    def __init__(self, module: Any, rgb: bool, seed: int = 0) -> None:
        super().__init__()
        self.module, self.rgb = module, rgb
        self.labels = torch.Generator().manual_seed(seed)

    @property
    def z_size(self) -> int:
        return self.module.z_dim

    @property
    def z_type(self) -> str:
        return "normal"

    @property
    def num_classes(self) -> int:
        return 0

    def forward(self, z: Tensor) -> Tensor:
        n, classes = len(z), getattr(self.module, "num_classes", 0)
        y = torch.randint(classes, (n,), generator=self.labels) if classes else None
        return extractor_input(self.module.sample(z, y), self.rgb)


def evaluate(
    ckpt_path: str, metrics: DictConfig | dict, cache_dir: str, device: str = "auto"
) -> dict[str, Any]:
    """Metrics of the generator in ``ckpt_path``; ``metrics`` is the ``metrics`` config group."""
    dev = pick_device(device)
    _, datamodule, module, _ = restore(ckpt_path, dev)
    settings = MetricSettings.from_config(metrics)
    if settings is None:
        raise GanforgeError("no metrics selected: pass e.g. metrics=[fid,kid]")
    if getattr(datamodule, "paired", False) or getattr(datamodule, "unpaired", False):
        # translation: the very code path training measures with
        return evaluate_translation(ckpt_path, module, datamodule, settings, cache_dir, dev)
    names = check(settings, datamodule)
    start = time.time()
    values: dict[str, float] = {}
    info: dict[str, Any] = {}
    image_names = [n for n in names if n in IMAGE_METRICS]
    if image_names:
        extractor = build_extractor(settings, datamodule, cache_dir, dev)
        rgb = extractor.info["rgb"]
        reference = reference_input(settings, datamodule, extractor, cache_dir)
        n_real = len(reference["input2"])
        result = torch_fidelity.calculate_metrics(
            input1=GeneratorInput(module, rgb, settings.seed),
            input1_model_num_samples=settings.num_samples,
            **reference,
            fid="fid" in names,
            kid="kid" in names,
            isc="is" in names,
            prc="prc" in names,
            kid_subsets=settings.kid_subsets,
            kid_subset_size=min(settings.kid_subset_size, settings.num_samples, n_real),
            isc_splits=settings.isc_splits,
            prc_neighborhood=settings.prc_neighborhood,
            batch_size=settings.batch_size,
            rng_seed=settings.seed,
            cuda=dev.type == "cuda",
            save_cpu_ram=True,
            verbose=False,
            **extractor.fidelity_kwargs(),
        )
        values.update({k: float(result[v]) for k, v in FIDELITY_KEYS.items() if v in result})
        info.update(extractor=extractor.tag, reference_samples=n_real, **extractor.info)
    if "modes" in names:
        suite = MetricSuite(
            MetricSettings(**{**settings.__dict__, "names": ["modes"]}), datamodule, cache_dir
        )
        suite.prepare(dev)
        values.update(suite.measure(module.sample, module.z_dim, dev, num_classes=module.num_classes))
    return {
        "checkpoint": str(ckpt_path),
        "g_step": module.g_step,
        "metrics": values,
        "num_samples": settings.num_samples,
        "seed": settings.seed,
        "time_s": round(time.time() - start, 3),
        **info,
    }


def evaluate_translation(
    ckpt_path: str, module: Any, datamodule: Any, settings: MetricSettings, cache_dir: str, dev: torch.device
) -> dict[str, Any]:
    """Translation metrics of the checkpoint on the held-out images (the suite training uses)."""
    start = time.time()
    suite = make_suite(settings, datamodule, cache_dir)
    suite.prepare(dev)
    values = suite.measure_module(module)
    held_out = suite.info.get("held_out_pairs") or suite.info["held_out_a"] + suite.info["held_out_b"]
    return {
        "checkpoint": str(ckpt_path),
        "g_step": module.g_step,
        "metrics": values,
        "num_samples": held_out,
        "seed": settings.seed,
        "time_s": round(time.time() - start, 3),
        **suite.info,
    }


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ganforge-eval: step {result['g_step']}, {result['num_samples']} samples")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, f"{value:.5g}")
    Console().print(table)


@hydra.main(version_base="1.3", config_path=CONFIG_PACKAGE, config_name="eval")
def main(cfg: DictConfig) -> None:
    """Entry point of ``ganforge-eval``: mistakes exit with one line and code 2."""
    try:
        check_required(cfg)
        result = evaluate(cfg.ckpt_path, cfg.get("metrics") or {}, cfg.paths.cache_dir, cfg.device)
    except GanforgeError as err:
        print(f"ganforge-eval: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    out = Path(cfg.out) if cfg.out else Path(cfg.ckpt_path).expanduser().parent / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result["config"] = OmegaConf.to_container(cfg.get("metrics") or {}, resolve=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()

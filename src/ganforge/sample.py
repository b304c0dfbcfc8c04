"""``ganforge-sample``: draw samples from a checkpoint as an image grid (PNG) or raw arrays (NPZ)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torchvision.utils import save_image

from ganforge.callbacks.samples import save_scatter
from ganforge.config import CONFIG_PACKAGE
from ganforge.errors import ConfigError, GanforgeError
from ganforge.restore import pick_device, restore


def write_samples(
    ckpt_path: str,
    n: int,
    out: str,
    fmt: str = "auto",
    seed: int = 0,
    nrow: int | None = None,
    device: str = "auto",
) -> Path:
    """``n`` samples of the checkpoint's generator from latents seeded by ``seed``, written to ``out``."""
    if n <= 0:
        raise ConfigError(f"n must be positive, got {n}")
    path = Path(out).expanduser()
    fmt = path.suffix.lstrip(".").lower() if fmt == "auto" else fmt
    if fmt not in ("png", "npz"):
        raise ConfigError(f"format={fmt}: choose png or npz (or name the file .png/.npz)")
    dev = pick_device(device)
    _, datamodule, module, _ = restore(ckpt_path, dev)
    z = torch.randn(n, module.z_dim, generator=torch.Generator().manual_seed(seed))
    x = torch.cat([module.sample(chunk) for chunk in z.split(500)]).float().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npz":
        np.savez_compressed(path, samples=x.numpy(), z=z.numpy(), g_step=module.g_step, seed=seed)
    elif x.dim() == 2:
        real = datamodule.real_batch(n, seed=seed)
        save_scatter(x, real, path, f"step {module.g_step}, {n} samples")
    else:
        nrow = nrow or module.num_classes or int(math.ceil(math.sqrt(n)))  # conditional: a column per class
        save_image(x, path, nrow=nrow, normalize=True, value_range=(-1, 1))
    return path


@hydra.main(version_base="1.3", config_path=CONFIG_PACKAGE, config_name="sample")
def main(cfg: DictConfig) -> None:
    """Entry point of ``ganforge-sample``: mistakes exit with one line and code 2."""
    try:
        path = write_samples(cfg.ckpt_path, cfg.n, cfg.out, cfg.format, cfg.seed, cfg.nrow, cfg.device)
    except GanforgeError as err:
        print(f"ganforge-sample: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""``ganforge-sample``: draw samples from a checkpoint (or a generator written by ``ganforge-export``) as
an image grid (PNG) or raw arrays (NPZ); with ``input=DIR_OR_ZIP``, translate a folder of images with an
image-to-image checkpoint."""

from __future__ import annotations

import math
import sys
import zipfile
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torch import Tensor

from ganforge import CONFIG_PACKAGE
from ganforge.checkpoint_file import check_writable, free_bytes, write_atomically
from ganforge.config import check_required
from ganforge.errors import ConfigError, ResourceError, one_line_errors
from ganforge.latents import LatentSequence, check_truncation, grid_inputs, truncated_normal, truncation_value
from ganforge.memory import GB, check_room
from ganforge.stored import pick_device, read_run
from ganforge.targets import trusted_targets
from ganforge.tasks.base import as_rgb

# Lightning (under the data modules and the grid callback) takes seconds to import: each command imports
# it in the function that needs it, after the file and the request are checked with torch alone.


def write_samples(
    ckpt_path: str,
    n: int,
    out: str,
    fmt: str = "auto",
    seed: int = 0,
    nrow: int | None = None,
    device: str = "auto",
    truncation: float | None = None,
) -> Path:
    """``n`` samples of the checkpoint's generator from latents seeded by ``seed``, written to ``out``;
    ``truncation`` ψ truncates the latents to [-ψ, ψ] (Brock et al. 2019; task=generation only), or for
    a G with a W space (model=stylegan2) moves each w toward the mean w by ψ (Karras et al. 2019)."""
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    psi = truncation_value(truncation)
    path = Path(out).expanduser()
    fmt = path.suffix.lstrip(".").lower() if fmt == "auto" else fmt
    if fmt not in ("png", "npz"):
        raise ConfigError(f"format={fmt}: choose png or npz (or name the file .png/.npz)")
    run = read_run(ckpt_path, exported=True)
    check_truncation(psi, run.task)
    dev = pick_device(device)
    from ganforge.callbacks.samples import class_labels, grid_image, save_scatter
    from ganforge.restore import restore

    _, datamodule, module, _ = restore(run, dev)
    z_psi = module.use_truncation(psi)  # None when ψ applies in W (StyleGAN), inside G
    torch.manual_seed(seed)  # what G draws itself (StyleGAN2 noise): same seed, same images
    if getattr(datamodule, "paired", False):
        return translation_grid(module, datamodule, n, path, fmt)
    if getattr(datamodule, "unpaired", False):
        return cycle_grid(module, datamodule, n, path, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    item = 4 * (math.prod(datamodule.data_shape) + module.task.z_dim)  # bytes of a sample and its latent
    if fmt == "npz":
        free = free_bytes(path.parent)
        if n * item > free:  # float noise hardly compresses: the uncompressed size is the estimate
            raise ResourceError(
                f"n={n} samples need about {n * item / GB:.1f} GB in {path.parent} (uncompressed), "
                f"{free / GB:.1f} GB free; lower n or write elsewhere (out=...)"
            )
        write_sample_arrays(module, datamodule.data_shape, n, path, seed, psi)
        return path
    # an image (a grid, a scatter plot) is made in memory: bounded; arrays are streamed instead
    check_room("n", n, 3 * n * item, f"the {n} samples of a {fmt} (out=<file>.npz streams any number)")
    if len(datamodule.data_shape) == 1:
        z = truncated_normal(n, module.task.z_dim, z_psi, torch.Generator().manual_seed(seed))
        x = torch.cat([module.sample(chunk) for chunk in z.split(500)]).float().cpu()
        real = datamodule.real_batch(n, seed=seed)
        save_scatter(x, real, path, f"step {module.g_step}, {n} samples")
        return path
    z, y, columns, row_classes = grid_inputs(n, module.task.z_dim, module.task.num_classes, seed, nrow, z_psi)
    chunks = range(0, len(z), 500)
    x = torch.cat([module.sample(z[i : i + 500], None if y is None else y[i : i + 500]) for i in chunks])
    row_labels = class_labels(row_classes, datamodule) if row_classes else None
    grid_image(x.float().cpu(), columns, row_labels).save(path)
    return path


SAMPLE_CHUNK = 500  # samples per forward pass of G, and per piece of an .npz written


def write_sample_arrays(
    module: Any, shape: tuple[int, ...], n: int, path: Path, seed: int, psi: float | None
) -> None:
    """``samples`` (n, *shape) in [-1, 1] and their latents ``z`` as an .npz, streamed: memory holds one
    chunk whatever ``n``. Sample i has latent i of :class:`~ganforge.latents.LatentSequence` (seed),
    so the first k of n samples are those of ``n=k``; a conditional G's labels cycle through the
    classes (``labels``). Written under a temporary name, then renamed: a full disk leaves no part."""
    z_psi = module.use_truncation(psi)  # None when ψ applies in W (StyleGAN), inside G
    latents = LatentSequence(seed, module.task.z_dim, truncation=z_psi)
    classes = module.task.num_classes

    def labels(lo: int, hi: int) -> Tensor | None:
        return torch.arange(lo, hi) % classes if classes else None

    def samples(lo: int, hi: int) -> np.ndarray:
        return module.sample(latents.rows(lo, hi)[0], labels(lo, hi)).float().cpu().numpy()

    arrays = {
        "samples": ((n, *shape), samples),
        "z": ((n, module.task.z_dim), lambda lo, hi: latents.rows(lo, hi)[0].numpy()),
    }
    if classes:
        arrays["labels"] = ((n,), lambda lo, hi: labels(lo, hi).numpy())
    scalars: dict[str, Any] = {"g_step": module.g_step, "seed": seed}
    if psi is not None:  # ψ and where it applied: the latents z, or W (StyleGAN, toward w_avg)
        scalars.update(truncation=psi, truncation_space="z" if z_psi is not None else "w")
    write_npz_streaming(path, arrays, scalars)


def write_npz_streaming(path: Path, arrays: dict[str, Any], scalars: dict[str, Any]) -> None:
    """An .npz (a zip of .npy files, what ``np.load`` reads) whose arrays are written in row chunks:
    ``arrays`` maps a name to (shape, rows(lo, hi) -> ndarray); ``scalars`` are stored as they are."""

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            for name, value in scalars.items():
                with archive.open(f"{name}.npy", "w") as file:
                    np.lib.format.write_array(file, np.asarray(value))
            for name, (shape, rows) in arrays.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as file:
                    for lo in range(0, shape[0], SAMPLE_CHUNK):
                        part = np.ascontiguousarray(rows(lo, min(lo + SAMPLE_CHUNK, shape[0])))
                        if lo == 0:  # the header, with the dtype the first chunk has
                            descr = np.lib.format.dtype_to_descr(part.dtype)
                            header = {"descr": descr, "fortran_order": False, "shape": shape}
                            np.lib.format.write_array_header_2_0(file, header)
                        file.write(part.tobytes())

    write_atomically(path, write)


def translation_grid(module: Any, datamodule: Any, n: int, path: Path, fmt: str) -> Path:
    """Rows of source | output | ground truth for the first ``n`` held-out pairs (npz: the arrays)."""
    from ganforge.callbacks.samples import grid_image

    n = min(n, datamodule.num_val_items())
    source, target, _ = datamodule.val_items(list(range(n)))
    output = torch.cat([module.translate(chunk) for chunk in source.split(256)]).float().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npz":
        np.savez_compressed(path, source=source.numpy(), output=output.numpy(), target=target.numpy())
        return path
    channels = max(source.shape[1], output.shape[1])
    rows = torch.stack([as_rgb(t, channels) for t in (source, output, target)], dim=1).flatten(0, 1)
    grid_image(rows, 3, headers=[(0, module.task.COLUMNS)]).save(path)  # source | output | target
    return path


def cycle_grid(module: Any, datamodule: Any, n: int, path: Path, fmt: str) -> Path:
    """Rows a | G_AB(a) | G_BA(G_AB(a)) for ``n`` held-out A images, then the same from B."""
    from ganforge.callbacks.samples import grid_image

    rows, arrays = [], {}
    for name, images, there, back in (
        ("a", datamodule.val_a(list(range(min(n, datamodule.num_val_a()))))[0], "AtoB", "BtoA"),
        ("b", datamodule.val_b(list(range(min(n, datamodule.num_val_b()))))[0], "BtoA", "AtoB"),
    ):
        moved = module.translate(images, there).float().cpu()
        cycled = module.translate(moved, back).float().cpu()
        arrays.update(
            {name: images.numpy(), f"{name}_translated": moved.numpy(), f"{name}_cycled": cycled.numpy()}
        )
        rows.append(torch.stack([images, moved, cycled], dim=1).flatten(0, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npz":
        np.savez_compressed(path, **arrays)
    else:
        headers = [(0, module.task.COLUMNS[0]), (len(rows[0]) // 3, module.task.COLUMNS[1])]
        grid_image(torch.cat(rows), 3, headers=headers).save(path)
    return path


def translate_folder(
    ckpt_path: str, source: str, out: str, device: str = "auto", direction: str | None = None
) -> Path:
    """G's output for every image of a folder or zip, written under ``out`` with the same relative names.

    Each input is read like the training data (converted to the source's channels, scaled and
    center-cropped to the model's resolution; super-resolution models take the low-resolution image
    upsampled to that size, which this resize does).
    """
    run = read_run(ckpt_path, exported=True)
    two_way = run.task == "unpaired"
    if run.task not in ("paired", "unpaired"):
        raise ConfigError(
            f"input={source}: ckpt_path={ckpt_path} is not an image-to-image model (task=paired or unpaired)"
        )
    if direction not in (None, "AtoB", "BtoA"):
        raise ConfigError(f"direction={direction}: choose AtoB or BtoA")
    if direction is not None and not two_way:  # one translator: nothing else to choose
        raise ConfigError(
            f"direction={direction}: ckpt_path={ckpt_path} is a one-way model (task=paired), which maps "
            "its sources one way only; direction= is for task=unpaired (CycleGAN) checkpoints"
        )
    if not Path(source).expanduser().exists():
        raise ConfigError(f"input={source}: no such folder or zip")
    dev = pick_device(device)
    from ganforge.data.folder import list_images, load_image
    from ganforge.restore import restore

    _, datamodule, module, _ = restore(run, dev)
    shape = datamodule.data_shape if two_way else datamodule.source_shape
    channels, resolution = shape[0], shape[-1]
    names = list_images(Path(source).expanduser())
    if not names:
        raise ConfigError(f"input={source}: the folder or zip holds no images")
    root = Path(source).expanduser()
    archive = zipfile.ZipFile(root) if root.is_file() else None
    target = Path(out).expanduser()
    skipped: list[str] = []

    def readable(name: str) -> np.ndarray | None:
        try:
            return load_image(archive.read(name) if archive else str(root / name), resolution, mode)
        except (OSError, ValueError, SyntaxError, zipfile.BadZipFile) as exc:  # PIL: not an image
            skipped.append(f"{name} ({type(exc).__name__})")
            return None

    mode = "L" if channels == 1 else "RGB"
    try:
        for chunk in [names[i : i + 64] for i in range(0, len(names), 64)]:
            loaded = [(name, readable(name)) for name in chunk]
            chunk = [name for name, array in loaded if array is not None]
            arrays = [array for _, array in loaded if array is not None]
            if not arrays:
                continue
            x = torch.stack(
                [torch.from_numpy(a.copy()).reshape(resolution, resolution, channels) for a in arrays]
            )
            x = x.permute(0, 3, 1, 2).float().div(127.5).sub(1)
            y = (
                module.translate(x, direction)
                .float()
                .cpu()
                .add(1)
                .mul(127.5)
                .round()
                .clamp(0, 255)
                .to(torch.uint8)
            )
            for name, image in zip(chunk, y, strict=True):
                file = target / name
                file.parent.mkdir(parents=True, exist_ok=True)
                array = image.permute(1, 2, 0).numpy()
                Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(file)
    finally:
        if archive is not None:
            archive.close()
    if skipped:  # as training does: unreadable images are skipped and counted, not fatal
        shown = ", ".join(skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        print(
            f"ganforge-sample: skipped {len(skipped)} of {len(names)} unreadable images: {shown}",
            file=sys.stderr,
        )
    if len(skipped) == len(names):
        raise ConfigError(f"input={source}: none of its {len(names)} images could be read")
    return target


@hydra.main(version_base="1.3", config_path=CONFIG_PACKAGE, config_name="sample")
def main(cfg: DictConfig) -> None:
    """Entry point of ``ganforge-sample``: mistakes exit with one line and code 2."""
    with one_line_errors("ganforge-sample"):
        check_required(cfg)
        check_writable(Path(cfg.out), "out")  # before the checkpoint is read and the samples drawn
        psi = truncation_value(cfg.get("truncation"))
        if cfg.get("input") and psi is not None:
            raise ConfigError(
                f"truncation={psi}: input= translates images (task=paired/unpaired); truncation applies to "
                "the Gaussian latents of task=generation"
            )
        with trusted_targets(cfg.get("allow_targets")):
            if cfg.get("input"):
                path = translate_folder(cfg.ckpt_path, cfg.input, cfg.out, cfg.device, cfg.get("direction"))
            else:
                path = write_samples(
                    cfg.ckpt_path, cfg.n, cfg.out, cfg.format, cfg.seed, cfg.nrow, cfg.device, psi
                )
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()

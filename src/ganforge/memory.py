"""Memory a training step needs, checked before training: a batch that cannot fit is one line, not an
OOM killer that takes other jobs with it after minutes of loading (issue 15)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from ganforge.errors import ResourceError

GB = 1 << 30


def _elements(output: Any) -> int:
    if isinstance(output, Tensor):
        return output.numel()
    if isinstance(output, (tuple, list)):
        return sum(_elements(o) for o in output)
    return 0


@contextmanager
def counting_outputs(*nets: nn.Module) -> Iterator[list[int]]:
    """Sums the elements of every leaf layer's output while the block runs (into the yielded list)."""
    total = [0]

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        total[0] += _elements(output)

    handles = [m.register_forward_hook(hook) for net in nets for m in net.modules() if not any(m.children())]
    try:
        yield total
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def activations_per_sample(module: Any) -> int:
    """Elements of every layer's output in one forward pass of G, and of D on G's output (noise-to-image
    task), per sample: what the backward pass keeps per sample, at the least. Measured on the fixed
    inputs of the sample grids (``train.num_fixed`` samples), on the CPU, before training."""
    with counting_outputs(module.generator) as g_count:
        fake = module.sample()
    total = g_count[0]
    if module.task.draws_latents:  # D judges G's output alone (translation tasks: measured by G only)
        was_training = module.discriminator.training
        module.discriminator.eval()  # a probe: D's batch-norm running statistics must not move
        try:
            with counting_outputs(module.discriminator) as d_count:
                module.discriminate(*module.task.d_input(fake, module.task.fixed_draw().cond))
        finally:
            module.discriminator.train(was_training)
        total += d_count[0]
    return -(-total // len(fake))


def host_available() -> int:
    """Bytes this process may still allocate: MemAvailable, or less under a cgroup (container) limit."""
    available = None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            room = int(limit) - int((cgroup / "memory.current").read_text())
            available = room if available is None else min(available, room)
    except (OSError, ValueError):
        pass
    return available if available is not None else 1 << 62  # unknown: no bound


def on_gpu(accelerator: str | None) -> bool:
    """Whether the trainer's ``accelerator`` puts the nets on a CUDA GPU."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def single_gpu(devices: Any) -> int | None:
    """The index of the one GPU a single-process run uses (``devices: 1`` or ``[k]``), else None: with
    several, the check leaves CUDA alone before DDP starts its processes (the OOM line still comes)."""
    if devices == 1 or devices == "1":
        return 0
    if isinstance(devices, (list, tuple)) and len(devices) == 1:
        return int(devices[0])
    return None


def sample_bytes(datamodule: Any) -> int:
    """Bytes of one training item as float32: the image (and a paired task's source image)."""
    size = math.prod(datamodule.data_shape)
    source = getattr(datamodule, "source_shape", None)
    return 4 * (size + (math.prod(source) if getattr(datamodule, "paired", False) and source else 0))


def check_room(key: str, value: int, needs: int, what: str, has: int | None = None) -> None:
    """A :class:`ResourceError` naming ``key`` when ``needs`` bytes (``what``) exceed the host's
    available memory (or ``has``)."""
    has = host_available() if has is None else has
    if needs > has:
        raise ResourceError(
            f"{key}={value} cannot fit: {what} take at least {needs / GB:.1f} GB of host memory, "
            f"{has / GB:.1f} GB available; lower {key}"
        )


def check_allocations(cfg: Any, datamodule: Any) -> None:
    """Settings that size an allocation, refused in one line (exit 4) from shapes alone, before the
    data is loaded or any net is built: one item at ``data.resolution``, the loader batch, the fixed
    grid inputs (``train.num_fixed``) and the EMA's standing-statistics batches. Lower bounds: a run
    that fits is never refused; :func:`check_step_memory` adds the nets' activations later."""
    has = host_available()
    item = sample_bytes(datamodule)
    shape = tuple(datamodule.data_shape)
    check_room("data.resolution", shape[-1], item, f"items of shape {shape}", has)
    batch = datamodule.step_batch_size * datamodule.steps_per_batch
    check_room("data.batch_size", int(datamodule.batch_size), batch * item, f"loader batches of {batch}", has)
    held = int(getattr(datamodule, "train_size", 0) or 0)  # a generated training set held in memory
    check_room("data.train_size", held, held * (item + 8), f"{held} training points", has)
    z = 4 * int(OmegaConf.select(cfg, "model.z_dim", default=0) or 0)
    fixed = int(cfg.train.num_fixed)
    check_room("train.num_fixed", fixed, fixed * (z + item), f"{fixed} fixed grid samples", has)
    ema = cfg.train.get("ema") or {}
    if ema.get("decay") is not None or ema.get("kimg") is not None:
        size = int(ema.get("standing_batch_size", 64))
        check_room("train.ema.standing_batch_size", size, size * (z + item), "the standing batches", has)


def check_step_memory(cfg: Any, datamodule: Any, module: Any) -> None:
    """A :class:`ResourceError` when one training step surely cannot fit in memory.

    The estimate is a lower bound, so no run that fits is refused: the loader batch (``data.batch_size``
    x ``train.n_critic`` x steps per batch samples, in host memory), and the activations of G and D for
    one update's ``data.batch_size`` samples (on the GPU when training there, else in host memory),
    compared with the host's available memory and the GPU's total memory. An out-of-memory error
    during training is caught too (:func:`out_of_memory`).
    """
    batch = int(datamodule.batch_size)
    loader = datamodule.step_batch_size * datamodule.steps_per_batch * sample_bytes(datamodule)
    half = "16" in str(cfg.trainer.get("precision", ""))
    activations = batch * activations_per_sample(module) * (2 if half else 4)
    gpu = on_gpu(cfg.trainer.get("accelerator"))
    host_needs = loader + (0 if gpu else activations)
    where = [("host memory", host_needs, host_available())]
    devices = cfg.trainer.get("devices", 1)
    index = single_gpu(list(devices) if OmegaConf.is_list(devices) else devices) if gpu else None
    if index is not None:
        where.append(("GPU memory", activations, torch.cuda.get_device_properties(index).total_memory))
    for name, needs, has in where:
        if needs > has:
            raise ResourceError(
                f"data.batch_size={batch} cannot fit: a training step needs at least {needs / GB:.1f} GB of "
                f"{name} (the batch and the activations of G and D), {has / GB:.1f} GB available; "
                "lower data.batch_size"
            )


def out_of_memory(cfg: Any, g_step: int) -> ResourceError:
    """The one line for an out-of-memory error during training, naming the batch size."""
    return ResourceError(
        f"out of GPU memory at generator step {g_step + 1} with data.batch_size={cfg.data.batch_size} "
        f"(train.n_critic={cfg.train.n_critic}); lower data.batch_size, or use trainer.precision=bf16-mixed"
    )

"""Exponential moving average of the generator's weights (Yazıcı et al. 2019) and standing batch-norm
statistics for it (Brock et al. 2019)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


def ema_beta(decay: float, step: int, warmup: bool = True) -> float:
    """The averaging weight at the ``step``-th update (1-based): min(decay, (1 + t) / (10 + t)) with warm-up.

    The warm-up (TensorFlow's ``ExponentialMovingAverage(num_updates=t)``) lets the average follow the
    fast early changes instead of remembering the random initial weights.
    """
    return min(decay, (1 + step) / (10 + step)) if warmup else decay


def half_life_beta(kimg: float, rampup: float | None, batch: int, images_seen: int) -> float:
    """StyleGAN2-ADA's averaging weight (``training_loop.py``): the average forgets half of what it holds
    every ``kimg`` thousand images, β = 0.5^(batch / n) with n = 1000·kimg, and with ``rampup`` the
    half-life grows with training, n = min(1000·kimg, images_seen·rampup) (β = 0 at the start: a copy).
    ``batch``: images per update over all processes; ``images_seen``: before this update."""
    n = kimg * 1000.0
    if rampup is not None:
        n = min(n, images_seen * rampup)
    return 0.5 ** (batch / max(n, 1e-8))


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, beta: float) -> None:
    """ema ← β·ema + (1 - β)·net for parameters; buffers (batch-norm statistics) are copied."""
    ema_params, params = list(ema.parameters()), list(net.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - beta)
    for e, b in zip(ema.buffers(), net.buffers(), strict=True):
        e.copy_(b)


def has_batch_norm(net: nn.Module) -> bool:
    """Whether ``net`` keeps batch-norm running statistics (what standing statistics recompute)."""
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in net.modules()
    )


@torch.no_grad()
def standing_stats(net: nn.Module, inputs: Iterable[tuple[Tensor, ...]]) -> None:
    """Recompute the batch-norm running statistics of ``net`` as the plain average over ``inputs``.

    "Standing statistics" (Brock et al. 2019, BigGAN): run ``net`` in train mode on every batch with
    ``momentum=None`` (cumulative averaging), so that the statistics belong to these weights (e.g. the
    EMA's) rather than to a moving average over the live network's past. The mode and momenta are restored.
    """
    norms = [
        m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    momenta, was_training = [m.momentum for m in norms], net.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    try:
        for args in inputs:
            net(*args)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        net.train(was_training)

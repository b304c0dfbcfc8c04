"""Exponential moving average of the generator's weights (Yazıcı et al. 2019)."""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(decay: float, step: int, warmup: bool = True) -> float:
    """The averaging weight at the ``step``-th update (1-based): min(decay, (1 + t) / (10 + t)) with warm-up.

    The warm-up (TensorFlow's ``ExponentialMovingAverage(num_updates=t)``) lets the average follow the
    fast early changes instead of remembering the random initial weights.
    """
    return min(decay, (1 + step) / (10 + step)) if warmup else decay


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, beta: float) -> None:
    """ema ← β·ema + (1 - β)·net for parameters; buffers (batch-norm statistics) are copied."""
    ema_params, params = list(ema.parameters()), list(net.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - beta)
    for e, b in zip(ema.buffers(), net.buffers(), strict=True):
        e.copy_(b)

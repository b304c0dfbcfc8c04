"""Optimizers beyond torch's (diminishing-step subgradient descent, extragradient, optimistic Adam) and
learning-rate schedules (CycleGAN's constant-then-linear, R3GAN's cosine ramps)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

Params = Iterable[Tensor] | Iterable[dict[str, Any]]


class SubgradientDescent(Optimizer):
    """(Sub)gradient descent with the diminishing step size α_t = α_0 / √t (Shor 1985; Boyd's notes)."""

    def __init__(self, params: Params, lr: float = 1e-2) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        super().__init__(params, {"lr": lr})

    @staticmethod
    def step_size(lr: float, t: int) -> float:
        """α_t for the t-th step (1-based)."""
        return lr / math.sqrt(t)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                state["step"] = state.get("step", 0) + 1
                p.add_(p.grad, alpha=-self.step_size(group["lr"], state["step"]))
        return loss


class Extragradient(Optimizer):
    """Extragradient (Korpelevich 1976; for GANs Gidel et al. 2019) with SGD steps.

    ``extrapolate()`` remembers θ_t and moves to θ_{t+½} = θ_t - η∇(θ_t); ``step()`` then goes back to
    θ_t and updates with the gradient evaluated at θ_{t+½}: θ_{t+1} = θ_t - η∇(θ_{t+½}). Without a
    preceding ``extrapolate()``, ``step()`` is a plain SGD step. The module calls ``extrapolate``
    on every optimizer that has it.

    ``fresh_samples`` tells the module which gradients to take: at θ_t and θ_{t+½} on the same real
    batch and latents (false: the same-sample form of Mishchenko et al. 2020), or on a fresh batch and
    fresh latents for the update (true: as Gidel et al. 2019's code does).
    """

    def __init__(self, params: Params, lr: float = 1e-2, fresh_samples: bool = False) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        super().__init__(params, {"lr": lr})
        self.fresh_samples = bool(fresh_samples)

    @torch.no_grad()
    def extrapolate(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["anchor"] = p.detach().clone()
                p.add_(p.grad, alpha=-group["lr"])

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                anchor = state.pop("anchor", None)
                if anchor is not None:
                    p.copy_(anchor)
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])
                    state["step"] = state.get("step", 0) + 1
        return loss


class OptimisticAdam(Optimizer):
    """Optimistic Adam (Daskalakis et al. 2018): θ_{t+1} = θ_t - η(2·u_t - u_{t-1}), u_t Adam's direction.

    u_t = m̂_t / (√v̂_t + ε) with Adam's bias-corrected moments (Kingma & Ba 2015); u_0 = 0.
    """

    def __init__(
        self,
        params: Params,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    state["prev_direction"] = torch.zeros_like(p)
                state["step"] += 1
                t = int(state["step"])
                state["exp_avg"].lerp_(grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                m_hat = state["exp_avg"] / (1 - beta1**t)
                v_hat = state["exp_avg_sq"] / (1 - beta2**t)
                direction = m_hat / (v_hat.sqrt() + group["eps"])
                p.add_(2 * direction - state["prev_direction"], alpha=-group["lr"])
                state["prev_direction"] = direction
        return loss


class ConstantThenLinear(torch.optim.lr_scheduler.LRScheduler):
    """The learning rate held for the first ``constant_fraction`` of ``total_iters`` steps, then decayed
    linearly over the rest (the schedule of CycleGAN and pix2pix, Zhu et al. 2017: constant for the
    first half, linear decay over the second). As the authors' ``get_scheduler('linear')``, with N
    constant steps and M decaying ones, step s trains with lr·(1 − max(0, s + 1 − N)/(M + 1)): the
    first decayed step with lr·M/(M + 1), the last with lr/(M + 1) (never 0)."""

    def __init__(
        self, optimizer: Optimizer, total_iters: int, constant_fraction: float = 0.5, last_epoch: int = -1
    ) -> None:
        if total_iters <= 0 or not 0.0 <= constant_fraction <= 1.0:
            raise ValueError("total_iters must be positive and constant_fraction in [0, 1]")
        self.total_iters = int(total_iters)
        self.decay_start = int(round(constant_fraction * total_iters))
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """The multiplier of the base rate after ``step`` scheduler steps."""
        decaying = self.total_iters - self.decay_start
        return max(0.0, 1.0 - max(0, step + 1 - self.decay_start) / (decaying + 1))

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]


@dataclass(frozen=True)
class CosineRamp:
    """A value going from ``start`` to ``end`` along half a cosine over the first ``steps`` generator
    steps, then held at ``end``: v(t) = start + (end - start)·(1 - cos(π·t/steps))/2 (the cosine decay
    of R3GAN's schedules, Huang et al. 2025). A pure function of the step: resumes exactly."""

    start: float
    end: float
    steps: int

    def __post_init__(self) -> None:
        from ganforge.errors import ConfigError

        if int(self.steps) <= 0:
            raise ConfigError(f"a cosine ramp needs steps > 0, got {self.steps}")

    def __call__(self, step: int) -> float:
        return cosine_ramp(step, self.start, self.end, self.steps)


def cosine_ramp(step: int, start: float, end: float, steps: int) -> float:
    """The value of a :class:`CosineRamp` from ``start`` to ``end`` over ``steps`` at ``step``."""
    if step >= steps:
        return float(end)
    progress = 0.5 * (1.0 - math.cos(math.pi * max(step, 0) / steps))
    return float(start + (end - start) * progress)


class CosineRampScheduler(torch.optim.lr_scheduler.LRScheduler):
    """R3GAN's optimizer schedules (Huang et al. 2025): the learning rate ramps from each optimizer's
    base rate to ``lr_end_factor`` times it, and (when ``beta2_start``/``beta2_end`` are set) Adam's β2
    from ``beta2_start`` to ``beta2_end``, both along a :class:`CosineRamp` over ``ramp_steps`` scheduler
    steps (one per generator step), then held. Both are functions of ``last_epoch``, which Lightning keeps
    in the checkpoint with the optimizer's own ``lr`` and ``betas``."""

    def __init__(
        self,
        optimizer: Optimizer,
        ramp_steps: int,
        lr_end_factor: float = 1.0,
        beta2_start: float | None = None,
        beta2_end: float | None = None,
        last_epoch: int = -1,
    ) -> None:
        from ganforge.errors import ConfigError

        if lr_end_factor < 0:
            raise ConfigError(f"optim.scheduler.lr_end_factor must be >= 0, got {lr_end_factor}")
        if (beta2_start is None) != (beta2_end is None):
            raise ConfigError("optim.scheduler: set both beta2_start and beta2_end (or neither)")
        self.schedules_beta2 = beta2_start is not None
        if self.schedules_beta2:
            if not (0.0 <= beta2_start < 1.0 and 0.0 <= beta2_end < 1.0):  # type: ignore[operator]
                raise ConfigError(f"optim.scheduler: β2 must be in [0, 1), got {beta2_start} → {beta2_end}")
            if "betas" not in optimizer.defaults:
                raise ConfigError(
                    f"optim.scheduler schedules Adam's β2, but {type(optimizer).__name__} has no betas; "
                    "use optim=adam (or beta2_start=null beta2_end=null)"
                )
        if int(ramp_steps) <= 0:
            raise ConfigError(f"optim.scheduler.ramp_steps must be > 0, got {ramp_steps}")
        # plain numbers only: the scheduler's __dict__ goes into checkpoints, which hold no objects
        self.ramp_steps, self.lr_end_factor = int(ramp_steps), float(lr_end_factor)
        self.beta2_start, self.beta2_end = beta2_start, beta2_end
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        factor = cosine_ramp(self.last_epoch, 1.0, self.lr_end_factor, self.ramp_steps)
        return [base * factor for base in self.base_lrs]

    def step(self, epoch: int | None = None) -> None:  # type: ignore[override]
        super().step()
        if self.schedules_beta2:
            beta2 = cosine_ramp(self.last_epoch, self.beta2_start, self.beta2_end, self.ramp_steps)
            for group in self.optimizer.param_groups:
                group["betas"] = (group["betas"][0], beta2)

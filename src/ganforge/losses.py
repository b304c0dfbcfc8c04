"""Every adversarial loss and penalty of ganforge: pure functions on discriminator outputs.

A discriminator returns one raw score (logit) per sample. ``*_d`` functions give the
discriminator's loss from the scores of a real and a fake batch; ``*_g`` functions give the
generator's loss from the scores of a fake batch. All losses are minimised. Penalties take
the discriminator and the two batches and return a scalar added to the D loss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DLoss = Callable[[Tensor, Tensor], Tensor]
GLoss = Callable[[Tensor], Tensor]
Penalty = Callable[[nn.Module, Tensor, Tensor], Tensor]


# --- minimax (Goodfellow et al. 2014) -------------------------------------------------------
def minimax_d(real: Tensor, fake: Tensor) -> Tensor:
    """D: maximise log D(x) + log(1 - D(G(z))), i.e. minimise BCE(real, 1) + BCE(fake, 0)."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def minimax_g(fake: Tensor) -> Tensor:
    """G (saturating, the original game): minimise log(1 - D(G(z))) = -softplus(fake)."""
    return -F.softplus(fake).mean()


# --- non-saturating (Goodfellow et al. 2014, the heuristic used in practice) ----------------
nonsaturating_d = minimax_d


def nonsaturating_g(fake: Tensor) -> Tensor:
    """G: maximise log D(G(z)), i.e. minimise BCE(fake, 1) = softplus(-fake)."""
    return F.softplus(-fake).mean()


# --- least squares (Mao et al. 2017, a=0, b=c=1) --------------------------------------------
def lsgan_d(real: Tensor, fake: Tensor) -> Tensor:
    """D: minimise ½(D(x) - 1)² + ½D(G(z))²."""
    return 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean())


def lsgan_g(fake: Tensor) -> Tensor:
    """G: minimise ½(D(G(z)) - 1)²."""
    return 0.5 * (fake - 1).pow(2).mean()


# --- Wasserstein (Arjovsky et al. 2017; Gulrajani et al. 2017 for the penalty) -------------
def wgan_d(real: Tensor, fake: Tensor) -> Tensor:
    """Critic: minimise D(G(z)) - D(x), an estimate of minus the Wasserstein-1 distance."""
    return fake.mean() - real.mean()


def wgan_g(fake: Tensor) -> Tensor:
    """G: minimise -D(G(z))."""
    return -fake.mean()


# --- hinge (Lim & Ye 2017; Miyato et al. 2018) ----------------------------------------------
def hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    """D: minimise max(0, 1 - D(x)) + max(0, 1 + D(G(z)))."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def hinge_g(fake: Tensor) -> Tensor:
    """G: minimise -D(G(z))."""
    return -fake.mean()


# --- penalties -------------------------------------------------------------------------------
def _input_grad_norm(discriminator: nn.Module, x: Tensor) -> Tensor:
    """Per-sample L2 norm of dD(x)/dx, kept in the graph so the penalty trains D."""
    x = x.detach().requires_grad_(True)
    out = discriminator(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.flatten(1).norm(2, dim=1)


def gradient_penalty(
    discriminator: nn.Module, real: Tensor, fake: Tensor, weight: float = 10.0, center: float = 1.0
) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): weight · E[(‖∇D(x̂)‖ - center)²] at x̂ between real and fake."""
    alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
    mixed = alpha * real.detach() + (1 - alpha) * fake.detach()
    return weight * (_input_grad_norm(discriminator, mixed) - center).pow(2).mean()


def r1_penalty(discriminator: nn.Module, real: Tensor, fake: Tensor, gamma: float = 10.0) -> Tensor:
    """R1 (Mescheder et al. 2018): γ/2 · E[‖∇D(x)‖²] on real data."""
    return 0.5 * gamma * _input_grad_norm(discriminator, real).pow(2).mean()


@dataclass
class GANLoss:
    """An adversarial objective: the D and G losses, the penalties on D, optional weight clipping.

    ``weight_clip`` clamps every discriminator parameter to [-c, c] after each D update
    (the original WGAN's way to keep the critic Lipschitz).
    """

    d_loss: DLoss
    g_loss: GLoss
    penalties: Mapping[str, Penalty] = field(default_factory=dict)
    weight_clip: float | None = None

    def __post_init__(self) -> None:
        self.penalties = {k: v for k, v in dict(self.penalties or {}).items() if v is not None}
        if self.weight_clip is not None and self.weight_clip <= 0:
            from ganforge.errors import ConfigError

            raise ConfigError(f"loss.weight_clip must be positive, got {self.weight_clip}")

    def discriminator_loss(
        self, discriminator: nn.Module, real_logits: Tensor, fake_logits: Tensor, real: Tensor, fake: Tensor
    ) -> Tensor:
        """The D objective plus every penalty."""
        return self.d_loss(real_logits, fake_logits) + self.penalty(discriminator, real, fake)

    def penalty(self, discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        """The sum of all penalties on D (a zero tensor when there are none)."""
        total = torch.zeros((), device=real.device, dtype=real.dtype)
        for penalty in self.penalties.values():
            total = total + penalty(discriminator, real, fake)
        return total

    @torch.no_grad()
    def clip_weights(self, discriminator: nn.Module) -> None:
        if self.weight_clip is not None:
            for p in discriminator.parameters():
                p.clamp_(-self.weight_clip, self.weight_clip)

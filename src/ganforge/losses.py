"""Every adversarial loss and penalty of ganforge: pure functions on discriminator outputs.

A discriminator returns one raw score (logit) per sample. ``*_d`` functions give the
discriminator's loss from the scores of a real and a fake batch; ``*_g`` functions give the
generator's loss from the scores of a fake batch (the relativistic ones also from those of a real
batch: ``needs_real``). All losses are minimised. Penalties take the discriminator and the two
batches (and, by keyword, the labels a conditional D judges each with: ``y_real``, ``y_fake``) and
return a scalar added to the D loss.

Scale convention: every function is the objective of ONE discriminator on one batch, a mean over
its samples, written as its paper writes it (LSGAN with Mao et al.'s ½ unless ``scale`` says
otherwise). A task with several discriminators (CycleGAN's D_A and D_B) takes one term per
discriminator and sums them (``Task.judges``); nothing rescales a mean over concatenated batches.
Penalties differentiate D with respect to the image before any augmentation: the module hands them
D composed with what D is shown (:class:`Through`), as StyleGAN2-ADA's loss does.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.ada import translate, xflip
from ganforge.nets.packing import samples_per_input

DLoss = Callable[[Tensor, Tensor], Tensor]
GLoss = Callable[[Tensor], Tensor]
Penalty = Callable[..., Tensor]  # (D, real, fake, *, y_real=None, y_fake=None) -> scalar


# --- minimax (Goodfellow et al. 2014) -------------------------------------------------------
def minimax_d(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """D: maximise log D(x) + log(1 - D(G(z))), i.e. minimise BCE(real, t) + BCE(fake, 0).

    ``real_target`` t < 1 is one-sided label smoothing (Salimans et al. 2016; ``loss.label_smoothing``).
    """
    real_term = F.softplus(-real).mean()
    if real_target != 1.0:  # BCE(x, t) = t·softplus(-x) + (1 - t)·softplus(x)
        real_term = real_target * real_term + (1 - real_target) * F.softplus(real).mean()
    return real_term + F.softplus(fake).mean()


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
    """D: minimise ½(D(x) - 1)² + ½D(G(z))² (also CycleGAN's and pix2pix's: ½(MSE real + MSE fake))."""
    return 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean())


def lsgan_g(fake: Tensor, scale: float = 0.5) -> Tensor:
    """G: minimise scale·(D(G(z)) - 1)²: Mao et al.'s ½ by default; CycleGAN (Zhu et al. 2017, Eq. 1 in
    least squares form, the authors' ``GANLoss('lsgan')``) minimises the plain MSE, ``scale=1``."""
    return scale * (fake - 1).pow(2).mean()


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


# --- relativistic (Jolicoeur-Martineau 2018) ------------------------------------------------
def relativistic_d(real: Tensor, fake: Tensor, average: bool = True) -> Tensor:
    """D: the probability that real data is more realistic than fake (RaGAN; RSGAN when not ``average``).

    RSGAN: -E[log σ(C(x_r) - C(x_f))] = E[softplus(-(C(x_r) - C(x_f)))] on paired samples (the i-th real
    with the i-th fake) — exactly RpGAN, the relativistic pairing loss of R3GAN (Huang et al. 2025);
    RaGAN: -E[log σ(C(x_r) - E C(x_f))] - E[log(1 - σ(C(x_f) - E C(x_r)))].
    """
    if not average:
        if real.shape != fake.shape:
            raise ValueError(
                f"the paired loss compares real and fake one to one: shapes {real.shape}, {fake.shape}"
            )
        return F.softplus(-(real - fake)).mean()
    return F.softplus(-(real - fake.mean())).mean() + F.softplus(fake - real.mean()).mean()


def relativistic_g(fake: Tensor, real: Tensor, average: bool = True) -> Tensor:
    """G: the D loss with the roles of real and fake swapped (the real logits get no gradient to G)."""
    return relativistic_d(fake, real, average)


relativistic_g.needs_real = True  # type: ignore[attr-defined]


def plain(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``fn`` as a plain ``functools.partial``: Hydra's partials re-check their target on every call
    (about 0.15 ms against 0.013 ms, paid several times per training step; experiments/bench/hot_loop.py)."""
    if isinstance(fn, functools.partial) and type(fn) is not functools.partial:
        return functools.partial(fn.func, *fn.args, **fn.keywords)
    return fn


def needs_real(g_loss: Callable[..., Tensor]) -> bool:
    """Whether a G loss (or a partial of one) takes D's logits on a real batch too."""
    while isinstance(g_loss, functools.partial):
        g_loss = g_loss.func
    return bool(getattr(g_loss, "needs_real", False))


# --- auxiliary classifier (ACGAN, Odena et al. 2017) ----------------------------------------
def acgan_class_loss(class_logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of D's class logits against the labels: real labels for D, sampled ones for G."""
    return F.cross_entropy(class_logits, labels)


# --- penalties -------------------------------------------------------------------------------
# A penalty takes D, the real and the fake batch, and for a conditional D the labels each batch is judged
# with (``y_real``, ``y_fake``). Norms are per input D judges: per sample, or per packed group of
# ``pack`` consecutive samples for a PacGAN discriminator (Lin et al. 2018), whose gradient at a packed
# input is the concatenation of its samples' gradients.
def _judge(discriminator: nn.Module, x: Tensor, y: Tensor | None) -> Tensor:
    """D's adversarial logits on ``x`` (labels ``y`` for a conditional D; ACGAN's class logits dropped)."""
    out = discriminator(x) if y is None else discriminator(x, y)
    return out[0] if isinstance(out, tuple) else out


def _input_grad_norm(discriminator: nn.Module, x: Tensor, y: Tensor | None = None) -> Tensor:
    """L2 norm of dD/dx per input D judges (per packed group for PacGAN), kept in the graph so the
    penalty trains D."""
    x = x.detach().requires_grad_(True)
    out = _judge(discriminator, x, y)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.reshape(x.shape[0] // samples_per_input(discriminator), -1).norm(2, dim=1)


def _norm_penalty(norms: Tensor, center: float, one_sided: bool) -> Tensor:
    excess = norms - center
    return (excess.clamp(min=0) if one_sided else excess).pow(2).mean()


def gradient_penalty(
    discriminator: nn.Module,
    real: Tensor,
    fake: Tensor,
    weight: float = 10.0,
    center: float = 1.0,
    one_sided: bool = False,
    *,
    y_real: Tensor | None = None,
    y_fake: Tensor | None = None,
) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): weight · E[(‖∇D(x̂)‖ - center)²] at x̂ between real and fake.

    One α ~ U[0, 1) per input D judges (per packed group with PacGAN). A conditional D judges x̂ with
    the real sample's label (as conditional WGAN-GP code does; the fake of a pair may have another).
    ``one_sided`` penalises only norms above ``center``: weight · E[max(0, ‖∇D(x̂)‖ - center)²]
    (the one-sided variant of Gulrajani et al. 2017, Petzka et al. 2018).
    """
    group = samples_per_input(discriminator)
    alpha = torch.rand(real.shape[0] // group, device=real.device, dtype=real.dtype)
    alpha = alpha.repeat_interleave(group).view((real.shape[0],) + (1,) * (real.dim() - 1))
    mixed = alpha * real.detach() + (1 - alpha) * fake.detach()
    return weight * _norm_penalty(_input_grad_norm(discriminator, mixed, y_real), center, one_sided)


DRAGAN_PERTURBATIONS = ("gaussian", "uniform")


def dragan_penalty(
    discriminator: nn.Module,
    real: Tensor,
    fake: Tensor,
    weight: float = 10.0,
    center: float = 1.0,
    noise: float = 0.5,
    perturbation: str = "gaussian",
    *,
    y_real: Tensor | None = None,
    y_fake: Tensor | None = None,
) -> Tensor:
    """DRAGAN (Kodali et al. 2017): weight · E[(‖∇D(x̂)‖ - center)²] at points x̂ around real data only.

    ``perturbation`` says where, with σ = ``noise`` · std(real batch) (the authors' code: 0.5):
    ``gaussian``, the paper's form: x̂ = x + δ, δ ~ N(0, σ²I) (the paper's text has δ ~ N(0, cI), c ≈ 10;
    the scale here is the code's); ``uniform``, the authors' code: x̂ = x + α·δ with δ ~ σ·U[0, 1)^d
    (positive only) and one α ~ U[0, 1) per input D judges, a point between x and x + δ.
    """
    real = real.detach()
    scale = noise * real.std()
    if perturbation == "gaussian":
        perturbed = real + scale * torch.randn_like(real)
    elif perturbation == "uniform":
        delta = scale * torch.rand_like(real)
        group = samples_per_input(discriminator)
        alpha = torch.rand(real.shape[0] // group, device=real.device, dtype=real.dtype)
        perturbed = real + alpha.repeat_interleave(group).view(-1, *([1] * (real.dim() - 1))) * delta
    else:
        raise ValueError(f"DRAGAN's perturbation is one of {DRAGAN_PERTURBATIONS}, got {perturbation!r}")
    return weight * _norm_penalty(_input_grad_norm(discriminator, perturbed, y_real), center, False)


def r1_penalty(
    discriminator: nn.Module,
    real: Tensor,
    fake: Tensor,
    gamma: float = 10.0,
    *,
    y_real: Tensor | None = None,
    y_fake: Tensor | None = None,
) -> Tensor:
    """R1 (Mescheder et al. 2018): γ/2 · E[‖∇D(x)‖²] on real data (judged with their labels)."""
    return 0.5 * gamma * _input_grad_norm(discriminator, real, y_real).pow(2).mean()


def r2_penalty(
    discriminator: nn.Module,
    real: Tensor,
    fake: Tensor,
    gamma: float = 10.0,
    *,
    y_real: Tensor | None = None,
    y_fake: Tensor | None = None,
) -> Tensor:
    """R2 (Mescheder et al. 2018): γ/2 · E[‖∇D(G(z))‖²] on fake data (judged with the labels G drew)."""
    return 0.5 * gamma * _input_grad_norm(discriminator, fake, y_fake).pow(2).mean()


class RankBuffers(nn.Module):
    """A regularizer whose buffers (running means, anchors) are each DDP rank's own, as each process of
    the authors' code keeps its own: GANModule saves them per rank, so a resumed run continues every
    rank's; a rank without saved state (another world size) keeps rank 0's from the state dict."""

    def per_rank_state(self) -> dict[str, Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.named_buffers()}

    def load_per_rank_state(self, state: dict[str, Tensor] | None) -> None:
        if state is not None:
            for key, value in self.named_buffers():
                value.copy_(state[key])


# --- generator penalties ---------------------------------------------------------------------
class PathLengthPenalty(RankBuffers):
    """Path length regularization (Karras et al. 2020, StyleGAN2, sec. 3.2): weight · E[(‖J_wᵀ y‖₂ − a)²]
    with y ~ N(0, I)/sqrt(H·W) an image-space direction, J_w G's Jacobian w.r.t. its intermediate
    latents w, and a the running mean of the lengths (``pl_mean``, a buffer: in the checkpoint, one per
    DDP rank).

    As StyleGAN2-ADA's ``loss.py``: on the first ``batch/batch_shrink`` latents of the draw, the length
    per sample is sqrt(mean over the w rows of Σ grad²), ``pl_mean ← lerp(pl_mean, mean length, decay)``
    and the penalty is taken against that updated mean, gradient included. What G must offer:
    ``G.mapping(z, y) -> ws`` (B, rows, w_dim) and ``G.synthesis(ws) -> image``; ``G.styles(z, y)``
    when present (StyleGAN2's mapping with style mixing) is used in place of ``mapping``.
    ``every``: run every k generator steps with the weight times k (lazy regularization)."""

    def __init__(
        self, weight: float = 2.0, decay: float = 0.01, batch_shrink: int = 2, every: int = 4
    ) -> None:
        super().__init__()
        self.weight, self.decay, self.batch_shrink, self.every = weight, decay, batch_shrink, every
        self.register_buffer("pl_mean", torch.zeros(()))

    needs_latents = True  # differentiates G's map from drawn latents

    @staticmethod
    def check(generator: nn.Module) -> str | None:
        """Why ``generator`` cannot be regularized this way (None: it can)."""
        if not (hasattr(generator, "mapping") and hasattr(generator, "synthesis")):
            return (
                f"{type(generator).__name__} has no mapping/synthesis split (path length differentiates "
                "G w.r.t. its intermediate latents w: model=stylegan2)"
            )
        return None

    def forward(self, generator: nn.Module, inputs: tuple[Tensor, ...]) -> Tensor:
        """The weighted penalty on G's latents ``inputs`` (z, and labels for a conditional G)."""
        n = max(1, inputs[0].shape[0] // self.batch_shrink)
        z, y = inputs[0][:n], (inputs[1][:n] if len(inputs) > 1 else None)
        ws = generator.styles(z, y) if hasattr(generator, "styles") else generator.mapping(z, y)
        image = generator.synthesis(ws)
        direction = torch.randn_like(image) / (image.shape[2] * image.shape[3]) ** 0.5
        (grad,) = torch.autograd.grad((image * direction).sum(), ws, create_graph=True)
        lengths = grad.square().sum(2).mean(1).sqrt()
        mean = self.pl_mean.lerp(lengths.mean().to(self.pl_mean.dtype), self.decay)  # fp32 under autocast
        self.pl_mean.copy_(mean.detach())
        return self.weight * (lengths - mean).square().mean()


class OrthogonalRegularization(nn.Module):
    """BigGAN's orthogonal regularization (Brock et al. 2019, sec. 3.1): β/2 · Σ_W ‖W Wᵀ ⊙ (1 − I)‖²_F over
    G's weights W (each reshaped to (out, rest)), pushing the filters towards orthogonality without
    constraining their norms. Its gradient β · 2 (W Wᵀ ⊙ (1 − I)) W is the one the authors' code
    (BigGAN-PyTorch ``utils.ortho``) adds to the gradients after backward, β = 1e-4; as there, only
    weights with two or more dimensions count and embeddings (their shared class embedding) do not."""

    needs_latents = False

    def __init__(self, weight: float = 1e-4, every: int = 1) -> None:
        super().__init__()
        self.weight, self.every = weight, every

    def forward(self, generator: nn.Module, inputs: tuple[Tensor, ...]) -> Tensor:
        embeddings = {id(m.weight) for m in generator.modules() if isinstance(m, nn.Embedding)}
        total = None
        for param in generator.parameters():
            if param.dim() < 2 or id(param) in embeddings or not param.requires_grad:
                continue
            w = param.reshape(param.shape[0], -1)
            gram = w @ w.t()
            off = gram - torch.diag(torch.diagonal(gram))
            value = off.pow(2).sum()
            total = value if total is None else total + value
        assert total is not None, "a generator without weight matrices"
        return 0.5 * self.weight * total


# --- regularizers on D's outputs -------------------------------------------------------------------
class LeCam(RankBuffers):
    """LeCam regularization (Tseng et al. 2021, "Regularizing Generative Adversarial Networks under
    Limited Data"): weight · (E[relu(D(x) − α_F)²] + E[relu(α_R − D(G(z)))²]), α_R and α_F moving averages
    of D's mean output on real and fake batches, added to D's loss.

    As the authors' code (google/lecam-gan, ``lecam_reg`` and ``ema_losses``): the averages are updated
    with this batch's means before the term is taken, with decay 0 for the first ``start`` updates (1000
    there) and ``decay`` (0.99) after; the one-sided relu of their code (the paper writes the squares
    without it). Deviation: the averages are device tensors (``ema_real``, ``ema_fake``, buffers saved
    in checkpoints, one per DDP rank as each of their processes keeps its own), not host floats."""

    def __init__(self, weight: float = 0.3, decay: float = 0.99, start: int = 1000) -> None:
        super().__init__()
        self.weight, self.decay, self.start = weight, decay, start
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def forward(self, real_logits: Tensor, fake_logits: Tensor, **context: Any) -> Tensor:
        decay = torch.where(self.updates >= self.start, self.decay, 0.0)  # no host sync
        for ema, logits in ((self.ema_real, real_logits), (self.ema_fake, fake_logits)):
            ema.copy_(decay * ema + (1.0 - decay) * logits.detach().float().mean())
        self.updates += 1
        real_term = F.relu(real_logits - self.ema_fake).pow(2).mean()
        fake_term = F.relu(self.ema_real - fake_logits).pow(2).mean()
        return self.weight * (real_term + fake_term)


class ConsistencyRegularization(nn.Module):
    """Consistency regularization: CR (Zhang et al. 2020, "Consistency Regularization for Generative
    Adversarial Networks"), real_weight·E‖D(x) − D(T(x))‖² on real images, and balanced CR (Zhao et al.
    2021, "Improved Consistency Regularization for GANs"), + fake_weight·E‖D(G(z)) − D(T(G(z)))‖² on the
    fakes (detached from G, as in D's update). T: a random horizontal flip and a random shift by whole
    pixels, up to 1/8 of the size, per sample (ADA's ``xflip`` and ``translate``, reflection fill);
    both D outputs keep their gradient. Deviation: the papers' shift pads and crops (the fill of their
    code is not reproduced: reflection here). Paper values: λ = 10 for CR, 10 and 10 for bCR."""

    needs_images = True

    def __init__(self, real_weight: float = 10.0, fake_weight: float = 0.0) -> None:
        super().__init__()
        self.real_weight, self.fake_weight = real_weight, fake_weight

    @staticmethod
    def transform(x: Tensor) -> Tensor:
        return translate(xflip(x, 1.0), 1.0)

    def forward(self, real_logits: Tensor, fake_logits: Tensor, **context: Any) -> Tensor:
        judge, total = context["judge"], torch.zeros((), device=real_logits.device)
        for weight, x, y, logits in (
            (self.real_weight, context["real"], context["y_real"], real_logits),
            (self.fake_weight, context["fake"], context["y_fake"], fake_logits),
        ):
            if weight:
                total = total + weight * (_judge(judge, self.transform(x), y) - logits).pow(2).mean()
        return total


class LatentConsistencyD(nn.Module):
    """Latent consistency regularization, D's part (zCR; Zhao et al. 2021, "Improved Consistency
    Regularization for GANs"): weight·E[(D(G(z)) − D(G(z + Δz)))²], Δz ~ N(0, σ²I), the second fake
    made without gradient to G (D's update). With :class:`LatentConsistencyG` (``loss/regularizer=zcr``
    sets both). Defaults σ 0.03, weight 5 (StudioGAN's ICR configuration: σ 0.05, 20)."""

    needs_latents = True

    def __init__(self, weight: float = 5.0, sigma: float = 0.03) -> None:
        super().__init__()
        self.weight, self.sigma = weight, sigma

    def forward(self, real_logits: Tensor, fake_logits: Tensor, **context: Any) -> Tensor:
        inputs = context["inputs"]
        moved = (inputs[0] + self.sigma * torch.randn_like(inputs[0]), *inputs[1:])
        fake, labels = context["regenerate"](moved)
        return self.weight * (fake_logits - _judge(context["judge"], fake, labels)).pow(2).mean()


class LatentConsistencyG(nn.Module):
    """Latent consistency regularization, G's part (zCR, Zhao et al. 2021): −weight·E[(G(z) − G(z + Δz))²]
    (mean over the pixels), Δz ~ N(0, σ²I): G is pushed to let nearby latents give different images,
    against mode collapse. Defaults σ 0.03, weight 0.5 (StudioGAN's ICR configuration: σ 0.05, 0.5)."""

    needs_latents = True

    def __init__(self, weight: float = 0.5, sigma: float = 0.03, every: int = 1) -> None:
        super().__init__()
        self.weight, self.sigma, self.every = weight, sigma, every

    def forward(self, generator: nn.Module, inputs: tuple[Tensor, ...]) -> Tensor:
        moved = (inputs[0] + self.sigma * torch.randn_like(inputs[0]), *inputs[1:])
        return -self.weight * (generator(*inputs) - generator(*moved)).pow(2).mean()


def every_of(penalty: Any, where: str) -> int:
    """A penalty's interval k (``every``: run every k updates with the weight times k), checked; a
    partial's ``every`` keyword is taken out of it (the penalty functions do not take it)."""
    from ganforge.errors import ConfigError

    if isinstance(penalty, functools.partial):
        every = penalty.keywords.pop("every", 1)
    else:
        every = getattr(penalty, "every", 1)
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ConfigError(f"{where}.every must be a positive integer (1: every update), got {every!r}")
    return every


def lazy_interval(every: Mapping[str, int], where: str) -> int:
    """The one interval k > 1 of a network's lazy penalties (1: none is lazy); a ConfigError when they
    differ (the optimizer's lr·c and β^c of lazy regularization need a single k)."""
    from ganforge.errors import ConfigError

    lazy = {name: k for name, k in every.items() if k > 1}
    if len(set(lazy.values())) > 1:
        shown = ", ".join(f"{name} every {k}" for name, k in lazy.items())
        raise ConfigError(f"{where}: the lazy penalties must share one interval, got {shown}")
    return next(iter(lazy.values()), 1)


class Through(nn.Module):
    """D judging an image through ``view`` (ADA, DiffAugment, instance noise): what a penalty is given
    when D is shown augmented images, so that its gradient is taken w.r.t. the un-augmented image, as
    StyleGAN2-ADA (augmentation inside ``run_D``, ``real_img_tmp.requires_grad_()``) and R3GAN do.
    Each call draws a fresh augmentation, as the reference's separate regularization pass does."""

    def __init__(self, discriminator: nn.Module, view: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        object.__setattr__(self, "judge", discriminator)  # not a submodule: no second copy of D's weights
        self.view = view
        self.samples_per_input = samples_per_input(discriminator)

    def forward(self, x: Tensor, *args: Tensor) -> Tensor:
        return self.judge(self.view(x), *args)


def _weight_key(penalty: functools.partial) -> str | None:
    """The keyword that holds a penalty's weight: ``gamma`` (R1, R2) or ``weight`` (WGAN-GP, DRAGAN)."""
    params = inspect.signature(penalty.func).parameters
    return next((key for key in ("gamma", "weight") if key in params), None)


@dataclass
class GANLoss:
    """An adversarial objective: the D and G losses, the penalties on D, optional weight clipping.

    ``weight_clip`` clamps every discriminator parameter to [-c, c] after each D update
    (the original WGAN's way to keep the critic Lipschitz). ``label_smoothing`` s sets the real
    target of the BCE D loss to 1 - s. ``acgan_fake_classes``: an ACGAN D's class loss covers the
    fakes too, with the labels G drew (Odena et al. 2017's L_C); off, only the real batch counts.
    ``penalty_schedule`` (a function of the generator step, e.g. :class:`ganforge.optim.CosineRamp`) sets
    the penalties' weight at every step (:meth:`at_step`; R3GAN's γ schedule, Huang et al. 2025).
    Rules: weight clipping and gradient penalties exclude
    each other (both bound D's gradient; WGAN-GP replaces the one by the other), and label
    smoothing needs the BCE D loss (minimax, nonsaturating).
    """

    d_loss: DLoss
    g_loss: GLoss
    penalties: Mapping[str, Penalty] = field(default_factory=dict)
    weight_clip: float | None = None
    label_smoothing: float = 0.0
    acgan_fake_classes: bool = False
    penalty_schedule: Callable[[int], float] | None = None
    g_penalties: Mapping[str, nn.Module] = field(default_factory=dict)
    d_regularizers: Mapping[str, nn.Module] = field(default_factory=dict)  # terms on D's outputs (LeCam)
    top_k: Mapping[str, float] | None = None  # top-k training of G: {gamma, nu} (Sinha et al. 2020)

    def __post_init__(self) -> None:
        from ganforge.errors import ConfigError

        self.d_loss, self.g_loss = plain(self.d_loss), plain(self.g_loss)
        self.penalties = {k: plain(v) for k, v in dict(self.penalties or {}).items() if v is not None}
        for name, penalty in self.penalties.items():  # a fresh partial: ``every`` leaves it, not the config's
            if isinstance(penalty, functools.partial):
                self.penalties[name] = functools.partial(penalty.func, *penalty.args, **penalty.keywords)
        self.g_penalties = {k: v for k, v in dict(self.g_penalties or {}).items() if v is not None}
        self.d_regularizers = {k: v for k, v in dict(self.d_regularizers or {}).items() if v is not None}
        self.top_k_rate = 1.0  # the share of each fake batch G's adversarial loss takes (top_k)
        self.top_k_used = 0  # how many fakes G's last adversarial loss took
        if self.top_k is not None:
            self.top_k = dict(self.top_k)
            gamma, nu = self.top_k.get("gamma"), self.top_k.get("nu")
            if set(self.top_k) != {"gamma", "nu"} or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and 0 < v <= 1 for v in (gamma, nu)
            ):
                raise ConfigError(
                    f"loss.top_k must be {{gamma: ..., nu: ...}} with both in (0, 1] (Sinha et al. 2020: "
                    f"0.99 and 0.5), got {self.top_k}"
                )
        # lazy regularization (Karras et al. 2020): a penalty with every k > 1 runs in its own pass
        self.every = {k: every_of(v, f"loss.penalties.{k}") for k, v in self.penalties.items()}
        self.g_every = {k: every_of(v, f"loss.g_penalties.{k}") for k, v in self.g_penalties.items()}
        self.d_reg_every = lazy_interval(self.every, "loss.penalties")
        self.g_reg_every = lazy_interval(self.g_every, "loss.g_penalties")
        if self.weight_clip is not None and self.weight_clip <= 0:
            raise ConfigError(f"loss.weight_clip must be positive, got {self.weight_clip}")
        if self.weight_clip is not None and self.penalties:
            raise ConfigError(
                f"loss.weight_clip={self.weight_clip} with the penalties ({', '.join(self.penalties)}): both "
                "constrain D's gradient, use one (loss=wgan_gp replaces clipping by a penalty; or "
                "loss.weight_clip=null)"
            )
        for name, penalty in self.penalties.items():
            if isinstance(penalty, functools.partial) and penalty.func is dragan_penalty:
                kind = penalty.keywords.get("perturbation", "gaussian")
                if kind not in DRAGAN_PERTURBATIONS:
                    choices = ", ".join(DRAGAN_PERTURBATIONS)
                    raise ConfigError(
                        f"loss.penalties.{name}.perturbation must be one of {choices}, got {kind!r}"
                    )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"loss.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.label_smoothing:
            base = self.d_loss.func if isinstance(self.d_loss, functools.partial) else self.d_loss
            if base is not minimax_d:
                raise ConfigError(
                    "loss.label_smoothing is one-sided label smoothing of the BCE D loss (Salimans et al. "
                    "2016): use it with loss=nonsaturating or loss=minimax"
                )
            self.d_loss = functools.partial(self.d_loss, real_target=1.0 - self.label_smoothing)
        self.penalty_weight: float | None = None  # the scheduled weight of the last ``at_step``
        if self.penalty_schedule is not None:
            if not self.penalties:
                raise ConfigError(
                    "loss.penalty_schedule sets the weight of the penalties, but there are none: add them "
                    "(loss/penalty=[r1,r2]) or loss.penalty_schedule=null"
                )
            for name, penalty in self.penalties.items():
                if not isinstance(penalty, functools.partial):
                    self.penalties[name] = penalty = functools.partial(penalty)
                if _weight_key(penalty) is None:
                    raise ConfigError(
                        f"loss.penalty_schedule: the penalty {name!r} has no gamma/weight to set"
                    )
            self.at_step(0)

    def at_epoch(self, epoch: int) -> None:
        """Top-k training (Sinha et al. 2020): G's adversarial loss takes the share max(γ^epoch, ν) of
        each fake batch (as the authors' code: the rate decays by γ per epoch of the data, down to ν)."""
        if self.top_k is not None:
            self.top_k_rate = max(self.top_k["gamma"] ** epoch, self.top_k["nu"])

    def top_k_count(self, n: int) -> int:
        """How many of ``n`` fakes G's adversarial loss takes (all without top-k; at least one)."""
        return n if self.top_k is None else max(1, int(n * self.top_k_rate))

    def at_step(self, step: int) -> None:
        """Sets every penalty's weight (R1/R2's γ, the others' ``weight``) to the schedule's value at
        generator step ``step`` (R3GAN's γ ramp, Huang et al. 2025): a pure function of the step, so a
        resumed run continues with the same weight. Without a schedule, nothing to do."""
        if self.penalty_schedule is None:
            return
        weight = float(self.penalty_schedule(step))
        if weight == self.penalty_weight:
            return
        self.penalty_weight = weight
        for name, penalty in self.penalties.items():
            assert isinstance(penalty, functools.partial)
            key = _weight_key(penalty)
            self.penalties[name] = functools.partial(
                penalty.func, *penalty.args, **{**penalty.keywords, key: weight}
            )

    @property
    def needs_real_logits(self) -> bool:
        """Whether the G loss needs D's logits on real data (the relativistic losses)."""
        return needs_real(self.g_loss)

    def generator_loss(self, fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
        """The G objective; ``real_logits`` only for the losses that need them. With top-k training, on
        the k fakes D scores highest (the most realistic to D), k = :meth:`top_k_count`."""
        k = self.top_k_used = self.top_k_count(fake_logits.shape[0])  # logged as train/top_k
        if k < fake_logits.shape[0]:
            fake_logits = fake_logits.topk(k, dim=0).values
        if self.needs_real_logits:
            if real_logits is None:
                raise ValueError("this G loss needs the discriminator's logits on a real batch")
            return self.g_loss(fake_logits, real_logits)
        return self.g_loss(fake_logits)

    def discriminator_loss(
        self,
        discriminator: nn.Module,
        real_logits: Tensor,
        fake_logits: Tensor,
        real: Tensor,
        fake: Tensor,
        y_real: Tensor | None = None,
        y_fake: Tensor | None = None,
    ) -> Tensor:
        """The D objective plus every penalty (``y_*``: the labels of a conditional D)."""
        return self.d_loss(real_logits, fake_logits) + self.penalty(discriminator, real, fake, y_real, y_fake)

    def penalty(
        self,
        discriminator: nn.Module,
        real: Tensor,
        fake: Tensor,
        y_real: Tensor | None = None,
        y_fake: Tensor | None = None,
        lazy: bool = False,
    ) -> Tensor:
        """The sum of the penalties on D that run with every update (``lazy``: those that run every k
        updates, unweighted by k) — a zero tensor when there are none; a conditional D judges the real
        batch with ``y_real`` and the fake batch with ``y_fake``."""
        total = torch.zeros((), device=real.device, dtype=real.dtype)
        for name, penalty in self.penalties.items():
            if (self.every[name] > 1) == lazy:
                total = total + penalty(discriminator, real, fake, y_real=y_real, y_fake=y_fake)
        return total

    def has_penalties(self, lazy: bool) -> bool:
        """Whether D has penalties that run with every update (or, ``lazy``, every k updates)."""
        return any((k > 1) == lazy for k in self.every.values())

    def g_penalty(
        self, generator: nn.Module, inputs: tuple[Tensor, ...], lazy: bool = False
    ) -> Tensor | None:
        """The sum of the penalties on G (on its inputs ``inputs``) that run with every update (``lazy``:
        every k updates, unweighted by k); None when there are none."""
        total = None
        for name, penalty in self.g_penalties.items():
            if (self.g_every[name] > 1) == lazy:
                value = penalty(generator, inputs)
                total = value if total is None else total + value
        return total

    @torch.no_grad()
    def clip_weights(self, discriminator: nn.Module) -> None:
        if self.weight_clip is not None:
            for p in discriminator.parameters():
                p.clamp_(-self.weight_clip, self.weight_clip)

"""GANModule: one LightningModule that trains any generator/discriminator/loss combination.

Manual optimization. One generator step is ``n_critic`` discriminator updates followed by one
generator update, each D update on its own real batch; one ``training_step`` does
``steps_per_batch`` generator steps on one loader batch (see ``ganforge.data.base``), which spreads
Lightning's per-batch cost over them. ``g_step`` counts generator updates: it is the training
budget (``train.steps``) and the x-axis of every logged curve (``trainer/g_step``). Lightning's
``global_step`` counts every optimizer step, i.e. ``(n_critic + 1)`` per generator step."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from ganforge.augment import DiffAugment, InstanceNoise
from ganforge.data.base import mix_seed
from ganforge.ema import ema_beta, ema_update
from ganforge.errors import ConfigError
from ganforge.loggers import logger_fault
from ganforge.losses import GANLoss, acgan_class_loss

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


def grad_norm(module: nn.Module) -> Tensor:
    """L2 norm of all gradients of ``module`` (a device tensor: no host sync).

    Two kernels whatever the number of parameters (``torch._foreach_norm``, as torch's own
    ``clip_grad_norm_``); a norm per parameter cost 1.6x more on the toy MLP (bench/hot_loop.py).
    """
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def extrapolates(factory: OptimizerFactory) -> bool:
    """Whether an optimizer factory (a class or a partial of one) makes an extragradient optimizer."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    return hasattr(factory, "extrapolate")


class WithLabels(nn.Module):
    """A conditional D seen as ``D(x)`` (what penalties call): labels bound, adversarial logit only."""

    def __init__(self, discriminator: nn.Module, y: Tensor) -> None:
        super().__init__()
        self.discriminator, self.y = discriminator, y

    def forward(self, x: Tensor) -> Tensor:
        out = self.discriminator(x, self.y)
        return out[0] if isinstance(out, tuple) else out


class GANModule(pl.LightningModule):
    """Alternating D/G training with manual optimization; see the module docstring."""

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        loss: GANLoss,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        steps: int = 1000,
        n_critic: int = 1,
        log_every: int = 50,
        clip_grad_g: float | None = None,
        clip_grad_d: float | None = None,
        num_fixed: int = 64,
        seed: int = 0,
        ema_decay: float | None = None,
        ema_warmup: bool = True,
        augment: DiffAugment | None = None,
        instance_noise: InstanceNoise | None = None,
        num_classes: int = 0,
        acgan_weight: float = 1.0,
        steps_per_batch: int = 1,
        compile: bool = False,
        compile_options: dict[str, Any] | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.loss = loss
        self.optimizer_g, self.optimizer_d, self.scheduler = optimizer_g, optimizer_d, scheduler
        self.total_steps = steps
        self.n_critic = n_critic
        self.steps_per_batch = steps_per_batch  # generator steps per loader batch (training_step)
        self.batch_first_step = 0  # g_step when the current batch began
        self.log_every = log_every
        self.clip_grad_g, self.clip_grad_d = clip_grad_g, clip_grad_d
        self.seed = seed
        self.z_dim: int = generator.z_dim
        self.num_classes = num_classes  # > 0: conditional, G(z, y) and D(x, y)
        self.acgan_weight = acgan_weight  # weight of the class loss when D also classifies (ACGAN)
        self.grid_columns: int | None = None  # conditional: one grid row per class, same latents per column
        gen, fixed_y = torch.Generator().manual_seed(seed), None
        if num_classes and num_classes <= num_fixed:
            self.grid_columns = num_fixed // num_classes
            fixed = torch.randn(self.grid_columns, self.z_dim, generator=gen).repeat(num_classes, 1)
            fixed_y = torch.arange(num_classes).repeat_interleave(self.grid_columns)
        else:  # more classes than samples (stacked digits): num_fixed classes spread over the range
            fixed = torch.randn(num_fixed, self.z_dim, generator=gen)
            fixed_y = torch.linspace(0, num_classes - 1, num_fixed).long() if num_classes else None
        self.register_buffer("fixed_z", fixed)
        self.register_buffer("fixed_y", fixed_y)
        self._class_losses: dict[str, Tensor] = {}  # ACGAN's class losses of the last step, for logging
        self.g_step = 0
        self.last_metrics: dict[str, float] = {}
        self._rng_state: dict[str, Any] | None = None
        self.run_config: dict[str, Any] | None = None  # the resolved config, stored in checkpoints
        # training tricks: EMA of G (samples and metrics use it), what D sees, extragradient
        self.ema_decay, self.ema_warmup = ema_decay, ema_warmup
        self.ema_generator: nn.Module | None = None
        if ema_decay is not None:
            if not 0.0 < ema_decay < 1.0:
                raise ConfigError(f"train.ema.decay must be in (0, 1), got {ema_decay}")
            self.ema_generator = copy.deepcopy(generator).requires_grad_(False)
        self.augment, self.instance_noise = augment, instance_noise
        self.extragradient = extrapolates(optimizer_g)
        if self.extragradient != extrapolates(optimizer_d):
            raise ConfigError("extragradient must update both networks: use optim=extragradient for G and D")
        if self.extragradient and n_critic != 1:
            raise ConfigError(
                f"optim=extragradient extrapolates G and D together: needs train.n_critic=1, got {n_critic}"
            )
        self.guard: Any = None  # a DivergenceGuard installs itself here (callbacks/guard.py)
        self._others: dict[Any, list[Tensor]] = {}  # per optimizer: the parameters it does not train
        self._frozen: list[Tensor] = []  # what toggle_optimizer froze
        self.compile_nets, self.compile_options = compile, dict(compile_options or {})
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if compile and loss.penalties:
            raise ConfigError(
                f"model.compile=true with the penalties ({', '.join(loss.penalties)}): they differentiate "
                "D's input gradient, and torch.compile does not support double backward; "
                "use model.compile=false"
            )

    # --- which network trains ---------------------------------------------------------------------
    def toggle_optimizer(self, optimizer: Any) -> None:
        """Freezes the trainable parameters of every other optimizer (Lightning's toggle), from a list
        made once per optimizer instead of a dict of all parameters on every call."""
        opt = getattr(optimizer, "optimizer", optimizer)  # a LightningOptimizer wraps the torch one
        others = self._others.get(opt)
        if others is None:
            mine = {id(p) for group in opt.param_groups for p in group["params"]}
            others = [
                p
                for o in self.trainer.optimizers
                for group in o.param_groups
                for p in group["params"]
                if id(p) not in mine
            ]
            self._others[opt] = others
        self._frozen[:] = [p for p in others if p.requires_grad]
        for p in self._frozen:
            p.requires_grad = False

    def untoggle_optimizer(self, optimizer: Any) -> None:
        for p in self._frozen:
            p.requires_grad = True
        self._frozen.clear()

    # --- how the nets run: memory order, compilation ---------------------------------------------
    def configure_model(self) -> None:
        """Channels-last weights and ``torch.compile`` of G and D, before optimizers and checkpoints load.

        ``nn.Module.compile`` compiles in place: parameter names, checkpoints and the EMA copy (left
        eager: it runs only for samples and metrics) do not change.
        """
        if self.memory_format is torch.channels_last:
            self.to(memory_format=torch.channels_last)
        if self.compile_nets:
            self.generator.compile(**self.compile_options)
            self.discriminator.compile(**self.compile_options)

    # --- optimizers ---------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        opt_g = self.optimizer_g(self.generator.parameters())
        opt_d = self.optimizer_d(self.discriminator.parameters())
        if self.scheduler is None:
            return [opt_g, opt_d]
        return [opt_g, opt_d], [self.scheduler(opt_g), self.scheduler(opt_d)]

    # --- randomness ------------------------------------------------------------------------------
    def sample_z(self, n: int) -> Tensor:
        """Latent codes ~ N(0, I) from the global RNG (its state is saved in every checkpoint)."""
        return torch.randn(n, self.z_dim, device=self.device)

    def sample_labels(self, n: int) -> Tensor | None:
        """Class labels drawn uniformly from the global RNG (None for unconditional models)."""
        return torch.randint(self.num_classes, (n,), device=self.device) if self.num_classes else None

    def generate(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.generator(z) if y is None else self.generator(z, y)

    def discriminate(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(adversarial logits, class logits of an ACGAN discriminator or None)."""
        out = self.discriminator(x) if y is None else self.discriminator(x, y)
        return out if isinstance(out, tuple) else (out, None)

    def on_fit_start(self) -> None:
        # each rank draws its own latents and penalty noise; weights were initialised before this
        torch.manual_seed(mix_seed(self.seed, self.global_rank, 1))

    def _restore_rng(self) -> None:
        """Put back the RNG state saved with the checkpoint, right before the first resumed step.

        Doing it here rather than on load means nothing Lightning draws while starting the loop
        (dataloader seeds) shifts the stream: the resumed run draws what the straight run drew.
        """
        state, self._rng_state = self._rng_state, None
        torch.set_rng_state(state["cpu"])
        if state.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    @torch.no_grad()
    def sample(self, z: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        """Generator output in eval mode (fixed noise by default); the train/eval mode is restored.

        Conditional models take labels ``y`` (fixed noise: one row per class); without them the
        labels cycle through the classes.
        """
        if z is None:
            z, y = self.fixed_z, self.fixed_y
        elif self.num_classes and y is None:
            y = torch.arange(len(z)) % self.num_classes
        net = self.generator if self.ema_generator is None else self.ema_generator  # EMA weights when on
        was_training = net.training
        net.eval()
        try:
            return net(z.to(self.device)) if y is None else net(z.to(self.device), y.to(self.device))
        finally:
            net.train(was_training)

    # --- the training step ----------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """``steps_per_batch`` generator steps, each on its own slice of the loader batch.

        Several steps per Lightning batch spread Lightning's per-batch work (hooks of every callback,
        the fetcher, the progress bar) over them; callbacks act at batch ends (see :meth:`reached`).
        """
        real_all, labels_all = batch
        if real_all.dim() == 4:  # images: in the nets' memory order (a no-op unless channels-last)
            real_all = real_all.contiguous(memory_format=self.memory_format)
        if self._rng_state is not None:
            self._restore_rng()
        self.batch_first_step = self.g_step
        opt_g, opt_d = self.optimizers()
        size = real_all.shape[0] // self.steps_per_batch
        for start in range(0, size * self.steps_per_batch, size):
            if self.g_step >= self.total_steps:
                break
            self._gan_step(real_all[start : start + size], labels_all[start : start + size], opt_g, opt_d)

    def reached(self, every: int) -> bool:
        """Whether the steps of the last batch reached a multiple of ``every`` (a callback's interval)."""
        return every > 0 and self.g_step // every > self.batch_first_step // every

    def _gan_step(self, real_all: Tensor, labels_all: Tensor, opt_g: Any, opt_d: Any) -> None:
        """One generator step: ``n_critic`` D updates (one real batch each), then one G update."""
        batch_size = real_all.shape[0] // self.n_critic
        will_log = (self.g_step + 1) % self.log_every == 0 or self.g_step + 1 >= self.total_steps

        if self.extragradient:
            d_loss, d_adv, g_loss, real_logits, fake_logits, d_norm, g_norm = self._extragradient_step(
                real_all, opt_g, opt_d, will_log, labels_all
            )
        else:
            # n_critic discriminator updates, each on its own real batch
            self.toggle_optimizer(opt_d)
            for real, y in zip(real_all.chunk(self.n_critic), labels_all.chunk(self.n_critic), strict=True):
                z, y_fake = self.sample_z(batch_size), self.sample_labels(batch_size)
                y_real = y if self.num_classes else None
                d_loss, d_adv, real_logits, fake_logits = self._d_objective(real, z, y_real, y_fake)
                d_norm = self._update(opt_d, d_loss, self.discriminator, self.clip_grad_d, will_log)
                self.loss.clip_weights(self.discriminator)
            self.untoggle_optimizer(opt_d)

            # one generator update
            self.toggle_optimizer(opt_g)
            z, y_fake = self.sample_z(batch_size), self.sample_labels(batch_size)
            g_loss = self._g_objective(real, z, y_real, y_fake)
            g_norm = self._update(opt_g, g_loss, self.generator, self.clip_grad_g, will_log)
            self.untoggle_optimizer(opt_g)
        if self.ema_generator is not None:
            beta = ema_beta(self.ema_decay, self.g_step + 1, self.ema_warmup)
            ema_update(self.ema_generator, self.generator, beta)

        for sched in self.lr_schedulers() or []:
            sched.step()
        self.g_step += 1

        if will_log:
            scalars = {
                "train/d_loss": d_loss,
                "train/d_adv": d_adv,
                "train/g_loss": g_loss,
                "train/d_real": real_logits.mean(),
                "train/d_fake": fake_logits.mean(),
                "train/grad_norm_d": d_norm,
                "train/grad_norm_g": g_norm,
                **self._class_losses,
            }
            self._log_scalars(scalars, opt_g, opt_d)

    def d_view(self, x: Tensor) -> Tensor:
        """What D sees of a batch: DiffAugment, then instance noise, when on (both differentiable)."""
        if self.augment is not None:
            x = self.augment(x)
        if self.instance_noise is not None:
            x = self.instance_noise(x, self.g_step)
        return x

    def _d_objective(
        self, real: Tensor, z: Tensor, y_real: Tensor | None = None, y_fake: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """D loss with penalties (and ACGAN's class loss), without them, and D's logits on the real and
        the fake batch; ``y_*``: the labels of conditional models."""
        with torch.no_grad():
            fake = self.generate(z, y_fake)
        real, fake = self.d_view(real), self.d_view(fake)
        real_logits, real_classes = self.discriminate(real, y_real)
        fake_logits, _ = self.discriminate(fake, y_fake)
        d_adv = self.loss.d_loss(real_logits, fake_logits)
        d_loss = d_adv
        if self.loss.penalties:
            critic = self.discriminator if y_real is None else WithLabels(self.discriminator, y_real)
            d_loss = d_adv + self.loss.penalty(critic, real, fake)
        if real_classes is not None:  # ACGAN: D also classifies the real batch
            class_loss = acgan_class_loss(real_classes, y_real)
            self._class_losses["train/d_cls"] = class_loss.detach()
            d_loss = d_loss + self.acgan_weight * class_loss
        return d_loss, d_adv, real_logits, fake_logits

    def _g_objective(
        self, real: Tensor, z: Tensor, y_real: Tensor | None = None, y_fake: Tensor | None = None
    ) -> Tensor:
        """G loss; the relativistic losses also see D's logits on ``real`` (no gradient flows there)."""
        fake_logits, fake_classes = self.discriminate(self.d_view(self.generate(z, y_fake)), y_fake)
        real_logits = None
        if self.loss.needs_real_logits:
            with torch.no_grad():
                real_logits = self.discriminate(self.d_view(real), y_real)[0]
        g_loss = self.loss.generator_loss(fake_logits, real_logits)
        if fake_classes is not None:  # ACGAN: G makes samples that D classifies as their labels
            class_loss = acgan_class_loss(fake_classes, y_fake)
            self._class_losses["train/g_cls"] = class_loss.detach()
            g_loss = g_loss + self.acgan_weight * class_loss
        return g_loss

    def _extragradient_step(
        self, real: Tensor, opt_g: Any, opt_d: Any, will_log: bool, labels: Tensor | None = None
    ) -> tuple[Any, ...]:
        """Extragradient (Gidel et al. 2019): both networks extrapolate from their gradients at θ_t, then
        both update θ_t with the gradients at the extrapolated point (same real batch and latents)."""
        z_d, z_g = self.sample_z(real.shape[0]), self.sample_z(real.shape[0])
        y_real = labels if self.num_classes else None
        y_d, y_g = self.sample_labels(real.shape[0]), self.sample_labels(real.shape[0])
        for extrapolating in (True, False):
            self.toggle_optimizer(opt_d)
            d_loss, d_adv, real_logits, fake_logits = self._d_objective(real, z_d, y_real, y_d)
            d_norm = self._update(opt_d, d_loss, self.discriminator, self.clip_grad_d, will_log, step=False)
            self.untoggle_optimizer(opt_d)
            self.toggle_optimizer(opt_g)
            g_loss = self._g_objective(real, z_g, y_real, y_g)
            g_norm = self._update(opt_g, g_loss, self.generator, self.clip_grad_g, will_log, step=False)
            self.untoggle_optimizer(opt_g)
            for opt in (opt_d, opt_g):
                if extrapolating:
                    opt.optimizer.extrapolate()
                else:
                    opt.step()
            self.loss.clip_weights(self.discriminator)
        return d_loss, d_adv, g_loss, real_logits, fake_logits, d_norm, g_norm

    def _update(
        self, opt: Any, loss: Tensor, net: nn.Module, clip: float | None, measure: bool, step: bool = True
    ) -> Tensor | None:
        """Backward, the gradient norm when it will be logged or guarded, clipping, then the optimizer
        step (skipped when the divergence guard finds the loss or the gradient non-finite)."""
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        norm = grad_norm(net) if measure or self.guard is not None else None
        if self.guard is not None and not self.guard.accept(loss, norm, self._name(net), self.g_step + 1):
            opt.zero_grad(set_to_none=True)  # no gradient: a later extrapolate()/step() leaves net alone
            return norm
        if clip:
            self.clip_gradients(opt, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        if step:
            opt.step()
        return norm

    def _name(self, net: nn.Module) -> str:
        return "generator" if net is self.generator else "discriminator"

    def _log_scalars(self, scalars: dict[str, Tensor], opt_g: Any, opt_d: Any) -> None:
        """One host sync for all scalars, then every logger gets them against the generator step."""
        values = torch.stack([v.detach().float().to(self.device) for v in scalars.values()]).tolist()
        metrics = dict(zip(scalars, values, strict=True))
        metrics["train/lr_g"] = opt_g.param_groups[0]["lr"]
        metrics["train/lr_d"] = opt_d.param_groups[0]["lr"]
        metrics["trainer/g_step"] = self.g_step
        self.last_metrics.update(metrics)  # keeps the latest val/* next to the training scalars
        if self.trainer.is_global_zero:
            for logger in list(self.loggers):
                with logger_fault(self.trainer, logger):
                    logger.log_metrics(metrics, step=self.g_step)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.g_step >= self.total_steps:
            self.trainer.should_stop = True

    # --- checkpoint extras ----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["ganforge"] = {
            "g_step": self.g_step,
            "rng": rng,
            "last_metrics": self.last_metrics,
            "config": self.run_config,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("ganforge", {})
        self.g_step = int(state.get("g_step", 0))
        self.last_metrics = dict(state.get("last_metrics", {}))
        self._rng_state = state.get("rng")
        self.run_config = state.get("config") or self.run_config

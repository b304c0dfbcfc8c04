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
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from ganforge.data.base import mix_seed
from ganforge.ema import ema_beta, ema_update
from ganforge.errors import ConfigError
from ganforge.loggers import logger_fault
from ganforge.losses import GANLoss, acgan_class_loss
from ganforge.settings import OptimizerFactory, Optimizers, Runtime, Schedule, Tricks
from ganforge.tasks.base import Draw, Task
from ganforge.tasks.generation import GenerationTask


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
    """Alternating D/G training with manual optimization; see the module docstring.

    What differs between tasks (G's input, what D judges, extra G terms, sample grids) comes from
    ``task`` (:mod:`ganforge.tasks`); the settings come grouped (:mod:`ganforge.settings`).
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        loss: GANLoss,
        optimizers: Optimizers,
        schedule: Schedule | None = None,
        task: Task | None = None,
        tricks: Tricks | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__()
        schedule, tricks, runtime = schedule or Schedule(), tricks or Tricks(), runtime or Runtime()
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.loss = loss
        self.task: Task = task if task is not None else GenerationTask()
        self.optimizer_g, self.optimizer_d = optimizers.generator, optimizers.discriminator
        self.scheduler = optimizers.scheduler
        self.total_steps = schedule.steps
        self.n_critic = schedule.n_critic
        self.steps_per_batch = schedule.steps_per_batch  # generator steps per loader batch (training_step)
        self.batch_first_step = 0  # g_step when the current batch began
        self.log_every = schedule.log_every
        self.clip_grad_g, self.clip_grad_d = schedule.clip_grad_g, schedule.clip_grad_d
        self.seed = schedule.seed
        self.z_dim: int = generator.z_dim
        self.grid_columns: int | None = None  # conditional: one grid row per class, same latents per column
        num_classes, num_fixed = self.num_classes, schedule.num_fixed
        gen, fixed_y = torch.Generator().manual_seed(schedule.seed), None
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
        self._g_terms: dict[str, Tensor] = {}  # the task's G terms of the last step, for logging
        self.g_step = 0
        self.last_metrics: dict[str, float] = {}
        self._rng_state: dict[str, Any] | None = None
        self.run_config: dict[str, Any] | None = None  # the resolved config, stored in checkpoints
        # training tricks: EMA of G (samples and metrics use it), what D sees, extragradient
        self.ema_decay, self.ema_warmup = tricks.ema_decay, tricks.ema_warmup
        self.ema_generator: nn.Module | None = None
        if tricks.ema_decay is not None:
            if not 0.0 < tricks.ema_decay < 1.0:
                raise ConfigError(f"train.ema.decay must be in (0, 1), got {tricks.ema_decay}")
            self.ema_generator = copy.deepcopy(generator).requires_grad_(False)
        self.augment, self.instance_noise = tricks.augment, tricks.instance_noise
        self.extragradient = extrapolates(self.optimizer_g)
        if self.extragradient != extrapolates(self.optimizer_d):
            raise ConfigError("extragradient must update both networks: use optim=extragradient for G and D")
        if self.extragradient and self.n_critic != 1:
            raise ConfigError(
                "optim=extragradient extrapolates G and D together: needs train.n_critic=1, "
                f"got {self.n_critic}"
            )
        self.guard: Any = None  # a DivergenceGuard installs itself here (callbacks/guard.py)
        self._others: dict[Any, list[Tensor]] = {}  # per optimizer: the parameters it does not train
        self._frozen: list[Tensor] = []  # what toggle_optimizer froze
        self.compile_nets, self.compile_options = runtime.compile, dict(runtime.compile_options)
        self.memory_format = torch.channels_last if runtime.channels_last else torch.contiguous_format
        if runtime.compile and loss.penalties:
            raise ConfigError(
                f"model.compile=true with the penalties ({', '.join(loss.penalties)}): they differentiate "
                "D's input gradient, and torch.compile does not support double backward; "
                "use model.compile=false"
            )

    @property
    def num_classes(self) -> int:
        """Classes G and D are conditioned on (0: unconditional), as the task says."""
        return int(getattr(self.task, "num_classes", 0))

    @property
    def acgan_weight(self) -> float:
        return float(getattr(self.task, "acgan_weight", 1.0))

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
        """Generator output in eval mode (the task's fixed inputs by default); the mode is restored.

        Conditional models take labels ``y`` (fixed noise: one row per class); without them the
        labels cycle through the classes.
        """
        if z is None:
            return self._in_eval(lambda net: self.task.fixed_sample(self, net))
        if self.num_classes and y is None:
            y = torch.arange(len(z)) % self.num_classes
        z = z.to(self.device)
        return self._in_eval(lambda net: net(z) if y is None else net(z, y.to(self.device)))

    @torch.no_grad()
    def translate(self, source: Tensor, direction: str | None = None) -> Tensor:
        """G's output for source images (image-to-image tasks; ``direction`` AtoB or BtoA for two-way
        ones), in eval mode like :meth:`sample`."""
        source = source.to(self.device)
        return self._in_eval(lambda net: self.task.translate(net, source, direction))

    def _in_eval(self, run: Any) -> Tensor:
        net = self.generator if self.ema_generator is None else self.ema_generator  # EMA weights when on
        was_training = net.training
        net.eval()
        try:
            return run(net)
        finally:
            net.train(was_training)

    # --- the training step ----------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        """``steps_per_batch`` generator steps, each on its own slice of the loader batch.

        Several steps per Lightning batch spread Lightning's per-batch work (hooks of every callback,
        the fetcher, the progress bar) over them; callbacks act at batch ends (see :meth:`reached`).
        A batch is a tuple of tensors (images and labels; source, target and labels): the task reads it.
        """
        # images in the nets' memory order (a no-op unless channels-last)
        batch = tuple(t.contiguous(memory_format=self.memory_format) if t.dim() == 4 else t for t in batch)
        if self._rng_state is not None:
            self._restore_rng()
        self.batch_first_step = self.g_step
        opt_g, opt_d = self.optimizers()
        size = batch[0].shape[0] // self.steps_per_batch
        for start in range(0, size * self.steps_per_batch, size):
            if self.g_step >= self.total_steps:
                break
            self._gan_step(tuple(t[start : start + size] for t in batch), opt_g, opt_d)

    def reached(self, every: int) -> bool:
        """Whether the steps of the last batch reached a multiple of ``every`` (a callback's interval)."""
        return every > 0 and self.g_step // every > self.batch_first_step // every

    def _gan_step(self, batch: tuple[Tensor, ...], opt_g: Any, opt_d: Any) -> None:
        """One generator step: ``n_critic`` D updates (one part of the batch each), then one G update."""
        will_log = (self.g_step + 1) % self.log_every == 0 or self.g_step + 1 >= self.total_steps

        if self.extragradient:
            d_loss, d_adv, g_loss, real_logits, fake_logits, d_norm, g_norm = self._extragradient_step(
                batch, opt_g, opt_d, will_log
            )
        else:
            # n_critic discriminator updates, each on its own part of the batch
            self.toggle_optimizer(opt_d)
            for part in zip(*(t.chunk(self.n_critic) for t in batch), strict=True):
                d_loss, d_adv, real_logits, fake_logits = self._d_objective(part, self.task.draw(self, part))
                d_norm = self._update(opt_d, d_loss, self.discriminator, self.clip_grad_d, will_log)
                self.loss.clip_weights(self.discriminator)
            self.untoggle_optimizer(opt_d)

            # one generator update (on the last part: what the relativistic losses compare with)
            self.toggle_optimizer(opt_g)
            g_loss = self._g_objective(part, self.task.draw(self, part))
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
                **self._g_terms,
            }
            self._log_scalars(scalars, opt_g, opt_d)

    def d_view(self, x: Tensor) -> Tensor:
        """What D sees of a batch: DiffAugment, then instance noise, when on (both differentiable)."""
        if self.augment is not None:
            x = self.augment(x)
        if self.instance_noise is not None:
            x = self.instance_noise(x, self.g_step)
        return x

    def _d_objective(self, part: tuple[Tensor, ...], draw: Draw) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """D loss with penalties (and ACGAN's class loss), without them, and D's logits on the real and
        the fake batch. ``part``: this update's share of the loader batch; ``draw``: G's input."""
        real, real_cond = self.task.real(part)
        with torch.no_grad():
            fake = self.task.for_d(self.task.generate(self.generator, draw))
        real, y_real = self.task.d_input(real, real_cond)
        fake, y_fake = self.task.d_input(fake, draw.cond)
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

    def _g_objective(self, part: tuple[Tensor, ...], draw: Draw) -> Tensor:
        """G loss: the adversarial term (the relativistic losses also see D's logits on the real part,
        with no gradient there) plus the task's own weighted terms (e.g. pix2pix's L1)."""
        fake = self.task.generate(self.generator, draw)
        terms = self.task.g_terms(self.generator, part, fake)
        if self.task.adversarial:
            fake_in, y_fake = self.task.d_input(fake, draw.cond)
            fake_logits, fake_classes = self.discriminate(self.d_view(fake_in), y_fake)
            real_logits = None
            if self.loss.needs_real_logits:
                real, real_cond = self.task.real(part)
                real_in, y_real = self.task.d_input(real, real_cond)
                with torch.no_grad():
                    real_logits = self.discriminate(self.d_view(real_in), y_real)[0]
            g_adv = g_loss = self.loss.generator_loss(fake_logits, real_logits)
            if self.task.adversarial_weight != 1.0:  # e.g. CycleGAN: two domains' terms, summed
                g_adv = g_loss = self.task.adversarial_weight * g_adv
            if fake_classes is not None:  # ACGAN: G makes samples that D classifies as their labels
                class_loss = acgan_class_loss(fake_classes, y_fake)
                self._class_losses["train/g_cls"] = class_loss.detach()
                g_loss = g_loss + self.acgan_weight * class_loss
        else:  # a regression baseline: the task's terms alone
            g_adv = g_loss = torch.zeros((), device=fake.device)
        for name, term in terms.items():
            g_loss = g_loss + term.weight * term.value
            self._g_terms[f"train/g_{name}"] = term.value.detach()
        if terms:
            self._g_terms["train/g_adv"] = g_adv.detach()
        return g_loss

    def _extragradient_step(
        self, batch: tuple[Tensor, ...], opt_g: Any, opt_d: Any, will_log: bool
    ) -> tuple[Any, ...]:
        """Extragradient (Gidel et al. 2019): both networks extrapolate from their gradients at θ_t, then
        both update θ_t with the gradients at the extrapolated point (same real batch and G inputs)."""
        draw_d, draw_g = self.task.draw(self, batch), self.task.draw(self, batch)
        for extrapolating in (True, False):
            self.toggle_optimizer(opt_d)
            d_loss, d_adv, real_logits, fake_logits = self._d_objective(batch, draw_d)
            d_norm = self._update(opt_d, d_loss, self.discriminator, self.clip_grad_d, will_log, step=False)
            self.untoggle_optimizer(opt_d)
            self.toggle_optimizer(opt_g)
            g_loss = self._g_objective(batch, draw_g)
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

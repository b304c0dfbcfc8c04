"""GANModule: one LightningModule that trains any generator/discriminator/loss combination.

Manual optimization. One generator step is ``n_critic`` discriminator updates followed by one
generator update, each D update on its own real batch (or, ``train.updates=simultaneous`` and
extragradient, both networks' updates from the same weights: the same phases, their steps applied
together); one ``training_step`` does
``steps_per_batch`` generator steps on one loader batch (see ``ganforge.data.base``), which spreads
Lightning's per-batch cost over them. ``g_step`` counts generator updates: it is the training
budget (``train.steps``) and the x-axis of every logged curve (``trainer/g_step``). Lightning's
``global_step`` counts every optimizer step, i.e. ``(n_critic + 1)`` per generator step, plus the lazy
regularization passes (:meth:`GANModule.optimizer_steps`)."""

from __future__ import annotations

import copy
import functools
import logging
import time
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from ganforge.ema import ema_beta, ema_update, half_life_beta, has_batch_norm, standing_stats
from ganforge.errors import ConfigError
from ganforge.latents import truncation_space
from ganforge.loggers import logger_fault
from ganforge.losses import GANLoss, Through
from ganforge.seeding import mix_seed
from ganforge.settings import OptimizerFactory, Optimizers, Runtime, Schedule, Tricks
from ganforge.tasks.base import Draw, Task
from ganforge.tasks.generation import GenerationTask

log = logging.getLogger(__name__)


def grad_norm(module: nn.Module) -> Tensor:
    """L2 norm of all gradients of ``module`` (a device tensor: no host sync).

    Two kernels whatever the number of parameters (``torch._foreach_norm``, as torch's own
    ``clip_grad_norm_``); a norm per parameter cost 1.6x more on the toy MLP (bench/hot_loop.py).
    """
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def scale_gradients(module: nn.Module, factor: Tensor) -> None:
    """Multiplies every gradient of ``module`` by ``factor`` (a device scalar: no host sync)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if grads:
        torch._foreach_mul_(grads, factor.to(grads[0].device))


def _part(x: Tensor | None, at: slice) -> Tensor | None:
    return None if x is None else x[at]


def _joined(logits: list[Tensor]) -> Tensor:
    """One discriminator's logits as they are; several judges' concatenated (for logging and ADA)."""
    return logits[0] if len(logits) == 1 else torch.cat(logits)


def extrapolates(factory: OptimizerFactory) -> bool:
    """Whether an optimizer factory (a class or a partial of one) makes an extragradient optimizer."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    return hasattr(factory, "extrapolate")


def lazy_rates(optimizer: torch.optim.Optimizer, every: int) -> None:
    """Lazy regularization's optimizer rule (Karras et al. 2020, StyleGAN2 appendix B; StyleGAN2-ADA's
    ``training_loop.py``): when a penalty pass runs every k > 1 updates with the same optimizer, its
    learning rate becomes lr·c and Adam's betas β^c, c = k/(k + 1), so that k + 1 steps (k main, one
    penalty) move the weights and the moments as k plain steps would."""
    if every <= 1:
        return
    c = every / (every + 1)
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * c
        if "betas" in group:
            group["betas"] = tuple(beta**c for beta in group["betas"])


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
        self.simultaneous = schedule.updates == "simultaneous"
        if schedule.updates not in ("alternating", "simultaneous"):
            raise ConfigError(f"train.updates must be alternating or simultaneous, got {schedule.updates!r}")
        self.steps_per_batch = schedule.steps_per_batch  # generator steps per loader batch (training_step)
        self.batch_first_step = 0  # g_step when the current batch began
        self.log_every = schedule.log_every
        self.clip_grad_g, self.clip_grad_d = schedule.clip_grad_g, schedule.clip_grad_d
        self.seed = schedule.seed
        self.num_fixed = schedule.num_fixed  # samples in every grid
        self.epoch_items = schedule.epoch_items  # training items per epoch (top-k training's clock)
        if loss is not None and loss.top_k is not None:
            if loss.needs_real_logits:
                raise ConfigError(
                    "loss.top_k keeps G's k best-scored fakes; a relativistic G loss compares each fake with "
                    "the real batch as a whole or pair by pair: use top-k with a non-relativistic loss"
                )
            if self.epoch_items <= 0:
                raise ConfigError("loss.top_k decays per epoch: the number of training items is not known")
        self.w_truncation: float | None = None  # ψ of W-space truncation in samples (use_truncation)
        self.task.attach(generator, schedule.num_fixed, schedule.seed)  # latents, fixed grid inputs
        self._class_losses: dict[str, Tensor] = {}  # ACGAN's class losses of the last step, for logging
        self._g_terms: dict[str, Tensor] = {}  # the task's G terms of the last step, for logging
        self._judge_terms: dict[str, Tensor] = {}  # each D's adversarial terms (several D's), for logging
        self.g_step = 0
        self.wall_time_before = 0.0  # training seconds of the earlier segments (from the checkpoint)
        self._segment_start = time.monotonic()
        self.last_metrics: dict[str, float] = {}
        self._rng_state: dict[str, Any] | None = None
        self._per_rank_state: list[dict[str, Any]] | None = None
        self.run_config: dict[str, Any] | None = None  # the resolved config, stored in checkpoints
        # training tricks: EMA of G (samples and metrics use it), what D sees, extragradient
        self.ema_decay, self.ema_warmup = tricks.ema_decay, tricks.ema_warmup
        self.ema_kimg, self.ema_rampup = tricks.ema_kimg, tricks.ema_rampup
        self.ema_generator: nn.Module | None = None
        if tricks.ema_decay is not None and tricks.ema_kimg is not None:
            raise ConfigError(
                "train.ema.decay and train.ema.kimg both set: the average has a decay per step or a "
                "half-life in thousands of images (StyleGAN2-ADA's); set the other to null"
            )
        if tricks.ema_decay is not None and not 0.0 < tricks.ema_decay < 1.0:
            raise ConfigError(f"train.ema.decay must be in (0, 1), got {tricks.ema_decay}")
        for key, value in (("kimg", tricks.ema_kimg), ("rampup", tricks.ema_rampup)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
            ):
                raise ConfigError(f"train.ema.{key} must be a positive number or null, got {value!r}")
        if tricks.ema_decay is not None or tricks.ema_kimg is not None:
            self.ema_generator = copy.deepcopy(generator).requires_grad_(False)
        self.ema_standing = self._standing_setting(tricks)
        self.ema_standing_batches, self.ema_standing_batch_size = (
            tricks.ema_standing_batches,
            tricks.ema_standing_batch_size,
        )
        self._ema_stats_step = -1  # the g_step the EMA G's standing statistics belong to
        self.augment, self.instance_noise = tricks.augment, tricks.instance_noise
        self.ada = tricks.ada  # adaptive augmentation: a submodule, so p is saved with the weights
        self.extragradient = extrapolates(self.optimizer_g)
        if self.extragradient != extrapolates(self.optimizer_d):
            raise ConfigError("extragradient must update both networks: use optim=extragradient for G and D")
        if self.extragradient and self.n_critic != 1:
            raise ConfigError(
                "optim=extragradient extrapolates G and D together: needs train.n_critic=1, "
                f"got {self.n_critic}"
            )
        if self.simultaneous and (self.extragradient or self.n_critic != 1):
            raise ConfigError(
                "train.updates=simultaneous steps D and G once each from the same weights: needs "
                f"train.n_critic=1 and not optim=extragradient, got n_critic={self.n_critic}"
            )
        if not self.task.adversarial and (self.simultaneous or self.extragradient):
            raise ConfigError(
                "task.adversarial=false trains G alone (D is neither run nor updated): use "
                "train.updates=alternating without optim=extragradient"
            )
        self.guard: Any = None  # a DivergenceGuard installs itself here (callbacks/guard.py)
        self._others: dict[Any, list[Tensor]] = {}  # per optimizer: the parameters it does not train
        self._frozen: list[Tensor] = []  # what toggle_optimizer froze
        self.compile_nets, self.compile_options = runtime.compile, dict(runtime.compile_options)
        self.memory_format = torch.channels_last if runtime.channels_last else torch.contiguous_format
        penalties = [*loss.penalties, *loss.g_penalties] if loss is not None else []
        if runtime.compile and penalties:
            raise ConfigError(
                f"model.compile=true with the penalties ({', '.join(penalties)}): they differentiate "
                "a gradient, and torch.compile does not support double backward; use model.compile=false"
            )
        self.g_penalties = nn.ModuleDict(loss.g_penalties if loss is not None else {})  # pl_mean is saved
        self.d_regularizers = nn.ModuleDict(
            loss.d_regularizers if loss is not None else {}
        )  # LeCam's anchors
        if loss is not None:
            self._check_regularizers(loss)
        self._reg_values: dict[str, Tensor] = {}  # the last regularization passes' values, for logging
        self._d_inputs: tuple[Tensor, Tensor, Tensor | None, Tensor | None] | None = None

    def optimizer_steps(self, g_steps: int) -> int:
        """Lightning's step count (every optimizer step) after ``g_steps`` generator steps: n_critic D
        steps and one G step each, plus the lazy regularization passes (D's on the D updates 0, k, 2k ...,
        G's on the G steps 0, k, 2k ...)."""
        d_updates = g_steps * self.n_critic if self.task.adversarial else 0  # the regression baseline: none
        passes = 0
        if self.loss.has_penalties(True):
            passes += -(-d_updates // self.loss.d_reg_every)
        if self.loss.g_reg_every > 1:
            passes += -(-g_steps // self.loss.g_reg_every)
        return d_updates + g_steps + passes

    def _check_regularizers(self, loss: GANLoss) -> None:
        """G penalties (and zCR) need drawn latents and a G they can differentiate; D regularizers one D;
        regularization passes of their own (``every`` > 1) the alternating updates."""
        latent = [name for name, p in loss.g_penalties.items() if getattr(p, "needs_latents", True)]
        latent += [name for name, r in loss.d_regularizers.items() if getattr(r, "needs_latents", False)]
        if latent and not self.task.draws_latents:
            raise ConfigError(
                f"the penalties ({', '.join(latent)}) regularize G's map from latents: "
                f"task=generation, not {self.task.name}"
            )
        for name, penalty in loss.g_penalties.items():
            why = penalty.check(self.generator) if hasattr(penalty, "check") else None
            if why:
                raise ConfigError(f"loss.g_penalties.{name}: {why}")
        if loss.d_regularizers and len(self.task.judges(self.discriminator, 2)) > 1:
            raise ConfigError(
                f"loss.d_regularizers ({', '.join(loss.d_regularizers)}) regularize one D (LeCam keeps one "
                f"set of anchors); task={self.task.name} has several discriminators"
            )
        lazy = loss.d_reg_every > 1 or loss.g_reg_every > 1
        if lazy and (self.simultaneous or self.extragradient):
            raise ConfigError(
                "lazy regularization and G penalties run as passes of their own between alternating "
                "updates: use train.updates=alternating without optim=extragradient, or every=1 penalties"
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
        lazy_rates(opt_g, self.loss.g_reg_every)
        lazy_rates(opt_d, self.loss.d_reg_every)
        if self.scheduler is None:
            return [opt_g, opt_d]
        return [opt_g, opt_d], [self.scheduler(opt_g), self.scheduler(opt_d)]

    # --- randomness ------------------------------------------------------------------------------
    def discriminate(
        self, x: Tensor, y: Tensor | None = None, net: nn.Module | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """(adversarial logits, class logits of an ACGAN discriminator or None) of ``net`` (by default
        the discriminator; a task with several judges names one of them)."""
        net = self.discriminator if net is None else net
        out = net(x) if y is None else net(x, y)
        return out if isinstance(out, tuple) else (out, None)

    def on_fit_start(self) -> None:
        # each rank draws its own latents and penalty noise; weights were initialised before this
        torch.manual_seed(mix_seed(self.seed, self.global_rank, 1))
        self._segment_start = time.monotonic()

    @property
    def wall_time_total(self) -> float:
        """Seconds of training over every segment of the run (resumes, requeues) until now."""
        return self.wall_time_before + time.monotonic() - self._segment_start

    def _restore_rng(self) -> None:
        """Put back this rank's RNG state saved with the checkpoint, right before the first resumed step.

        Doing it here rather than on load means nothing Lightning draws while starting the loop
        (dataloader seeds) shifts the stream: the resumed run draws what the straight run drew. Under
        DDP every rank gets its own saved state back; a checkpoint written by another number of
        processes has none per rank, so each rank starts a fresh stream from (seed, rank, g_step).
        """
        state, self._rng_state = self._rng_state, None
        world, rank = self.trainer.world_size, self.global_rank
        self._restore_per_rank_state(world, rank)
        per_rank = state.get("per_rank")
        if per_rank is not None and len(per_rank) == world:
            state = per_rank[rank]
        elif world > 1:
            saved = len(per_rank) if per_rank is not None else 1
            if rank == 0:
                log.warning(
                    "the checkpoint's random state is from %d process(es), this run has %d: each rank "
                    "continues with a fresh stream seeded by (seed, rank, step)",
                    saved,
                    world,
                )
            torch.manual_seed(mix_seed(self.seed, rank, self.g_step, 4))  # also seeds every CUDA device
            return
        torch.set_rng_state(state["cpu"])
        if state.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    def _restore_per_rank_state(self, world: int, rank: int) -> None:
        """Each rank's own per-rank state from the checkpoint (the state dict gave every rank rank 0's).
        From a checkpoint of another number of processes, rank 0 keeps what it saved and the other ranks
        start theirs afresh (``load_per_rank_state(None)``: e.g. ADA's accumulator at zero, so the sum
        over ranks does not count rank 0's share several times)."""
        saved, self._per_rank_state = self._per_rank_state, None
        modules = self.per_rank_modules()
        if saved is not None and len(saved) == world:
            for name, module in modules.items():
                if name in saved[rank]:
                    module.load_per_rank_state(saved[rank][name])
        elif rank != 0:
            for module in modules.values():
                module.load_per_rank_state(None)

    @torch.no_grad()
    def sample(self, z: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        """Generator output in eval mode (the task's fixed inputs by default); the mode is restored.

        Latents ``z`` (tasks that draw them) with labels ``y`` for conditional models (without them
        the task cycles the labels through the classes).
        """
        if z is None:
            return self._in_eval(lambda net: self.task.fixed_sample(net))
        inputs = self.task.latent_inputs(z.to(self.device), y)
        options = {} if self.w_truncation is None else {"truncation_psi": self.w_truncation}
        return self._in_eval(lambda net: net(*inputs, **options))

    def use_truncation(self, psi: float | None) -> float | None:
        """Sample with truncation ψ from now on (ganforge-sample, ganforge-eval): in W for a G with a
        mapping network (StyleGAN: toward ``w_avg``; :meth:`sample` passes ψ to G), returning None for
        the latents; otherwise ψ, the threshold the caller truncates the latents z with."""
        if psi is not None and truncation_space(self.generator) == "w":
            self.w_truncation = psi
            return None
        self.w_truncation = None
        return psi

    @torch.no_grad()
    def translate(self, source: Tensor, direction: str | None = None) -> Tensor:
        """G's output for source images (image-to-image tasks; ``direction`` AtoB or BtoA for two-way
        ones), in eval mode like :meth:`sample`."""
        source = source.to(self.device)
        return self._in_eval(lambda net: self.task.translate(net, source, direction))

    def _standing_setting(self, tricks: Tricks) -> bool:
        """Whether the EMA G gets standing statistics (``train.ema.standing_stats``), checked."""
        want, batches, size = tricks.ema_standing, tricks.ema_standing_batches, tricks.ema_standing_batch_size
        if want not in ("auto", True, False):
            raise ConfigError(f"train.ema.standing_stats must be auto, true or false, got {want!r}")
        for key, value in (("standing_batches", batches), ("standing_batch_size", size)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"train.ema.{key} must be a positive integer, got {value!r}")
        usable = self.ema_generator is not None and has_batch_norm(self.generator)
        if want is True and not usable:
            why = "train.ema.decay is null" if self.ema_generator is None else "G has no batch norm"
            raise ConfigError(f"train.ema.standing_stats=true needs an EMA generator with batch norm ({why})")
        if want is True and not self.task.draws_latents:
            raise ConfigError(
                f"train.ema.standing_stats=true needs task=generation (latents), not {self.task.name}"
            )
        return usable and want is not False and self.task.draws_latents

    @torch.no_grad()
    def refresh_ema_stats(self) -> None:
        """Standing batch-norm statistics of the EMA G (Brock et al. 2019) for the weights it has now:
        ``standing_batches`` batches of fresh latents (and labels), once per generator step.

        The draws come from a generator seeded by (seed, g_step) and the global RNG is forked, so the
        training stream (and exact resume) is untouched; every rank computes the same statistics.
        """
        if not self.ema_standing or self._ema_stats_step == self.g_step:
            return
        assert self.ema_generator is not None
        gen = torch.Generator().manual_seed(mix_seed(self.seed, self.g_step, 3))
        n = self.ema_standing_batch_size

        def batches() -> Any:
            for _ in range(self.ema_standing_batches):
                yield self.task.latent_batch(n, gen, self.device)

        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            standing_stats(self.ema_generator, batches())
        self._ema_stats_step = self.g_step

    def _in_eval(self, run: Any) -> Tensor:
        self.refresh_ema_stats()  # before any sample or metric of the EMA G (once per step)
        net = self.generator if self.ema_generator is None else self.ema_generator  # EMA weights when on
        with self.task.inference(net):  # eval mode, or the task's test protocol (pix2pix's)
            return run(net)

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
        self.loss.at_step(self.g_step)  # a scheduled penalty weight (R3GAN's γ): a function of the step
        if self.loss.top_k is not None:  # epochs of real items seen before this step, over all ranks
            items = batch[0].shape[0] * self.trainer.world_size
            self.loss.at_epoch(self.g_step * items // self.epoch_items)

        # how the phases' steps apply: alternating (D, then G against the updated D), simultaneous (both
        # from the same weights, one batch and one draw: ALI's and PacGAN's), extragradient (both, twice)
        if self.extragradient:
            stats = self._extragradient_step(batch, opt_g, opt_d, will_log)
        elif self.simultaneous:
            draw = self.task.draw(batch)
            stats = self._joint_update(batch, (draw, draw), opt_g, opt_d, will_log, extrapolating=False)
        else:
            stats = self._alternating_step(batch, opt_g, opt_d, will_log)
        d_loss, d_adv, g_loss, real_logits, fake_logits, d_norm, g_norm = stats
        if self.ema_generator is not None:
            if self.ema_kimg is not None:  # images per update over all ranks; those seen before it
                images = batch[0].shape[0] // self.n_critic * self.trainer.world_size
                beta = half_life_beta(self.ema_kimg, self.ema_rampup, images, self.g_step * images)
            else:
                beta = ema_beta(self.ema_decay, self.g_step + 1, self.ema_warmup)
            ema_update(self.ema_generator, self.generator, beta)

        schedules = self._schedules(opt_g, opt_d) if will_log else {}  # what this step used
        for sched in self.lr_schedulers() or []:
            sched.step()
        self.g_step += 1

        if will_log:
            if d_loss is None:  # task.adversarial=false: no D step to log
                scalars = {"train/g_loss": g_loss, "train/grad_norm_g": g_norm, **self._g_terms}
            else:
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
                    **self._judge_terms,
                }
            if self.ada is not None:
                scalars["train/ada_p"], scalars["train/ada_rt"] = self.ada.p, self.ada.rt
            scalars.update(self._reg_values)  # the latest regularization passes (they run every k steps)
            for penalty in self.g_penalties.values():
                if hasattr(penalty, "pl_mean"):
                    scalars["train/pl_mean"] = penalty.pl_mean
            self._log_scalars(scalars, schedules)

    def d_view(self, x: Tensor) -> Tensor:
        """What D sees of a batch: ADA, DiffAugment, then instance noise, when on (all differentiable)."""
        if self.ada is not None:
            x = self.ada(x)
        if self.augment is not None:
            x = self.augment(x)
        if self.instance_noise is not None:
            x = self.instance_noise(x, self.g_step)
        return x

    def _d_objective(
        self, part: tuple[Tensor, ...], draw: Draw, fake: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """D loss with penalties (and ACGAN's class loss), without them, and D's logits on the real and
        the fake batch. ``part``: this update's share of the loader batch; ``draw``: G's input (``fake``:
        G's output on it, if already computed). Each discriminator of the task (``task.judges``) adds
        its own terms; one D for most tasks."""
        real, real_cond = self.task.real(part)
        with torch.no_grad():
            fake = self.task.for_d(
                self.task.generate(self.generator, draw) if fake is None else fake.detach()
            )
        real, y_real = self.task.d_input(real, real_cond)
        fake, y_fake = self.task.d_input(fake, draw.cond)
        if self.loss.d_reg_every > 1:
            self._d_inputs = (real, fake, y_real, y_fake)  # what the lazy penalties judge (_regularize)
        d_adv = d_loss = None
        real_out, fake_out = [], []
        keys = self.task.judge_keys
        for k, (net, at) in enumerate(self.task.judges(self.discriminator, real.shape[0])):
            yr, yf = _part(y_real, at), _part(y_fake, at)
            real_view, fake_view = self.d_view(real[at]), self.d_view(fake[at])
            real_logits, real_classes = self.discriminate(real_view, yr, net)
            fake_logits, fake_classes = self.discriminate(fake_view, yf, net)
            real_out.append(real_logits)
            fake_out.append(fake_logits)
            adv = term = self.loss.d_loss(real_logits, fake_logits)
            if keys:  # several D's: each one's term besides their sum (CycleGAN's D_A and D_B)
                self._judge_terms[f"train/d_adv_{keys[k][0]}"] = adv.detach()
            if self.d_regularizers:  # terms on D's outputs (LeCam, CR, zCR) and what they may need
                regenerate = functools.partial(self._regenerate, draw)
                context = {
                    "judge": self._seeing(net), "real": real[at], "fake": fake[at], "y_real": yr,
                    "y_fake": yf, "inputs": draw.inputs, "regenerate": regenerate,
                }  # fmt: skip
            for name, regularizer in self.d_regularizers.items():
                value = regularizer(real_logits, fake_logits, **context)
                self._reg_values[f"train/d_{name}"] = value.detach()
                term = term + value
            if self.loss.has_penalties(False):  # a conditional D judges each batch with its labels (R2: G's)
                term = term + self._d_penalty(net, real[at], fake[at], yr, yf, lazy=False)
            if real_classes is not None:  # ACGAN: D also classifies the real batch
                pairs = [(real_classes, yr)]
                if self.loss.acgan_fake_classes:  # and the fakes by G's labels (Odena et al. 2017)
                    pairs.append((fake_classes, yf))
                cls = self.task.class_term(pairs)
                self._class_losses["train/d_cls"] = cls.value.detach()
                term = term + cls.weight * cls.value
            d_adv = adv if d_adv is None else d_adv + adv
            d_loss = term if d_loss is None else d_loss + term
        real_logits, fake_logits = _joined(real_out), _joined(fake_out)
        if self.ada is not None:  # r_t from D's verdict on the (augmented) reals; p moves every interval
            self.ada.observe(real_logits)
        return d_loss, d_adv, real_logits, fake_logits

    @torch.no_grad()
    def _regenerate(self, draw: Draw, inputs: tuple[Tensor, ...]) -> tuple[Tensor, Tensor | None]:
        """D's input for G's output on other ``inputs`` (with ``draw``'s condition), without gradient to
        G: what a D regularizer on moved latents judges (zCR)."""
        return self.task.d_input(self.task.generate(self.generator, Draw(inputs, draw.cond)), draw.cond)

    @property
    def augments(self) -> bool:
        """Whether D is shown something else than the images (ADA, DiffAugment, instance noise)."""
        return self.ada is not None or self.augment is not None or self.instance_noise is not None

    def _g_objective(self, part: tuple[Tensor, ...], draw: Draw, fake: Tensor | None = None) -> Tensor:
        """G loss: the adversarial term of each discriminator of the task, summed (the relativistic
        losses also see D's logits on the real part, with no gradient there), plus the task's own
        weighted terms (e.g. pix2pix's L1). ``fake``: G's output on ``draw`` if already computed."""
        if fake is None:
            fake = self.task.generate(self.generator, draw)
        terms = self.task.g_terms(self.generator, part, fake)
        if self.task.adversarial:
            fake_in, y_fake = self.task.d_input(fake, draw.cond)
            real_in = y_real = None
            if self.loss.needs_real_logits:
                real, real_cond = self.task.real(part)
                real_in, y_real = self.task.d_input(real, real_cond)
            g_adv = g_loss = None
            keys = self.task.judge_keys
            for k, (net, at) in enumerate(self.task.judges(self.discriminator, fake_in.shape[0])):
                yf = _part(y_fake, at)
                fake_logits, fake_classes = self.discriminate(self.d_view(fake_in[at]), yf, net)
                real_logits = None
                if real_in is not None:
                    with torch.no_grad():
                        real_logits = self.discriminate(self.d_view(real_in[at]), _part(y_real, at), net)[0]
                adv = self.loss.generator_loss(fake_logits, real_logits)
                if keys:  # G's term against each D (CycleGAN: G_BA's against D_A, G_AB's against D_B)
                    self._judge_terms[f"train/g_adv_{keys[k][1]}"] = adv.detach()
                term = adv
                if fake_classes is not None:  # ACGAN: G makes samples that D classifies as their labels
                    cls = self.task.class_term([(fake_classes, yf)])
                    self._class_losses["train/g_cls"] = cls.value.detach()
                    term = term + cls.weight * cls.value
                g_adv = adv if g_adv is None else g_adv + adv
                g_loss = term if g_loss is None else g_loss + term
        else:  # a regression baseline: the task's terms alone
            g_adv = g_loss = torch.zeros((), device=fake.device)
        if self.loss.g_penalties:  # G penalties of every update (every=1); the lazy ones: _regularize
            g_reg = self.loss.g_penalty(self.generator, draw.inputs)
            if g_reg is not None:
                g_loss = g_loss + g_reg
                self._reg_values["train/g_reg"] = g_reg.detach()
        for name, term in terms.items():
            g_loss = g_loss + term.weight * term.value
            self._g_terms[f"train/g_{name}"] = term.value.detach()
            for part_name, value in term.parts.items():  # e.g. CycleGAN's cycle term of each domain
                self._g_terms[f"train/g_{name}_{part_name}"] = value.detach()
        if terms:
            self._g_terms["train/g_adv"] = g_adv.detach()
        return g_loss

    def _extragradient_step(
        self, batch: tuple[Tensor, ...], opt_g: Any, opt_d: Any, will_log: bool
    ) -> tuple[Any, ...]:
        """Extragradient (Gidel et al. 2019): both networks extrapolate from their gradients at θ_t, then
        both update θ_t with the gradients at the extrapolated point. The same real batch and G inputs
        for both half-steps (Mishchenko et al. 2020), or with ``fresh_samples`` (Gidel et al.'s code) a
        fresh draw and the batch's second real batch for the update (the data module yields two)."""
        fresh = getattr(opt_g.optimizer, "fresh_samples", False)
        parts = tuple(zip(*(t.chunk(2) for t in batch), strict=True)) if fresh else (batch, batch)
        draws = None if fresh else (self.task.draw(batch), self.task.draw(batch))
        for extrapolating, part in zip((True, False), parts, strict=True):
            pair = draws or (self.task.draw(part), self.task.draw(part))
            out = self._joint_update(part, pair, opt_g, opt_d, will_log, extrapolating)
        return out

    def _phase(
        self,
        net_name: str,
        part: tuple[Tensor, ...],
        draw: Draw,
        opt: Any,
        will_log: bool,
        step: bool = True,
        fake: Tensor | None = None,
    ) -> tuple[tuple[Tensor, ...], Tensor | None]:
        """One network's update, the unit every variant is made of: the other network frozen, the
        objective (D's: loss, adversarial part, logits on real and fake; G's: loss), backward, the
        gradient norm, and the step unless deferred (``step=False``: applied by the caller, together
        with the other network's). ``fake``: G's output on ``draw`` when already computed (with its
        graph). Returns the objective's values and the gradient norm."""
        self.toggle_optimizer(opt)
        if net_name == "discriminator":
            out = self._d_objective(part, draw, fake)
            net, clip = self.discriminator, self.clip_grad_d
        else:
            out = (self._g_objective(part, draw, fake),)
            net, clip = self.generator, self.clip_grad_g
        norm = self._update(opt, out[0], net, clip, will_log, step=step)
        self.untoggle_optimizer(opt)
        if step and net is self.discriminator:
            self.loss.clip_weights(net)
        return out, norm

    def _alternating_step(self, batch: tuple[Tensor, ...], opt_g: Any, opt_d: Any, will_log: bool) -> tuple:
        """The phases of StyleGAN2-ADA's loop: ``n_critic`` times D main (each on its own part of the
        batch) and D regularization when due, then G main on the last part (what the relativistic
        losses compare with) and G regularization when due; each from a fresh draw."""
        if not self.task.adversarial:  # the regression baseline: G alone on the last part, D never runs
            part = tuple(t.chunk(self.n_critic)[-1] for t in batch)
            (g_loss,), g_norm = self._phase("generator", part, self.task.draw(part), opt_g, will_log)
            self._regularize_g(part, opt_g)
            return None, None, g_loss, None, None, None, g_norm
        shared = self.task.shares_forward and self.n_critic == 1
        for i, part in enumerate(zip(*(t.chunk(self.n_critic) for t in batch), strict=True)):
            draw = self.task.draw(part)
            # the translation tasks run G once for both updates, as their authors' code (one forward,
            # one batch-norm update, one dropout mask); D's update sees the output detached
            fake = self.task.generate(self.generator, draw) if shared else None
            (d_loss, d_adv, real_logits, fake_logits), d_norm = self._phase(
                "discriminator", part, draw, opt_d, will_log, fake=fake
            )
            d_update = self.g_step * self.n_critic + i
            if d_update % self.loss.d_reg_every == 0 and self.loss.has_penalties(True):
                self._regularize("discriminator", part, opt_d)
        g_draw = draw if shared else self.task.draw(part)
        (g_loss,), g_norm = self._phase("generator", part, g_draw, opt_g, will_log, fake=fake)
        self._regularize_g(part, opt_g)
        return d_loss, d_adv, g_loss, real_logits, fake_logits, d_norm, g_norm

    def _regularize_g(self, part: tuple[Tensor, ...], opt_g: Any) -> None:
        """G's lazy regularization pass, on the G steps 0, k, 2k, ... (G penalties with ``every`` k > 1)."""
        if self.g_step % self.loss.g_reg_every == 0 and self.loss.g_reg_every > 1:
            self._regularize("generator", part, opt_g)

    def _regularize(self, net_name: str, part: tuple[Tensor, ...], opt: Any) -> None:
        """Lazy regularization (Karras et al. 2020): a pass of its own for the penalties that run every k
        updates, weighted by k, stepping the network's own optimizer. D's penalties judge the batch of
        the D update just made (its reals and fakes, as StyleGAN2-ADA's Dreg phase); G's get a fresh draw."""
        self.toggle_optimizer(opt)
        if net_name == "discriminator":
            assert self._d_inputs is not None
            real, fake, y_real, y_fake = self._d_inputs
            value = sum(
                self._d_penalty(net, real[at], fake[at], _part(y_real, at), _part(y_fake, at), lazy=True)
                for net, at in self.task.judges(self.discriminator, real.shape[0])
            )
            net, clip, every, key = self.discriminator, self.clip_grad_d, self.loss.d_reg_every, "train/d_reg"
        else:
            value = self.loss.g_penalty(self.generator, self.task.draw(part).inputs, lazy=True)
            net, clip, every, key = self.generator, self.clip_grad_g, self.loss.g_reg_every, "train/g_reg"
        assert isinstance(value, Tensor)
        self._update(opt, value * every, net, clip, measure=False)
        self.untoggle_optimizer(opt)
        self._reg_values[key] = value.detach()

    def _d_penalty(
        self,
        net: nn.Module,
        real: Tensor,
        fake: Tensor,
        y_real: Tensor | None,
        y_fake: Tensor | None,
        lazy: bool,
    ) -> Tensor:
        """One discriminator's penalties (those of every update, or the ``lazy`` ones), differentiated
        w.r.t. the image before D's view of it (augmentation, noise)."""
        return self.loss.penalty(self._seeing(net), real, fake, y_real, y_fake, lazy=lazy)

    def _seeing(self, net: nn.Module) -> nn.Module:
        """``net`` as it judges an image: through D's view of it (augmentation, noise) when there is one,
        so penalties and regularizers act on the image before the view."""
        return net if not self.augments else Through(net, self.d_view)

    def _joint_update(
        self,
        part: tuple[Tensor, ...],
        draws: tuple[Draw, Draw],
        opt_g: Any,
        opt_d: Any,
        will_log: bool,
        extrapolating: bool,
    ) -> tuple[Any, ...]:
        """D's and G's gradients both at the current weights (D's with ``draws[0]``, G's with
        ``draws[1]``), then both optimizers step together (or extrapolate: extragradient's first half)."""
        (d_loss, d_adv, real_logits, fake_logits), d_norm = self._phase(
            "discriminator", part, draws[0], opt_d, will_log, step=False
        )
        (g_loss,), g_norm = self._phase("generator", part, draws[1], opt_g, will_log, step=False)
        scale = self._grad_scale()
        if extrapolating and scale is not None:  # fp16: extrapolate() reads the gradients directly
            scale_gradients(self.discriminator, 1.0 / scale)
            scale_gradients(self.generator, 1.0 / scale)
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
        scale = self._grad_scale()  # fp16: the gradients are scaled until opt.step() unscales them
        norm = None
        if measure or self.guard is not None or (clip and scale is not None):
            norm = grad_norm(net) if scale is None else grad_norm(net) / scale  # the true gradient's norm
        # fp16: a non-finite gradient of a finite loss is GradScaler's overflow signal (the step skips the
        # update and lowers the scale), so the guard judges the loss alone (a finite true norm still tells
        # it of a dead or exploded network)
        judged = norm if scale is None or norm is None else torch.nan_to_num(norm, nan=1.0, posinf=1.0)
        if self.guard is not None and not self.guard.accept(loss, judged, self._name(net), self.g_step + 1):
            opt.zero_grad(set_to_none=True)  # no gradient: a later extrapolate()/step() leaves net alone
            return norm
        if clip and scale is None:
            self.clip_gradients(opt, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        elif clip:  # the factor clipping the true gradient would apply (clip_grad_norm_'s), on the scaled one
            scale_gradients(net, (clip / (norm + 1e-6)).clamp(max=1.0))
        if step:
            opt.step()
        return norm

    def _grad_scale(self) -> Tensor | None:
        """With fp16 (``trainer.precision=16-mixed``) the loss scale the gradients carry after
        ``manual_backward`` (GradScaler's, a device tensor: no host sync); None otherwise. Lightning
        unscales only inside ``opt.step()``, and a second ``unscale_`` before it would be refused."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        return scaler._get_scale_async() if scaler is not None and scaler.is_enabled() else None

    def _name(self, net: nn.Module) -> str:
        return "generator" if net is self.generator else "discriminator"

    def _schedules(self, opt_g: Any, opt_d: Any) -> dict[str, float]:
        """The scheduled values the current step trains with: learning rates, Adam's β2 when scheduled,
        the penalties' weight when scheduled. Logged on the row of this step's losses (before the
        schedulers step), as Lightning's LearningRateMonitor logs the rate a batch used."""
        values = {"train/lr_g": opt_g.param_groups[0]["lr"], "train/lr_d": opt_d.param_groups[0]["lr"]}
        if any(getattr(sched, "schedules_beta2", False) for sched in self.lr_schedulers() or []):
            values["train/beta2"] = opt_d.param_groups[0]["betas"][1]
        if self.loss.penalty_weight is not None:  # set by loss.at_step(g_step) for this step
            values["train/gamma"] = float(self.loss.penalty_weight)
        if self.loss.top_k is not None:  # the fakes of G's last update its adversarial loss took
            values["train/top_k"] = self.loss.top_k_used
        return values

    def _log_scalars(self, scalars: dict[str, Tensor], schedules: dict[str, float]) -> None:
        """One host sync for all scalars, then every logger (and ``trainer.callback_metrics``) gets them
        against the generator step.

        Under DDP the scalars are first averaged over the ranks (one all_reduce of them stacked, at
        logging steps only), so the curves describe the whole global batch, not rank 0's share.
        """
        stacked = torch.stack([v.detach().float().to(self.device) for v in scalars.values()])
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stacked)  # sum, then the mean (gloo has no average)
            stacked = stacked / self.trainer.world_size
        metrics = dict(zip(scalars, stacked.tolist(), strict=True))
        metrics.update(schedules)
        metrics["trainer/g_step"] = self.g_step
        self.last_metrics.update(metrics)  # keeps the latest val/* next to the training scalars
        # Lightning's callbacks (EarlyStopping, ModelCheckpoint(monitor=...)) read trainer.callback_metrics;
        # the loggers get the values below, against the generator step rather than Lightning's step
        self.log_dict(metrics, logger=False, on_step=True, on_epoch=False, batch_size=1)
        if self.trainer.is_global_zero:
            for logger in list(self.loggers):
                with logger_fault(self.trainer, logger):
                    logger.log_metrics(metrics, step=self.g_step)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.g_step >= self.total_steps:
            self.trainer.should_stop = True

    # --- checkpoint extras ----------------------------------------------------------------------
    def per_rank_modules(self) -> dict[str, nn.Module]:
        """The parts (of the task, the tricks) whose state differs between DDP ranks and that declare it
        with ``per_rank_state()`` / ``load_per_rank_state(state)``: CycleGAN's image pools, ADA's
        accumulator. The state dict holds rank 0's; checkpoints hold every rank's besides."""
        return {name: m for name, m in self.named_modules() if m is not self and hasattr(m, "per_rank_state")}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Step, metrics, config and the RNG state; under DDP every rank's RNG state (indexed by rank, in
        ``rng["per_rank"]``) and every rank's per-rank state (``per_rank_state``), gathered here: every
        rank runs this hook when a checkpoint is saved."""
        rng: dict[str, Any] = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        extra: dict[str, Any] = {}
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            mine = {
                "rng": dict(rng),
                "state": {k: m.per_rank_state() for k, m in self.per_rank_modules().items()},
            }
            gathered: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, mine)
            rng["per_rank"] = [g["rng"] for g in gathered]
            extra["per_rank_state"] = [g["state"] for g in gathered]
        checkpoint["ganforge"] = {
            "g_step": self.g_step,
            "wall_time_s": self.wall_time_total,
            "rng": rng,
            "last_metrics": self.last_metrics,
            "config": self.run_config,
            **extra,
        }

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        for key in ("fixed_z", "fixed_y"):  # checkpoints from before the task held the grid inputs
            if prefix + key in state_dict:
                state_dict[f"{prefix}task.{key}"] = state_dict.pop(prefix + key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("ganforge", {})
        self.g_step = int(state.get("g_step", 0))
        self.wall_time_before = float(state.get("wall_time_s", 0.0))
        self.last_metrics = dict(state.get("last_metrics", {}))
        self._rng_state = state.get("rng")
        self._per_rank_state = state.get("per_rank_state")  # applied with the RNG state (_restore_rng)
        self.run_config = state.get("config") or self.run_config

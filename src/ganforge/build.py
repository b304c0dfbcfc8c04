"""Build a run from its config: the data module, the task, the nets and the GANModule (below the entry
points: ``ganforge-train`` builds with it, ``ganforge-eval``/``ganforge-sample`` rebuild checkpoints)."""

from __future__ import annotations

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ganforge.ada import AdaptiveAugment, check_ada
from ganforge.augment import DiffAugment, InstanceNoise
from ganforge.config import make, steps_per_batch
from ganforge.errors import ConfigError
from ganforge.memory import check_allocations
from ganforge.module import GANModule
from ganforge.nets.build import build_networks
from ganforge.settings import Optimizers, Runtime, Schedule, Tricks


def build(cfg: DictConfig) -> tuple[pl.LightningDataModule, GANModule]:
    """The data module and the GANModule that ``cfg`` describes."""
    per_batch = steps_per_batch(cfg)
    # extragradient with fresh samples (optim.fresh_samples) takes a real batch for each of its half-steps
    draws = cfg.train.n_critic * (2 if cfg.optim.get("fresh_samples", False) else 1)
    datamodule = make(cfg.data, draws_per_step=draws, steps_per_batch=per_batch)
    check_allocations(cfg, datamodule)  # a setting that sizes an allocation: refused before loading
    task = make(cfg.get("task") or {"_target_": "ganforge.tasks.generation.GenerationTask"})
    task.check(datamodule)  # data the task cannot use fails here, in one line
    datamodule.check()  # missing or empty data fails here, before anything is built
    generator, discriminator, _ = build_networks(cfg.model, datamodule, task)
    module = GANModule(
        generator,
        discriminator,
        make(cfg.loss),
        Optimizers(
            generator=make(cfg.optim.generator),
            discriminator=make(cfg.optim.discriminator),
            scheduler=make(cfg.optim.scheduler) if cfg.optim.get("scheduler") else None,
        ),
        Schedule(
            steps=cfg.train.steps,
            n_critic=cfg.train.n_critic,
            updates=cfg.train.get("updates", "alternating"),
            steps_per_batch=per_batch,
            log_every=cfg.train.log_every,
            clip_grad_g=cfg.train.clip_grad_g,
            clip_grad_d=cfg.train.clip_grad_d,
            num_fixed=cfg.train.num_fixed,
            seed=cfg.seed,
            epoch_items=epoch_items(cfg, datamodule),
        ),
        task,
        tricks(cfg, datamodule.data_shape, task.name),
        Runtime(
            compile=bool(cfg.model.get("compile", False)),
            compile_options={
                "mode": cfg.model.get("compile_mode"),
                "backend": cfg.model.get("compile_backend", "inductor"),
            },
            channels_last=bool(cfg.model.get("channels_last", False)),
        ),
    )
    task.bind(datamodule)  # after the module attached G to it: fixed examples, G's label frequencies
    check_penalties(module)
    for name, regularizer in module.d_regularizers.items():
        if getattr(regularizer, "needs_images", False) and len(datamodule.data_shape) != 3:
            raise ConfigError(
                f"loss.d_regularizers.{name} transforms images (flip, shift): the data's samples have shape "
                f"{tuple(datamodule.data_shape)}; use it on image data"
            )
    return datamodule, module


def epoch_items(cfg: DictConfig, datamodule: pl.LightningDataModule) -> int:
    """Training items per epoch, for what counts epochs (top-k training); 0 when not asked for. A data
    set drawn afresh every step has no epochs: one line."""
    if not cfg.loss.get("top_k"):
        return 0
    try:
        return int(datamodule.num_items())
    except (AttributeError, NotImplementedError, TypeError):
        raise ConfigError(
            f"loss.top_k decays per epoch of the data, but {type(datamodule).__name__} draws fresh samples "
            "every step: give it a finite training set (data.train_size on 2D mixtures) or loss.top_k=null"
        ) from None


def tricks(cfg: DictConfig, data_shape: tuple[int, ...], task: str = "generation") -> Tricks:
    """The training tricks of ``cfg.train`` (EMA, DiffAugment, ADA, instance noise)."""
    ema = cfg.train.get("ema") or {}
    noise = cfg.train.get("instance_noise") or {}
    policy = cfg.train.get("diffaugment")
    ada = cfg.train.get("ada") or {}
    adaptive = None
    if ada.get("enabled"):
        d_loss = str(OmegaConf.select(cfg, "loss.d_loss._target_", default="")).rsplit(".", 1)[-1]
        groups = list(ada.get("groups", ["blit", "color"]))
        boundary = check_ada(data_shape, task, d_loss, groups)
        adaptive = AdaptiveAugment(
            target=ada.get("target", 0.6),
            interval=ada.get("interval", 4),
            kimg=ada.get("kimg", 500),
            groups=groups,
            p=ada.get("p", 0.0),
            boundary=boundary,
        )
    return Tricks(
        ema_decay=ema.get("decay"),
        ema_warmup=bool(ema.get("warmup", True)),
        ema_kimg=ema.get("kimg"),
        ema_rampup=ema.get("rampup"),
        ema_standing=ema.get("standing_stats", "auto"),
        ema_standing_batches=ema.get("standing_batches", 16),
        ema_standing_batch_size=ema.get("standing_batch_size", 64),
        augment=DiffAugment(policy, data_shape) if policy else None,
        instance_noise=InstanceNoise(noise["std"], noise["anneal_steps"]) if noise.get("std") else None,
        ada=adaptive,
    )


def check_penalties(module: GANModule) -> None:
    """Input-gradient penalties are per-sample; batch norm in D mixes samples and breaks them."""
    if module.loss.penalties and any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.discriminator.modules()
    ):
        names = ", ".join(module.loss.penalties)
        raise ConfigError(
            f"the penalties ({names}) need a discriminator without batch norm (Gulrajani et al. 2017); "
            "set model.discriminator.norm=layer or none"
        )

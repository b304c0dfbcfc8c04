"""Standing batch-norm statistics of the EMA generator (Brock et al. 2019): hand-checked, RNG-neutral,
exact on resume, refused when they cannot apply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganforge.build import build
from ganforge.ema import standing_stats
from ganforge.errors import ConfigError
from helpers import assert_refused_before_training, compose_cfg, train_run
from test_resume import assert_same_training_state, final_state
from test_steps import bare_trainer

DCGAN_EMA = ("data=digits", "model=dcgan", "train.ema.decay=0.9", "train.ema.standing_batches=3")


def test_standing_stats_are_the_average_of_the_batch_statistics():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=0.3), nn.ReLU())
    net[1].running_mean.fill_(5.0)  # stale statistics that must not survive
    batches = [torch.randn(8, 3) * (i + 1) + i for i in range(3)]
    net.eval()
    standing_stats(net, [(x,) for x in batches])
    w, b = net[0].weight.detach(), net[0].bias.detach()
    pre = [x @ w.T + b for x in batches]  # BN's input, by hand
    mean = sum(h.sum(0) / 8 for h in pre) / 3
    var = sum(((h - h.sum(0) / 8) ** 2).sum(0) / 7 for h in pre) / 3  # unbiased, as BN keeps it
    torch.testing.assert_close(net[1].running_mean, mean)
    torch.testing.assert_close(net[1].running_var, var)
    assert net[1].momentum == 0.3 and not net.training  # momentum and mode restored


def test_ema_generator_statistics_are_those_of_its_own_activations(tmp_path):
    datamodule, module = build(compose_cfg(tmp_path, *DCGAN_EMA, "train.ema.standing_batch_size=16"))
    assert module.ema_standing  # auto: on, since the DCGAN generator has batch norm
    bare_trainer(max_steps=4).fit(module, datamodule=datamodule)
    ema = module.ema_generator
    norms = [m for m in ema.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    inputs: dict[nn.Module, list[torch.Tensor]] = {m: [] for m in norms}
    hooks = [m.register_forward_pre_hook(lambda m, args: inputs[m].append(args[0].detach())) for m in norms]
    rng = torch.get_rng_state()
    before = [m.running_mean.clone() for m in norms]
    module.sample()  # the fixed-noise grid: recomputes first
    module.sample()  # same step: no second recomputation
    for h in hooks:
        h.remove()
    assert torch.equal(torch.get_rng_state(), rng)  # the training stream is untouched
    for m, old in zip(norms, before, strict=True):
        acts = inputs[m][:3]  # the three standing batches (then the two eval-mode grids)
        assert len(inputs[m]) == 5 and all(len(a) == 16 for a in acts)
        dims = [0, 2, 3] if acts[0].dim() == 4 else [0]
        mean = torch.stack([a.mean(dims) for a in acts]).mean(0)
        var = torch.stack([a.var(dims, unbiased=True) for a in acts]).mean(0)
        torch.testing.assert_close(m.running_mean, mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(m.running_var, var, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(m.running_mean, old)  # not the live G's copied statistics


def test_standing_stats_off_keeps_the_live_statistics(tmp_path):
    datamodule, module = build(compose_cfg(tmp_path, *DCGAN_EMA, "train.ema.standing_stats=false"))
    bare_trainer(max_steps=2).fit(module, datamodule=datamodule)
    module.sample()
    for e, b in zip(module.ema_generator.buffers(), module.generator.buffers(), strict=True):
        assert torch.equal(e, b)


def test_resume_with_standing_stats_is_exact(tmp_path):
    args = [*DCGAN_EMA, "train.sample_every=2", "train.steps_per_batch=1", "data.batch_size=16"]
    straight, first, second = (tmp_path / name for name in ("straight", "first", "second"))
    train_run(straight, *args, "train.steps=6")
    train_run(first, *args, "train.steps=3")
    train_run(second, *args, "train.steps=6", f"ckpt_path={first}/checkpoints/last.ckpt")
    assert_same_training_state(final_state(straight), final_state(second))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.ema.standing_stats=true"], "train.ema.decay is null"),
        (
            ["model=mlp", "data=ring8", "train.ema.decay=0.9", "train.ema.standing_stats=true"],
            "no batch norm",
        ),
        (["train.ema.decay=0.9", "train.ema.standing_stats=maybe"], "auto, true or false"),
        (["train.ema.decay=0.9", "train.ema.standing_batches=0"], "standing_batches must be a positive"),
    ],
)
def test_impossible_standing_stats_are_config_errors(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        build(compose_cfg(tmp_path, *overrides))


def test_standing_stats_mistake_exits_2_before_training(tmp_path):
    assert_refused_before_training(
        tmp_path, "train.ema.standing_stats=true", message="needs an EMA generator with batch norm"
    )

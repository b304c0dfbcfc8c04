"""Training tricks: EMA of G, DiffAugment, instance noise, LR decay, and the zoo's optimizers."""

from __future__ import annotations

import csv
import math

import pytest
import pytorch_lightning as pl
import torch

from ganforge.augment import DiffAugment, InstanceNoise, cutout, translation
from ganforge.build import build
from ganforge.ema import ema_beta
from ganforge.errors import ConfigError
from ganforge.optim import Extragradient, OptimisticAdam, SubgradientDescent
from ganforge.settings import Optimizers, Tricks
from helpers import compose_cfg
from test_resume import assert_same_training_state, final_state
from test_steps import RecordingModule, bare_trainer


# --- EMA of the generator -------------------------------------------------------------------------
class ParamHistory(pl.Callback):
    """G's parameters after every training step (after the EMA update of that step)."""

    def __init__(self) -> None:
        self.history: list[list[torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.history.append([p.detach().double().clone() for p in pl_module.generator.parameters()])


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_is_the_hand_computed_average_of_the_parameter_history(tmp_path, warmup):
    cfg = compose_cfg(
        tmp_path,
        "data=ring8",
        "model=mlp",
        "train.ema.decay=0.8",
        f"train.ema.warmup={warmup}",
        "train.steps_per_batch=1",  # the recorder sees G after every step
    )
    datamodule, module = build(cfg)
    start = [p.detach().double().clone() for p in module.generator.parameters()]
    recorder = ParamHistory()
    trainer = bare_trainer(max_steps=2 * 6)
    trainer.callbacks.append(recorder)
    trainer.fit(module, datamodule=datamodule)
    assert len(recorder.history) == 6
    avg = start
    for t, params in enumerate(recorder.history, start=1):
        beta = min(0.8, (1 + t) / (10 + t)) if warmup else 0.8
        avg = [beta * a + (1 - beta) * p for a, p in zip(avg, params, strict=True)]
    for want, got in zip(avg, module.ema_generator.parameters(), strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
        assert not got.requires_grad
    assert not all(
        torch.equal(a, b)
        for a, b in zip(module.ema_generator.parameters(), module.generator.parameters(), strict=True)
    )


def test_ema_beta_warms_up():
    assert ema_beta(0.999, 1) == pytest.approx(2 / 11)
    assert ema_beta(0.999, 10**6) == 0.999
    assert ema_beta(0.999, 1, warmup=False) == 0.999


def test_samples_come_from_the_ema_generator(tmp_path):
    datamodule, module = build(compose_cfg(tmp_path, "data=ring8", "model=mlp", "train.ema.decay=0.5"))
    bare_trainer(max_steps=6).fit(module, datamodule=datamodule)
    z = torch.randn(5, module.task.z_dim)
    torch.testing.assert_close(module.sample(z), module.ema_generator(z))
    assert not torch.allclose(module.sample(z), module.generator(z))
    _, plain = build(compose_cfg(tmp_path, "data=ring8", "model=mlp"))
    assert plain.ema_generator is None


def test_resume_with_ema_is_exact(run):
    args = ["data=ring8", "model=mlp", "train.ema.decay=0.9", "train.n_critic=2"]
    _, straight = run("straight", *args, "train.steps=8")
    _, first = run("first", *args, "train.steps=4")
    _, second = run("second", *args, "train.steps=8", f"ckpt_path={first}/checkpoints/last.ckpt")
    a, b = final_state(straight), final_state(second)
    assert any(k.startswith("ema_generator.") for k in a["state_dict"])
    assert_same_training_state(a, b)


def test_bad_ema_decay_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="ema.decay"):
        build(compose_cfg(tmp_path, "data=ring8", "model=mlp", "train.ema.decay=1.0"))


# --- DiffAugment ----------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diffaugment_keeps_shapes_and_is_differentiable(policy):
    torch.manual_seed(0)
    x = torch.randn(6, 3, 16, 16, requires_grad=True)
    out = DiffAugment(policy)(x)
    assert out.shape == x.shape
    (grad,) = torch.autograd.grad((out * torch.randn_like(out)).sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert not torch.equal(out.detach(), x.detach())


def test_translation_shifts_by_whole_pixels_with_zero_fill():
    torch.manual_seed(1)
    x = torch.arange(1.0, 1 + 16 * 16).view(1, 1, 16, 16).repeat(8, 2, 1, 1)
    out = translation(x)  # shifts of at most 2 pixels
    for img, src in zip(out, x, strict=True):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(img, torch.roll(src, (-dy, -dx), (1, 2)) * shifted_mask(dy, dx))
        ]
        assert len(found) == 1


def shifted_mask(dy: int, dx: int, size: int = 16) -> torch.Tensor:
    """1 where the shifted image reads inside the source, 0 where it reads the zero padding."""
    rows = torch.arange(size) + dy
    cols = torch.arange(size) + dx
    inside = ((rows >= 0) & (rows < size)).view(-1, 1) & ((cols >= 0) & (cols < size)).view(1, -1)
    return inside.float()


def test_cutout_zeroes_one_square_of_half_the_size():
    torch.manual_seed(2)
    out = cutout(torch.ones(32, 3, 16, 16))
    zeros = (out[:, 0] == 0).sum(dim=(1, 2))
    assert (zeros <= 64).all() and (zeros > 0).all() and (zeros == 64).any()  # 8x8, clipped at the edges
    assert torch.equal(out[:, 0], out[:, 2])  # the same square in every channel


def test_diffaugment_rejects_unknown_policies_and_points():
    with pytest.raises(ConfigError, match="unknown"):
        DiffAugment("colour")
    with pytest.raises(ConfigError, match="image data"):
        DiffAugment(["color"], data_shape=(2,))


class ViewCounter(RecordingModule):
    """Counts the batches that go through ``d_view`` and whether they carry G's graph."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.views: list[bool] = []

    def d_view(self, x):
        self.views.append(x.requires_grad)
        return super().d_view(x)


def test_diffaugment_sees_real_and_fake_for_d_and_fake_for_g(tmp_path):
    cfg = compose_cfg(tmp_path, "model=mlp", "train.diffaugment=[color,translation,cutout]")
    datamodule, base = build(cfg)
    module = ViewCounter(
        base.generator,
        base.discriminator,
        base.loss,
        Optimizers(base.optimizer_g, base.optimizer_d),
        tricks=Tricks(augment=base.augment),
    )
    bare_trainer(max_steps=4).fit(module, datamodule=datamodule)
    # per step: D sees real and fake (no graph to G), G's fake goes through with its graph
    assert module.views == [False, False, True] * 2
    assert module.events == [{"discriminator"}, {"generator"}] * 2


def test_diffaugment_trains_through_the_config(run):
    summary, _ = run(
        "aug", "train.diffaugment=[color,translation,cutout]", "data.batch_size=8", "train.steps=2"
    )
    assert summary["status"] == "finished"


# --- instance noise -------------------------------------------------------------------------------
def test_instance_noise_std_anneals_linearly_to_zero():
    noise = InstanceNoise(std=0.2, anneal_steps=100)
    assert [noise.std_at(t) for t in (0, 25, 50, 100, 500)] == pytest.approx([0.2, 0.15, 0.1, 0.0, 0.0])
    x = torch.zeros(200, 3, 8, 8)
    assert noise(x, 0).std().item() == pytest.approx(0.2, rel=0.05)
    assert noise(x, 50).std().item() == pytest.approx(0.1, rel=0.05)
    assert noise(x, 100) is x


def test_instance_noise_trains_and_anneals_through_the_config(tmp_path):
    from ganforge.train import train

    cfg = compose_cfg(tmp_path, "data=ring8", "model=mlp", "train.instance_noise.std=0.5", "train.steps=4")
    datamodule, module = build(cfg)
    assert module.instance_noise.std_at(4) == 0.0  # anneal_steps defaults to train.steps
    assert train(cfg)["status"] == "finished"


# --- LR decay -------------------------------------------------------------------------------------
def test_linear_lr_decay_logs_the_rate_each_step_trained_with(tmp_path):
    from ganforge.train import train

    train(compose_cfg(tmp_path, "data=ring8", "model=mlp", "optim/scheduler=linear", "train.steps=4"))
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    lrs = [float(r["train/lr_g"]) for r in rows]
    assert lrs == pytest.approx([2e-4 * (1 - k / 4) for k in (0, 1, 2, 3)])  # 0 at train.steps, unused
    assert [float(r["train/lr_d"]) for r in rows] == pytest.approx(lrs)


# --- optimizers -----------------------------------------------------------------------------------
def test_subgradient_step_sizes_are_lr_over_sqrt_t():
    p = torch.zeros(3, requires_grad=True)
    opt = SubgradientDescent([p], lr=0.5)
    before = p.detach().clone()
    for t in range(1, 6):
        opt.zero_grad()
        p.sum().backward()  # gradient 1 in every coordinate
        opt.step()
        torch.testing.assert_close(before - p.detach(), torch.full((3,), 0.5 / math.sqrt(t)))
        before = p.detach().clone()


def bilinear(make, steps: int, extragradient: bool = False) -> float:
    """min_x max_y x·y from (1, 1), each player with its own optimizer; the final distance to (0, 0)."""
    x, y = torch.ones(1, requires_grad=True), torch.ones(1, requires_grad=True)
    opt_x, opt_y = make([x]), make([y])
    for _ in range(steps):
        for extrapolating in (True, False) if extragradient else (False,):
            opt_x.zero_grad()
            opt_y.zero_grad()
            (x * y).sum().backward(inputs=[x])  # simultaneous: both gradients at the same point
            (-(x * y)).sum().backward(inputs=[y])
            for opt in (opt_x, opt_y):
                opt.extrapolate() if extrapolating else opt.step()
    return math.hypot(x.item(), y.item())


def test_extragradient_converges_on_the_bilinear_game_where_gradient_descent_diverges():
    start = math.sqrt(2)
    assert bilinear(lambda p: torch.optim.SGD(p, lr=0.1), 500) > 10 * start
    assert bilinear(lambda p: Extragradient(p, lr=0.1), 2000, extragradient=True) < 1e-3


def test_optimistic_adam_converges_on_the_bilinear_game_where_gradient_descent_diverges():
    assert bilinear(lambda p: torch.optim.SGD(p, lr=0.1), 500) > 10 * math.sqrt(2)
    assert bilinear(lambda p: OptimisticAdam(p, lr=0.01, betas=(0.0, 0.9)), 3000) < 0.05


def test_optimistic_adam_first_step_is_twice_adams():
    """u_0 = 0, so the first update is 2·lr·m̂/(√v̂ + ε) = 2·lr·sign(g)."""
    p = torch.zeros(2, requires_grad=True)
    opt = OptimisticAdam([p], lr=0.1)
    (p * torch.tensor([3.0, -0.5])).sum().backward()
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([-0.2, 0.2]), rtol=1e-6, atol=1e-6)


def test_extragradient_step_without_extrapolation_is_sgd():
    p = torch.ones(2, requires_grad=True)
    opt = Extragradient([p], lr=0.1)
    (p * torch.tensor([1.0, 2.0])).sum().backward()
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([0.9, 0.8]))


@pytest.mark.parametrize("optim", ["subgradient", "extragradient", "optimistic_adam"])
def test_optimizers_train_through_the_config(run, optim):
    summary, out = run(optim, "data=ring8", "model=mlp", f"optim={optim}", "train.steps=3")
    assert summary["status"] == "finished" and summary["g_steps"] == 3
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 6  # one G and one D optimizer step per training step, also extragradient
    assert all(math.isfinite(v) for v in summary["last"].values())


def test_extragradient_evaluates_both_networks_twice_per_step(tmp_path):
    cfg = compose_cfg(tmp_path, "data=ring8", "model=mlp", "optim=extragradient")
    datamodule, base = build(cfg)
    module = RecordingModule(
        base.generator, base.discriminator, base.loss, Optimizers(base.optimizer_g, base.optimizer_d)
    )
    bare_trainer(max_steps=2 * 3).fit(module, datamodule=datamodule)
    assert module.events == [{"discriminator"}, {"generator"}] * 2 * 3


def test_extragradient_needs_both_networks_and_one_critic_step(tmp_path):
    with pytest.raises(ConfigError, match="n_critic=1"):
        build(compose_cfg(tmp_path, "data=ring8", "model=mlp", "optim=extragradient", "train.n_critic=2"))
    with pytest.raises(ConfigError, match="both networks"):
        build(
            compose_cfg(
                tmp_path,
                "data=ring8",
                "model=mlp",
                "optim=extragradient",
                "optim.generator._target_=torch.optim.SGD",
            )
        )


def test_restored_checkpoint_samples_with_the_ema_generator(run):
    from ganforge.restore import restore

    _, out = run("ema", "data=ring8", "model=mlp", "train.ema.decay=0.9", "train.steps=3")
    _, _, module, _ = restore(out / "checkpoints" / "last.ckpt")
    z = torch.randn(4, module.task.z_dim)
    torch.testing.assert_close(module.sample(z), module.ema_generator(z))
    assert not torch.allclose(module.sample(z), module.generator(z))


# --- gradient clipping per network ----------------------------------------------------------------
@pytest.mark.parametrize("net", ["g", "d"])
def test_gradient_clipping_bounds_each_networks_update(run, net):
    """SGD with lr 1: an update moves the weights by exactly the (clipped) gradient."""
    max_norm = 1e-3
    args = ["data=ring8", "model=mlp", "optim=sgd", "train.steps=1"]
    _, before = run("before", *args, "optim.lr_g=1e-12", "optim.lr_d=1e-12")  # the initial weights
    _, after = run("after", *args, "optim.lr_g=1.0", "optim.lr_d=1.0", f"train.clip_grad_{net}={max_norm}")
    prefix = {"g": "generator.", "d": "discriminator."}[net]
    a = torch.load(before / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    b = torch.load(after / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    step = torch.stack([(b[k] - a[k]).norm() for k in a if k.startswith(prefix)]).norm()
    assert 0 < step.item() <= max_norm * 1.001


def test_constant_then_linear_is_the_cyclegan_authors_linear_policy():
    """pytorch-CycleGAN-and-pix2pix ``get_scheduler('linear')``: LambdaLR with
    1 - max(0, epoch + epoch_count - n_epochs) / (n_epochs_decay + 1), epoch_count 1; one ganforge step
    per epoch. The last step trains with lr/(M + 1), not 0."""
    from ganforge.optim import ConstantThenLinear

    for total, fraction in ((10, 0.5), (7, 0.5), (6, 0.0), (5, 1.0)):
        n = int(round(fraction * total))
        m = total - n
        ours = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        ref = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        sched = ConstantThenLinear(ours, total_iters=total, constant_fraction=fraction)
        rule = torch.optim.lr_scheduler.LambdaLR(ref, lambda e, n=n, m=m: 1.0 - max(0, e + 1 - n) / (m + 1))
        used, want = [], []
        for _ in range(total):
            used.append(ours.param_groups[0]["lr"])
            want.append(ref.param_groups[0]["lr"])
            sched.step()
            rule.step()
        assert used == pytest.approx(want), (total, fraction)
        if m:
            assert used[-1] == pytest.approx(0.1 / (m + 1))

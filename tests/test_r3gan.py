"""The R3GAN recipe (Huang et al. 2025): RpGAN + R1 + R2 by hand, the cosine ramps of γ, lr and β2 by hand
and across a resume, the modernised ResNet (shapes, fix-up init, no norms, grouped convs), the presets."""

from __future__ import annotations

import csv
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.config import make
from ganforge.errors import ConfigError
from ganforge.losses import GANLoss, r1_penalty, r2_penalty, relativistic_d, relativistic_g
from ganforge.nets.r3gan import BiasedLeakyReLU, InvertedBottleneck, R3GANDiscriminator, R3GANGenerator
from ganforge.optim import CosineRamp, CosineRampScheduler
from helpers import compose_cfg
from test_resume import assert_same_training_state, final_state


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# --- RpGAN ------------------------------------------------------------------------------------
REAL, FAKE = [2.0, -1.0, 0.5], [1.0, 0.5, -2.0]


def test_pairing_loss_is_rpgan_by_hand():
    real, fake = torch.tensor(REAL), torch.tensor(FAKE)
    want_d = sum(softplus(-(r - f)) for r, f in zip(REAL, FAKE, strict=True)) / 3
    want_g = sum(softplus(-(f - r)) for r, f in zip(REAL, FAKE, strict=True)) / 3
    assert relativistic_d(real, fake, average=False).item() == pytest.approx(want_d)
    assert relativistic_g(fake, real, average=False).item() == pytest.approx(want_g)
    with pytest.raises(ValueError, match="one to one"):  # no silent broadcast of (B, 1) against (B,)
        relativistic_d(real[:, None], fake, average=False)


def test_loss_rpgan_is_the_pairing_loss_with_r1_and_r2(tmp_path):
    loss = make(compose_cfg(tmp_path, "loss=rpgan").loss)
    real, fake = torch.tensor(REAL), torch.tensor(FAKE)
    assert loss.d_loss(real, fake).item() == pytest.approx(relativistic_d(real, fake, average=False).item())
    assert loss.generator_loss(fake, real).item() == pytest.approx(relativistic_g(fake, real, False).item())
    assert [p.func for p in loss.penalties.values()] == [r1_penalty, r2_penalty]
    # a linear D(x) = <w, x>: ‖∇D‖² = ‖w‖² on real and fake, so R1 + R2 = 2 · γ/2 · ‖w‖² with γ = 0.05
    d = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        d.weight.copy_(torch.tensor([[1.0, 2.0, -2.0, 0.0]]))
    total = loss.penalty(d, torch.randn(5, 4), torch.randn(5, 4))
    assert total.item() == pytest.approx(0.05 * 9.0)


# --- schedules -----------------------------------------------------------------------------------
def test_cosine_ramp_by_hand():
    ramp = CosineRamp(0.05, 0.005, 100)
    assert ramp(0) == pytest.approx(0.05)
    assert ramp(50) == pytest.approx(0.0275)  # halfway: the mean
    assert ramp(25) == pytest.approx(0.05 - 0.045 * (1 - math.sqrt(0.5)) / 2)
    assert ramp(100) == ramp(1000) == pytest.approx(0.005)  # held after the ramp
    with pytest.raises(ConfigError, match="steps > 0"):
        CosineRamp(1.0, 0.0, 0)


def test_scheduler_ramps_lr_and_beta2_by_hand():
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(2))], lr=2e-4, betas=(0.0, 0.5))
    sched = CosineRampScheduler(opt, ramp_steps=4, lr_end_factor=0.25, beta2_start=0.9, beta2_end=0.99)
    seen = []
    for _ in range(6):
        seen.append((opt.param_groups[0]["lr"], opt.param_groups[0]["betas"]))
        opt.step()
        sched.step()
    lr = [2e-4, 2e-4 - 1.5e-4 * (1 - math.sqrt(0.5)) / 2, 1.25e-4, 2e-4 - 1.5e-4 * (1 + math.sqrt(0.5)) / 2]
    beta2 = [0.9, 0.9 + 0.09 * (1 - math.sqrt(0.5)) / 2, 0.945, 0.9 + 0.09 * (1 + math.sqrt(0.5)) / 2]
    for step, (got_lr, (beta1, got_beta2)) in enumerate(seen):
        assert beta1 == 0.0
        assert got_lr == pytest.approx((lr + [5e-5] * 2)[step])
        assert got_beta2 == pytest.approx((beta2 + [0.99] * 2)[step])


def test_scheduler_refuses_beta2_without_betas():
    sgd = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(ConfigError, match="has no betas"):
        CosineRampScheduler(sgd, ramp_steps=4, beta2_start=0.9, beta2_end=0.99)
    CosineRampScheduler(sgd, ramp_steps=4, lr_end_factor=0.5)  # the lr alone works for any optimizer


def test_penalty_schedule_sets_gamma_by_step():
    loss = GANLoss(
        relativistic_d,
        relativistic_g,
        {"r1": r1_penalty, "r2": r2_penalty},
        penalty_schedule=CosineRamp(0.05, 0.005, 10),
    )
    d = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        d.weight.copy_(torch.tensor([[3.0, 4.0]]))  # ‖∇D‖² = 25
    x = torch.randn(3, 2)
    for step, gamma in [(0, 0.05), (5, 0.0275), (10, 0.005), (20, 0.005)]:
        loss.at_step(step)
        assert loss.penalty_weight == pytest.approx(gamma)
        assert loss.penalty(d, x, x).item() == pytest.approx(2 * gamma / 2 * 25)
    with pytest.raises(ConfigError, match="there are none"):
        GANLoss(relativistic_d, relativistic_g, {}, penalty_schedule=CosineRamp(1.0, 0.1, 10))


RAMP = ["loss.penalty_schedule.steps=4", "optim.scheduler.ramp_steps=4", "metrics=[]"]


def test_digits_preset_trains_and_logs_the_schedules(run):
    summary, out = run("r3", "experiment=r3gan_digits", "train.steps=5", "train.log_every=1", *RAMP)
    assert summary["status"] == "finished" and summary["g_steps"] == 5
    with open(out / "metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row.get("train/gamma")]
    assert [int(float(r["trainer/g_step"])) for r in rows] == [1, 2, 3, 4, 5]
    for row in rows:  # each the value the logged step trained with: the ramp at the step before it
        t = int(float(row["trainer/g_step"])) - 1
        assert float(row["train/gamma"]) == pytest.approx(CosineRamp(0.05, 0.005, 4)(t))
        assert float(row["train/beta2"]) == pytest.approx(CosineRamp(0.9, 0.99, 4)(t))
        assert float(row["train/lr_g"]) == pytest.approx(2e-4 * CosineRamp(1.0, 0.25, 4)(t))
        assert math.isfinite(float(row["train/d_loss"])) and math.isfinite(float(row["train/g_loss"]))


def test_schedules_resume_exactly(run):
    args = ("experiment=r3gan_digits", "train.log_every=1", *RAMP)
    _, straight = run("straight", *args, "train.steps=6")
    _, first = run("first", *args, "train.steps=3")
    summary, second = run("second", *args, "train.steps=6", f"ckpt_path={first}/checkpoints/last.ckpt")
    assert summary["resumed_from"].endswith("last.ckpt")
    a, b = final_state(straight), final_state(second)
    assert_same_training_state(a, b)
    groups = [[g["lr"], g["betas"]] for s in (a, b) for g in [s["optimizer_states"][0]["param_groups"][0]]]
    assert groups[0] == groups[1] and groups[0][1][1] == pytest.approx(0.99)


# --- the nets ------------------------------------------------------------------------------------
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


@pytest.mark.parametrize("px", [16, 32, 64])
def test_nets_shapes_and_init(px):
    torch.manual_seed(0)
    g, d = R3GANGenerator((3, px, px), z_dim=8, width=32), R3GANDiscriminator((3, px, px), width=32)
    x = g(torch.randn(2, 8))
    assert x.shape == (2, 3, px, px) and d(x).shape == (2,)
    for net in (g, d):
        assert not any(isinstance(m, NORMS) for m in net.modules())
        assert not any("parametrizations" in name for name, _ in net.named_parameters())  # no spectral norm
        grouped = [m for m in net.modules() if isinstance(m, nn.Conv2d) and 1 < m.groups < m.in_channels]
        assert grouped and all(m.groups == 64 // 16 for m in grouped)  # 2 x 32 channels in groups of 16
        blocks = [m for m in net.modules() if isinstance(m, InvertedBottleneck)]
        assert len(blocks) == int(math.log2(px)) - 1  # one per stage, 4x4 to px
        for block in blocks:  # fix-up: each residual branch ends in a zero conv, the block is the identity
            assert torch.count_nonzero(block.project.weight) == 0
            h = torch.randn(2, block.project.out_channels, 4, 4)
            assert torch.equal(block(h), h)


def test_nets_conditional_and_width_errors():
    g = R3GANGenerator((1, 16, 16), z_dim=8, width=[32, 16, 16], num_classes=10, embed_dim=4)
    d = R3GANDiscriminator((1, 16, 16), width=[32, 16, 16], num_classes=10)
    y = torch.tensor([1, 7])
    assert d(g(torch.randn(2, 8), y), y).shape == (2,)
    with pytest.raises(ConfigError, match="group_width=24"):
        R3GANGenerator((1, 16, 16), width=32, group_width=24)
    with pytest.raises(ConfigError, match="one value per stage"):
        R3GANDiscriminator((1, 16, 16), width=[32, 32])


def test_cifar10_preset_builds_the_paper_nets(tmp_path):
    cfg = compose_cfg(tmp_path, "experiment=r3gan_cifar10")
    assert cfg.data.batch_size == 512 and cfg.optim.betas == [0.0, 0.9] and cfg.train.n_critic == 1
    loss = make(cfg.loss)
    assert loss.penalty_weight == pytest.approx(0.05) and set(loss.penalties) == {"r1", "r2"}
    g = make(cfg.model.generator, data_shape=(3, 32, 32), num_classes=10)
    grouped = {m.groups for m in g.modules() if isinstance(m, nn.Conv2d) and m.groups > 1}
    blocks = sum(isinstance(m, InvertedBottleneck) for m in g.modules())
    assert g.z_dim == 64 and g.widths == [768] * 4 and grouped == {96} and blocks == 8


# --- the nets against the authors' Networks.py (brownvc/R3GAN), recomputed from the weights -----------
def _branch(block: InvertedBottleneck, h: torch.Tensor) -> torch.Tensor:
    """R3GAN's ResidualBlock: x + conv3(act2(conv2(act1(conv1(x))))), act = leaky ReLU(· + bias), 0.2."""
    y = F.conv2d(h, block.expand.weight)
    y = F.leaky_relu(y + block.act1.bias.view(1, -1, 1, 1), 0.2)
    k = block.grouped.kernel_size[0]
    y = F.conv2d(y, block.grouped.weight, padding=k // 2, groups=block.grouped.groups)
    y = F.leaky_relu(y + block.act2.bias.view(1, -1, 1, 1), 0.2)
    return h + F.conv2d(y, block.project.weight)


def _reference_d(d: R3GANDiscriminator, x: torch.Tensor) -> torch.Tensor:
    """Discriminator.forward: ExtractionLayer (a 1x1 conv, nothing after it) → DiscriminatorStages (blocks,
    then a DownsampleLayer: resample, 1x1 conv where the width changes) → the last stage's blocks and
    DiscriminativeBasis (depthwise 4x4 conv, flattened straight into the linear layer). The resampler is
    ganforge's documented 2x2 average (the reference's is a [1, 3, 3, 1] low-pass filter)."""
    h = F.conv2d(x, d.input.weight)
    for s, stage in enumerate(d.stages):
        for block in stage:
            h = _branch(block, h)
        if s < len(d.stages) - 1:
            h = F.avg_pool2d(h, 2)
            if isinstance(d.transitions[s], nn.Conv2d):
                h = F.conv2d(h, d.transitions[s].weight)
    v = F.conv2d(h, d.basis.weight, groups=d.basis.groups).view(x.shape[0], -1)
    return v @ d.head.linear.weight.T[:, 0] + d.head.linear.bias


def _reference_g(g: R3GANGenerator, z: torch.Tensor) -> torch.Tensor:
    """Generator.forward: GenerativeBasis (basis · linear(z)) → blocks; per stage an UpsampleLayer (1x1 conv
    where the width changes, then resample: ganforge's bilinear) → blocks; AggregationLayer (1x1 conv)."""
    h = g.basis[None] * (z @ g.modulation.weight.T)[:, :, None, None]
    for s, stage in enumerate(g.stages):
        if s:
            if isinstance(g.transitions[s - 1], nn.Conv2d):
                h = F.conv2d(h, g.transitions[s - 1].weight)
            h = F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
        for block in stage:
            h = _branch(block, h)
    return F.conv2d(h, g.out.weight)


def _wake(net: nn.Module) -> None:
    """Non-zero last convs and activation biases: the residual branches do something."""
    torch.manual_seed(1)
    with torch.no_grad():
        for block in (m for m in net.modules() if isinstance(m, InvertedBottleneck)):
            block.project.weight.normal_(0.0, 0.3)
            block.act1.bias.normal_(0.0, 0.3)
            block.act2.bias.normal_(0.0, 0.3)


def test_discriminator_is_the_reference_discriminator():
    torch.manual_seed(0)
    d = R3GANDiscriminator((3, 16, 16), width=[32, 16, 16])  # a width change: a 1x1 transition conv
    _wake(d)
    with torch.no_grad():
        d.head.linear.bias.fill_(0.25)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(d(x), _reference_d(d, x), rtol=1e-5, atol=1e-5)


def test_discriminator_has_no_activation_after_the_input_conv_nor_before_the_head():
    torch.manual_seed(0)
    d = R3GANDiscriminator((3, 16, 16), width=32)
    _wake(d)
    acts = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, BiasedLeakyReLU)
    outside = [n for n, m in d.named_modules() if isinstance(m, acts) and not n.startswith("stages.")]
    assert outside == []  # the only activations are the two inside each residual branch
    seen: dict[str, torch.Tensor] = {}
    d.input.register_forward_hook(lambda _m, _i, out: seen.update(input=out))
    d.stages[0].register_forward_pre_hook(lambda _m, inputs: seen.update(stage=inputs[0]))
    d.basis.register_forward_hook(lambda _m, _i, out: seen.update(basis=out))
    d.head.register_forward_pre_hook(lambda _m, inputs: seen.update(head=inputs[0]))
    d(torch.randn(2, 3, 16, 16))
    assert torch.equal(seen["stage"], seen["input"])  # no function in between either
    assert torch.equal(seen["head"], seen["basis"].flatten(1))
    assert (seen["input"] < 0).any() and (seen["head"] < 0).any()


def test_generator_is_the_reference_generator():
    torch.manual_seed(0)
    g = R3GANGenerator((3, 16, 16), z_dim=8, width=[32, 16, 16])
    _wake(g)
    z = torch.randn(4, 8)
    with torch.no_grad():
        torch.testing.assert_close(g(z), _reference_g(g, z), rtol=1e-5, atol=1e-5)


def test_msr_init_of_the_input_conv_head_and_class_embedding():
    """MSRInitializer: N(0, gain²/fan_in), gain 1 for D's input conv and last linear (no activation follows
    either) and for G's class embedding (the reference maps the one-hot label linearly: fan-in = classes)."""
    torch.manual_seed(0)
    d = R3GANDiscriminator((3, 16, 16), width=[256, 256, 256], group_width=64)
    g = R3GANGenerator((1, 16, 16), z_dim=8, width=32, num_classes=10, embed_dim=64)
    assert d.input.weight.std().item() == pytest.approx(3**-0.5, rel=0.1)
    assert d.head.linear.weight.std().item() == pytest.approx(256**-0.5, rel=0.1)
    assert torch.count_nonzero(d.head.linear.bias) == 0
    assert g.embed.weight.std().item() == pytest.approx(10**-0.5, rel=0.1)

"""Adaptive discriminator augmentation (Karras et al. 2020): the p controller on hand-made logits, the
transforms (identity at p = 0, drawn for every sample at p = 1, differentiable), composition with the
nets, losses and tasks, and exact resume of p."""

from __future__ import annotations

import math

import pytest
import torch

from ganforge.ada import AdaptiveAugment, augment, color, rotate90, translate, xflip
from ganforge.build import build
from ganforge.errors import ConfigError
from helpers import assert_refused_before_training, compose_cfg
from test_resume import assert_same_training_state, final_state
from test_steps import bare_trainer

ADA = ("train.ada.enabled=true",)


# --- the controller ---------------------------------------------------------------------------------
def test_rt_and_p_follow_the_signs_of_the_real_logits_every_interval():
    # interval 2, kimg 0.01: each adjustment moves p by (images since the last one) / 10
    ada = AdaptiveAugment(target=0.6, interval=2, kimg=0.01, p=0.9)
    ada.observe(torch.tensor([[1.0], [-1.0], [2.0], [3.0]]))  # signs +1 -1 +1 +1
    assert ada.p.item() == pytest.approx(0.9) and ada.pending == 1  # not yet: every 2 D updates
    ada.observe(torch.tensor([[0.5], [0.5], [-2.0], [1.0]]))  # +1 +1 -1 +1
    assert ada.rt.item() == pytest.approx(4 / 8)  # 0.5 < 0.6: less overfitting than wanted, p goes down
    assert ada.p.item() == pytest.approx(0.9 - 8 / 10)
    assert ada.pending == 0 and torch.equal(ada.acc, torch.zeros(2))
    for _ in range(2):
        ada.observe(torch.ones(4, 1))
    assert ada.rt.item() == 1.0 and ada.p.item() == pytest.approx(0.1 + 0.8)
    for _ in range(2):
        ada.observe(torch.ones(4, 1))
    assert ada.p.item() == 1.0  # clamped
    for _ in range(4):
        ada.observe(-torch.ones(2))
    assert ada.rt.item() == -1.0 and ada.p.item() == pytest.approx(1.0 - 2 * 4 / 10)
    for _ in range(4):
        ada.observe(-torch.ones(2))
    assert ada.p.item() == 0.0  # clamped at 0


def test_the_paper_speed_takes_p_from_0_to_1_in_kimg_thousand_images():
    ada = AdaptiveAugment(target=0.6, interval=4, kimg=500)
    batch = 64
    steps = math.ceil(500_000 / (batch * 4)) * 4
    for _ in range(steps - 4):
        ada.observe(torch.ones(batch))
    assert 0.99 < ada.p.item() < 1.0
    for _ in range(4):
        ada.observe(torch.ones(batch))
    assert ada.p.item() == 1.0


def test_rt_takes_the_sign_about_the_loss_boundary_and_averages_patch_maps():
    ada = AdaptiveAugment(target=0.0, interval=1, kimg=1, boundary=0.5)  # lsgan: real 1, fake 0
    ada.observe(torch.tensor([0.7, 0.6, 0.4, 0.9]))
    assert ada.rt.item() == pytest.approx(0.5)
    ada.observe(torch.tensor([[[1.0, -1.0], [1.0, 1.0]], [[-1.0, -1.0], [-1.0, -1.0]]]) + 0.5)  # per image
    assert ada.rt.item() == pytest.approx((0.5 - 1.0) / 2)


def test_bad_settings_are_one_line():
    with pytest.raises(ConfigError, match=r"train\.ada\.groups: unknown \['geometric'\]"):
        AdaptiveAugment(groups=["blit", "geometric"])
    with pytest.raises(ConfigError, match="train.ada needs target and p in"):
        AdaptiveAugment(target=1.5)


# --- the transforms ---------------------------------------------------------------------------------
TRANSFORMS = {"xflip": xflip, "rotate90": rotate90, "translate": translate, "color": color}


@pytest.mark.parametrize("channels", [1, 3])
def test_at_p_0_the_pipeline_is_the_identity(channels):
    x = torch.randn(16, channels, 8, 8)
    for name, transform in TRANSFORMS.items():
        assert torch.equal(transform(x, 0.0), x), name
    assert torch.equal(augment(x, torch.tensor(0.0)), x)


def test_at_p_1_every_sample_draws_the_flip_and_the_rotation():
    torch.manual_seed(0)
    x = torch.randn(2000, 1, 6, 6)
    flipped = (xflip(x, 1.0) == x.flip(3)).flatten(1).all(1)
    assert 0.45 < flipped.float().mean().item() < 0.55  # i ~ U{0, 1}: half of them mirrored
    assert ((xflip(x, 0.5) == x.flip(3)).flatten(1).all(1)).float().mean().item() < 0.3  # p/2
    out = rotate90(x, 1.0)
    turns = torch.stack([(out == torch.rot90(x, k, dims=(2, 3))).flatten(1).all(1) for k in range(4)])
    assert turns.any(0).all()  # each sample is one of the four rotations
    share = turns.float().mean(1)
    assert torch.all((share > 0.2) & (share < 0.3)), share  # i ~ U{0, 3}


def test_translation_is_a_whole_pixel_shift_with_reflection_up_to_an_eighth():
    torch.manual_seed(0)
    x = torch.randn(500, 1, 16, 16)
    out = translate(x, 1.0)
    reflect = torch.nn.functional.pad(x, [2, 2, 2, 2], mode="reflect")  # shifts up to 16/8 = 2 px
    shifts = {
        (dy, dx): reflect[:, :, 2 - dy : 18 - dy, 2 - dx : 18 - dx]
        for dy in range(-2, 3)
        for dx in range(-2, 3)
    }
    matches = torch.stack([(out == s).flatten(1).all(1) for s in shifts.values()])
    assert matches.any(0).all()  # every sample is one of them
    unshifted = matches[list(shifts).index((0, 0))].float().mean().item()
    assert 0.03 < unshifted < 0.1  # |round(16 t)| = 0 for both axes: (1/4)² of the draws
    assert torch.equal(translate(torch.arange(4.0).view(1, 1, 1, 4), 0.0), torch.arange(4.0).view(1, 1, 1, 4))


def test_color_at_p_1_changes_every_sample_and_keeps_grey_grey():
    torch.manual_seed(0)
    x = torch.randn(64, 1, 4, 4, dtype=torch.float64)
    out = color(x, 1.0)
    assert not (out == x).flatten(1).all(1).any()
    # one channel: out = ±c·(x + b) per sample, an affine map of the pixel values with slope ±c
    slope = (out[:, 0, 0, 1] - out[:, 0, 0, 0]) / (x[:, 0, 0, 1] - x[:, 0, 0, 0])
    torch.testing.assert_close(
        out - slope.view(-1, 1, 1, 1) * x, (out - slope.view(-1, 1, 1, 1) * x)[..., :1, :1].expand_as(x)
    )
    grey = torch.randn(64, 1, 4, 4, dtype=torch.float64).expand(64, 3, 4, 4)  # r = g = b: on the luma axis
    out = color(grey, 1.0)
    torch.testing.assert_close(out[:, 0], out[:, 1], atol=1e-9, rtol=0)  # hue and saturation keep it grey
    torch.testing.assert_close(out[:, 0], out[:, 2], atol=1e-9, rtol=0)
    coloured = torch.randn(64, 3, 4, 4)
    out = color(coloured, 1.0)
    assert not torch.allclose(out[:, 0] - out[:, 1], (coloured[:, 0] - coloured[:, 1]))


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_each_transform_is_differentiable(name):
    transform = TRANSFORMS[name]

    def seeded(x: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(1)  # the same draws on every call of gradcheck
        return transform(x, 0.7)

    x = torch.randn(4, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(seeded, (x,), eps=1e-6, atol=1e-5)


# --- in training ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides",
    [
        ("model=dcgan",),
        ("model=resnet", "loss=hinge"),
        ("model=dcgan", "loss=lsgan", "loss/penalty=r1", "model.discriminator.norm=none"),
        ("experiment=digits_cgan_projection",),
        ("model=mlp",),
    ],
    ids=["dcgan", "resnet-hinge", "lsgan-r1", "cgan-projection", "mlp-images"],
)
def test_ada_composes_and_trains(tmp_path, overrides):
    cfg = compose_cfg(tmp_path, *overrides, *ADA, "train.ada.p=0.5", "train.ada.interval=1", "train.steps=1")
    datamodule, module = build(cfg)
    assert module.ada is not None and module.ada.p.item() == 0.5
    bare_trainer(max_steps=2).fit(module, datamodule=datamodule)
    # each D update (n_critic of them) sees 64 reals: r_t is a multiple of 2/64, never the target 0.6,
    # so p moved by ±64/500k n_critic times: an odd multiple of it when n_critic is odd
    moves = (module.ada.p.item() - 0.5) * 500_000 / 64
    assert module.g_step == 1 and moves == pytest.approx(round(moves), abs=1e-2)
    assert abs(round(moves)) <= cfg.train.n_critic and abs(round(moves)) % 2 == cfg.train.n_critic % 2 == 1
    assert "ada.p" in module.state_dict()


def test_d_sees_the_augmented_images_and_nothing_else_changes_at_p_0(tmp_path):
    _, module = build(compose_cfg(tmp_path, *ADA, "train.ada.p=1.0"))
    x = torch.rand(32, 1, 16, 16) * 2 - 1
    assert not (module.d_view(x) == x).flatten(1).all(1).any()  # colour moves every sample at p = 1
    module.ada.p.fill_(0.0)
    assert torch.equal(module.d_view(x), x)
    _, plain = build(compose_cfg(tmp_path))
    assert plain.ada is None and not any(k.startswith("ada.") for k in plain.state_dict())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("data=ring8", "model=mlp"), "train.ada augments images, but the data has shape (2,)"),
        (("loss=wgan_gp", "model.discriminator.norm=none"), "needs a D with a fixed real/fake boundary"),
        (("loss=relativistic",), "relativistic_d's D output is shift-invariant or unknown"),
        (("experiment=pix2pix_sr_digits",), "train.ada is for task=generation: with task=paired"),
    ],
    ids=["ring8", "wgan_gp", "relativistic", "paired"],
)
def test_where_ada_does_not_apply_it_is_refused(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build(compose_cfg(tmp_path, *overrides, *ADA))


def test_the_cli_refuses_ada_on_toy_data_in_one_line(tmp_path):
    assert_refused_before_training(
        tmp_path, "data=ring8", "model=mlp", *ADA, message="train.ada augments images"
    )


def test_p_is_logged_and_resume_continues_with_the_same_p(run):
    n = 5
    # p starts at 0.5 and moves by ±192/5000 every 3 D updates: 1 and 3 times (odd: p != 0.5); 3 does
    # not divide n, so the r_t accumulator is mid-way at the checkpoint and must be saved too
    args = (*ADA, "train.ada.p=0.5", "train.ada.kimg=5", "train.ada.interval=3", "data.limit=200")

    def state(out):
        ckpt = final_state(out)
        extra = ckpt["state_dict"].pop("ada._extra_state")
        return ckpt, extra

    summary, straight = run("straight", *args, f"train.steps={2 * n}")
    _, first = run("first", *args, f"train.steps={n}")
    run("second", *args, f"train.steps={2 * n}", f"ckpt_path={first}/checkpoints/last.ckpt")
    (a, extra_a), (b, extra_b) = state(straight), state(straight.parent / "second")
    assert a["state_dict"]["ada.p"].item() != 0.5  # p moved, and the resumed run has the same
    assert_same_training_state(a, b)
    assert extra_a["pending"] == extra_b["pending"] and torch.equal(extra_a["acc"], extra_b["acc"])
    assert summary["last"]["train/ada_p"] == pytest.approx(a["state_dict"]["ada.p"].item())
    assert "train/ada_rt" in summary["last"]
    assert final_state(first)["state_dict"]["ada.p"].item() != 0.5  # the checkpoint holds p


def test_digits_limit_is_a_fixed_subset(tmp_path):
    small, _ = build(compose_cfg(tmp_path, "data.limit=200", "seed=1"))
    again, _ = build(compose_cfg(tmp_path, "data.limit=200", "seed=2"))
    assert small.num_items() == 200 and torch.equal(small.items(range(200))[0], again.items(range(200))[0])
    with pytest.raises(ConfigError, match="data.limit must be a positive number of images"):
        build(compose_cfg(tmp_path, "data.limit=0"))

"""``model=stylegan2`` in the one loop: the presets compose and train, W truncation, the EMA half-life in
thousands of images, exact resume with ADA, lazy R1, path length and style mixing on."""

from __future__ import annotations

import json

import pytest
import torch

from ganforge.build import build
from ganforge.ema import half_life_beta
from helpers import compose_cfg, train_run
from test_resume import assert_same_training_state, final_state

SMALL = [  # CPU-sized nets and batches for any preset
    "model.z_dim=16",
    "model.generator.w_dim=16",
    "model.generator.channel_base=128",
    "model.generator.channel_max=16",
    "model.discriminator.mbstd_group_size=4",
    "data.batch_size=8",
    "train.steps=3",
    "train.log_every=1",
]


def test_digits_preset_logs_its_regularization_passes(tmp_path):
    """Every preset composes and trains two steps in tests/test_e2e.py; here the lazy passes' scalars."""
    summary = train_run(tmp_path, "experiment=stylegan2_digits", *SMALL)
    assert summary["status"] == "finished" and summary["g_steps"] == 3
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/d_reg", "train/g_reg", "train/pl_mean"} <= set(header)  # R1 and path length ran at step 0


def test_cifar10_preset_holds_the_authors_cifar_values(tmp_path):
    """StyleGAN2-ADA's train.py, cfg_specs['cifar'] and the lines after it (see the preset's header)."""
    cfg = compose_cfg(tmp_path, "experiment=stylegan2_cifar10")
    g, d = cfg.model.generator, cfg.model.discriminator
    assert cfg.data.batch_size == 64 and d.mbstd_group_size == 32
    assert (g.channel_base, g.channel_max, g.mapping_layers, g.style_mixing) == (32768, 512, 2, 0.0)
    assert d.architecture == "orig" and cfg.model.z_dim == 512 and g.w_dim == 512
    assert (cfg.optim.lr_g, cfg.optim.lr_d, list(cfg.optim.betas)) == (0.0025, 0.0025, [0.0, 0.99])
    assert (cfg.loss.penalties.r1.gamma, cfg.loss.penalties.r1.every) == (0.01, 16)
    assert not cfg.loss.get("g_penalties")  # pl_weight = 0
    assert (cfg.train.ema.kimg, cfg.train.ema.rampup) == (500, 0.05)
    assert cfg.train.ada.enabled and cfg.train.ada.target == 0.6
    assert cfg.train.steps * cfg.data.batch_size == 100_000_000  # kimg=100000
    assert compose_cfg(tmp_path, "experiment=stylegan2_cifar10_cond").model.conditional


def test_w_truncation_psi_one_is_the_plain_sample_and_zero_is_g_of_w_avg(tmp_path):
    cfg = compose_cfg(tmp_path, "experiment=stylegan2_digits", *SMALL, "model.generator.noise_mode=const")
    _, module = build(cfg)
    g = module.ema_generator  # what samples come from (the preset averages G)
    with torch.no_grad():
        g.mapping.w_avg.normal_()  # a mean w away from every sample's
    z = torch.randn(5, 16)
    plain = module.sample(z)
    assert module.use_truncation(1.0) is None  # in W: the latents stay as drawn
    torch.testing.assert_close(module.sample(z), plain)
    module.use_truncation(0.0)
    zero = module.sample(z)
    with torch.no_grad():
        g.eval()
        expected = g.synthesis(g.mapping.w_avg.view(1, 1, -1).expand(1, g.num_ws, -1))
    for image in zero:
        torch.testing.assert_close(image, expected[0])
    assert module.use_truncation(None) is None and module.w_truncation is None


def test_half_life_beta_is_stylegan2_adas_rule():
    # ema_nimg = 1000·kimg, limited by images seen × rampup; β = 0.5^(batch / ema_nimg)
    assert half_life_beta(10, None, 32, 0) == pytest.approx(0.5 ** (32 / 10_000))
    assert half_life_beta(10, 0.05, 32, 6400) == pytest.approx(0.5 ** (32 / 320))  # 6400·0.05 < 10,000
    assert half_life_beta(10, 0.05, 32, 10**9) == pytest.approx(0.5 ** (32 / 10_000))
    assert half_life_beta(10, 0.05, 32, 0) == 0.0  # the first update copies G


def test_ema_kimg_with_rampup_copies_g_at_the_first_step_then_averages(tmp_path):
    train_run(tmp_path, "experiment=stylegan2_digits", *SMALL, "train.steps=1")
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for key, value in state.items():
        if key.startswith("generator.") and value.is_floating_point():
            torch.testing.assert_close(state["ema_" + key], value)  # β = 0 at images seen = 0


def test_crash_then_auto_resume_is_exact_with_ada_lazy_r1_path_length_and_mixing(run):
    args = [
        "experiment=stylegan2_digits",
        *SMALL,
        "train.steps=8",
        "train.ckpt_every=3",
        "train.ada.enabled=true",
        "train.ada.interval=1",
        "loss.penalties.r1.every=2",
        "loss.g_penalties.path_length.every=3",
        "data.resolution=16",
    ]
    _, straight = run("straight", *args)
    with pytest.raises(RuntimeError, match="injected crash"):
        run("crashed", *args, "+callbacks.crash={_target_:helpers.CrashAt,step:7}")
    crashed = straight.parent / "crashed"
    assert json.loads((crashed / "summary.json").read_text())["status"] == "crashed"
    summary, out = run("crashed", *args, "ckpt_path=auto")
    assert summary["status"] == "finished" and summary["resumed_from"].endswith("last.ckpt")
    a, b = final_state(straight), final_state(out)
    assert_same_training_state(a, b)
    for key in ("generator.mapping.w_avg", "g_penalties.path_length.pl_mean", "ada.p"):
        assert key in a["state_dict"] and torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert float(a["state_dict"]["g_penalties.path_length.pl_mean"]) > 0


def test_sample_and_eval_record_w_truncation(tmp_path):
    from helpers import command

    train_run(tmp_path / "run", "experiment=stylegan2_digits", *SMALL, "train.steps=2")
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = tmp_path / "s.npz"
    result = command("sample", f"ckpt_path={ckpt}", "n=4", f"out={out}", "truncation=0.5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    import numpy as np

    arrays = np.load(out)
    assert float(arrays["truncation"]) == 0.5 and str(arrays["truncation_space"]) == "w"
    again = tmp_path / "again.npz"  # G's random noise too is drawn from the seed: the same images again
    result = command("sample", f"ckpt_path={ckpt}", "n=4", f"out={again}", "truncation=0.5", cwd=tmp_path)
    assert result.returncode == 0 and np.array_equal(np.load(again)["samples"], arrays["samples"])
    assert np.abs(arrays["z"]).max() > 0.5  # the latents are not truncated: ψ applies in W
    res = command(
        "eval", f"ckpt_path={ckpt}", "metrics=[fid]", "metrics.num_samples=200", "truncation=0.5",
        f"out={tmp_path}/e.json", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    import json

    result = json.loads((tmp_path / "e.json").read_text())
    assert "|truncation=w:0.5]" in result["protocol_tags"]["val/fid"]


@pytest.mark.parametrize(
    "extra",
    [
        ["trainer.precision=bf16-mixed", "model.generator.conv_clamp=256"],
        ["model.channels_last=true"],
        [
            "model.compile=true",
            "model.compile_backend=eager",
            "~loss.penalties.r1",
            "~loss.g_penalties.path_length",
        ],
        ["train.diffaugment=[color,translation,cutout]"],
    ],
    ids=["bf16_clamp", "channels_last", "compile", "diffaugment"],
)
def test_runs_with_mixed_precision_channels_last_and_compile(tmp_path, extra):
    summary = train_run(tmp_path, "experiment=stylegan2_digits", *SMALL, "train.steps=2", *extra)
    assert summary["status"] == "finished" and summary["g_steps"] == 2
    assert all(v == v for k, v in summary["last"].items() if k.startswith("train/"))  # finite, not NaN

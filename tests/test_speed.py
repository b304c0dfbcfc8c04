"""The speed switches: several generator steps per Lightning batch, fused optimizers, channels-last,
bf16 autocast and torch.compile; each must train exactly what the plain setting trains (or fail early)."""

from __future__ import annotations

import pytest
import torch

from ganforge.config import steps_per_batch
from ganforge.errors import ConfigError
from helpers import ROOT, compose_cfg
from test_resume import assert_same_training_state, final_state

TOY = ["data=ring8", "model=mlp", "data.batch_size=32"]
DIGITS = ["data=digits", "model=dcgan", "data.batch_size=16"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["train.sample_every=500", "train.ckpt_every=500"], 10),  # metrics every 500, health every 100
        (["train.sample_every=25"], 5),
        (["train.sample_every=7", "~callbacks.health"], 7),
        (["train.sample_every=3", "train.ckpt_every=4"], 1),
        (["train.sample_every=0", "train.ckpt_every=0", "metrics=[]", "~callbacks.health"], 10),
        (["train.steps_per_batch=4", "train.sample_every=8"], 4),
    ],
)
def test_steps_per_batch_divides_every_event_interval(tmp_path, overrides, expected):
    assert steps_per_batch(compose_cfg(tmp_path, *overrides)) == expected


def test_a_steps_per_batch_that_misses_an_event_is_a_config_error(tmp_path):
    cfg = compose_cfg(tmp_path, "train.steps_per_batch=8", "train.sample_every=500")
    with pytest.raises(ConfigError, match=r"train.steps_per_batch=8 must divide train.sample_every=500"):
        steps_per_batch(cfg)


@pytest.mark.parametrize("data", [TOY, DIGITS], ids=["toy_stream", "image_sampler"])
def test_steps_per_batch_trains_exactly_what_one_step_per_batch_trains(run, data):
    """The data of generator step k and the latent draws do not depend on the grouping."""
    _, one = run("one", *data, "train.steps=12", "train.steps_per_batch=1")
    _, four = run("four", *data, "train.steps=12", "train.steps_per_batch=4")
    assert_same_training_state(final_state(one), final_state(four))


def test_events_land_on_their_steps_with_several_steps_per_batch(run):
    summary, out = run("events", *TOY, "train.steps=30", "train.sample_every=10", "train.steps_per_batch=5")
    assert summary["g_steps"] == 30
    assert sorted(p.name for p in (out / "samples").glob("step_*.png")) == [
        "step_0000010.png",
        "step_0000020.png",
        "step_0000030.png",
    ]
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 30  # train.log_every=1: every generator step logged once


def test_a_budget_that_is_not_a_multiple_stops_inside_a_batch(run):
    summary, _ = run("partial", *TOY, "train.steps=13", "train.steps_per_batch=5")
    assert summary["g_steps"] == 13 and summary["status"] == "finished"


def optimizers(out):
    return final_state(out)["optimizer_states"]


def test_adam_is_fused_by_default_and_can_be_switched_off(run):
    _, fused = run("fused", *TOY, "train.steps=3")
    _, plain = run("plain", *TOY, "train.steps=3", "optim.fused=false")
    assert all(opt["param_groups"][0]["fused"] for opt in optimizers(fused))
    assert not any(opt["param_groups"][0]["fused"] for opt in optimizers(plain))


def test_channels_last_trains_like_contiguous_and_resumes_exactly(run):
    """Same math in another memory order (equal up to float rounding); resume is exact, with fused Adam
    states restored next to channels-last weights."""
    args = [*DIGITS, "model.channels_last=true", "train.ckpt_every=0"]
    _, straight = run("straight", *args, "train.steps=10")
    _, first = run("first", *args, "train.steps=5")
    _, second = run("second", *args, "train.steps=10", f"ckpt_path={first}/checkpoints/last.ckpt")
    assert_same_training_state(final_state(straight), final_state(second))
    _, contiguous = run("contiguous", *DIGITS, "train.steps=10")
    a, b = final_state(straight)["state_dict"], final_state(contiguous)["state_dict"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-4), key


def test_channels_last_puts_conv_weights_in_that_order(tmp_path):
    from ganforge.build import build

    cfg = compose_cfg(tmp_path, *DIGITS, "model.channels_last=true")
    datamodule, module = build(cfg)
    module.configure_model()
    convs = [p for p in module.parameters() if p.dim() == 4 and p.shape[1] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert not any(p.is_contiguous() for p in convs)


def test_bf16_autocast_trains_on_cpu(run):
    summary, _ = run("bf16", *DIGITS, "train.steps=6", "trainer.precision=bf16-mixed")
    assert summary["status"] == "finished"
    assert all(torch.isfinite(torch.tensor(summary["last"][k])) for k in ("train/d_loss", "train/g_loss"))


def test_compiled_nets_train_and_keep_their_checkpoint_names(run):
    summary, out = run("compiled", *TOY, "train.steps=6", "model.compile=true", "model.compile_backend=eager")
    assert summary["status"] == "finished"
    _, eager = run("eager", *TOY, "train.steps=6")
    assert final_state(out)["state_dict"].keys() == final_state(eager)["state_dict"].keys()
    a, b = final_state(out)["state_dict"], final_state(eager)["state_dict"]
    for key in a:  # the same math; compiled kernels may round differently
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_compile_with_a_gradient_penalty_is_a_config_error(run):
    with pytest.raises(ConfigError, match="does not support double backward"):
        run("gp", *TOY, "loss=wgan_gp", "model.compile=true")


def test_the_fast_run_recipe_composes(tmp_path):
    """README's "A fast run" command line: every key exists and reaches the data module and the module."""
    from ganforge.build import build

    recipe = "trainer=gpu model.channels_last=true model.compile=true data.num_workers=4 data.pin_memory=true"
    cfg = compose_cfg(tmp_path, *recipe.split())
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.accelerator == "gpu"
    datamodule, module = build(cfg)
    assert datamodule.num_workers == 4 and datamodule.pin_memory
    assert module.compile_nets and module.memory_format is torch.channels_last
    assert module.compile_options == {"mode": None, "backend": "inductor"}
    _, module = build(compose_cfg(tmp_path, "model.compile_mode=max-autotune", "model.compile_backend=eager"))
    assert module.compile_options == {"mode": "max-autotune", "backend": "eager"}
    readme = (ROOT / "README.md").read_text()
    assert f"ganforge-train {recipe}" in readme

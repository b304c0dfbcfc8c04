"""Resume exactness: N steps + resume + N steps ends with the same weights as 2N steps straight."""

from __future__ import annotations

import json

import pytest
import torch


def final_state(out):
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    return ckpt


def same(a, b) -> bool:
    """Equal tensors (bit for bit), or equal containers of them (a module's extra state)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(same, a, b))
    if torch.is_tensor(a):
        return torch.is_tensor(b) and torch.equal(a, b)
    return a == b


def assert_same_training_state(a: dict, b: dict) -> None:
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert same(value, b["state_dict"][key]), key
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for pid, state in opt_a["state"].items():
            for name, value in state.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b["state"][pid][name])), (
                    pid,
                    name,
                )
    assert a["global_step"] == b["global_step"]
    assert a["ganforge"]["g_step"] == b["ganforge"]["g_step"]
    assert torch.equal(a["ganforge"]["rng"]["cpu"], b["ganforge"]["rng"]["cpu"])


CASES = {
    "dcgan_digits": ["train.n_critic=1"],
    "mlp_ring8_ncritic3_sched": [
        "data=ring8",
        "model=mlp",
        "loss=wgan_gp",
        "train.n_critic=3",
        "+optim.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:3,gamma:0.5}",
    ],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_is_exact(run, case):
    n = 5
    args = CASES[case]
    _, straight = run("straight", *args, f"train.steps={2 * n}")
    _, first = run("first", *args, f"train.steps={n}")
    summary, second = run("second", *args, f"train.steps={2 * n}", f"ckpt_path={first}/checkpoints/last.ckpt")
    assert summary["g_steps"] == 2 * n
    assert summary["resumed_from"].endswith("last.ckpt")
    assert_same_training_state(final_state(straight), final_state(second))


def test_crash_then_auto_resume_is_exact(run):
    """A run that dies after a mid-run checkpoint continues with ckpt_path=auto in its own dir, exactly."""
    _, straight = run("straight", "train.steps=8", "train.ckpt_every=3")
    with pytest.raises(RuntimeError, match="injected crash"):
        run(
            "crashed",
            "train.steps=8",
            "train.ckpt_every=3",
            "+callbacks.crash={_target_:helpers.CrashAt,step:7}",
        )
    crashed = straight.parent / "crashed"
    assert torch.load(crashed / "checkpoints" / "last.ckpt", weights_only=False)["ganforge"]["g_step"] == 6
    assert json.loads((crashed / "summary.json").read_text())["status"] == "crashed"
    summary, out = run("crashed", "train.steps=8", "train.ckpt_every=3", "ckpt_path=auto")
    assert summary["status"] == "finished" and summary["resumed_from"].endswith("last.ckpt")
    assert_same_training_state(final_state(straight), final_state(out))


def test_auto_without_checkpoint_starts_fresh(run):
    summary, _ = run("fresh", "data=ring8", "model=mlp", "train.steps=2", "ckpt_path=auto")
    assert summary["resumed_from"] is None and summary["g_steps"] == 2


# --- resuming into another setup (issue 15) -------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "then", "differ"),
    [
        ((), ("model=resnet",), "model.generator._target_: 'ganforge.nets.dcgan."),
        (("data=ring8", "model=mlp"), ("model=mlp",), "data._target_: 'ganforge.data.toy.RingDataModule' in"),
    ],
)
def test_a_checkpoint_of_another_setup_is_refused_before_anything_starts(run, tmp_path, first, then, differ):
    from ganforge.errors import ConfigError

    _, out = run("first", *first, "train.steps=2")
    saved = (out / "checkpoints" / "last.ckpt").read_bytes()
    with pytest.raises(ConfigError) as info:
        run("other", *then, "train.steps=4", f"ckpt_path={out}/checkpoints/last.ckpt", "logger=[csv,wandb]")
    message = str(info.value)
    assert info.value.exit_code == 2 and "\n" not in message
    assert "was trained with another setup: " in message and differ in message, message
    assert not (tmp_path / "other").exists()  # no logger started, nothing written
    assert (out / "checkpoints" / "last.ckpt").read_bytes() == saved


def test_a_checkpoint_at_or_past_train_steps_is_refused(run):
    from ganforge.errors import ConfigError

    _, out = run("first", "data=ring8", "model=mlp", "train.steps=4")
    with pytest.raises(ConfigError, match=r"is at generator step 4 and train\.steps=2: nothing to train"):
        run("again", "data=ring8", "model=mlp", "train.steps=2", f"ckpt_path={out}/checkpoints/last.ckpt")


def test_new_learning_rates_apply_on_resume_and_are_logged(run, caplog):
    toy = ("data=ring8", "model=mlp", "train.ckpt_every=0")
    _, first = run("first", *toy, "train.steps=4")
    with caplog.at_level("WARNING", logger="ganforge.callbacks.checkpoint"):
        resume = f"ckpt_path={first}/checkpoints/last.ckpt"
        summary, out = run("second", *toy, "train.steps=8", "optim.lr_g=1e-4", resume)
    assert summary["last"]["train/lr_g"] == pytest.approx(1e-4)
    assert summary["last"]["train/lr_d"] == pytest.approx(2e-4)  # unchanged: the checkpoint's
    assert "resuming with optim.lr_g=0.0001 (the checkpoint was trained with 0.0002)" in caplog.text
    ckpt = final_state(out)
    assert [s["param_groups"][0]["lr"] for s in ckpt["optimizer_states"]] == pytest.approx([1e-4, 2e-4])
    assert ckpt["ganforge"]["config"]["optim"]["lr_g"] == pytest.approx(1e-4)  # a second resume: no rescale


def test_a_run_dir_that_holds_a_run_is_not_overwritten_silently(run):
    from ganforge.errors import ConfigError

    toy = ("data=ring8", "model=mlp", "train.steps=2")
    _, out = run("taken", *toy)
    saved = {p: p.read_bytes() for p in (out / "checkpoints" / "last.ckpt", out / "metrics.csv")}
    with pytest.raises(ConfigError, match=r"already holds a run \(checkpoints/last\.ckpt, summary\.json\): "):
        run("taken", *toy)
    assert all(p.read_bytes() == data for p, data in saved.items())  # nothing was touched
    summary, _ = run("taken", *toy, "train.overwrite=true")
    assert summary["status"] == "finished" and summary["resumed_from"] is None

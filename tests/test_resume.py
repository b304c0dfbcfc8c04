"""Resume exactness: N steps + resume + N steps ends with the same weights as 2N steps straight."""

from __future__ import annotations

import json

import pytest
import torch


def final_state(out):
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    return ckpt


def assert_same_training_state(a: dict, b: dict) -> None:
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
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

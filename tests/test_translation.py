"""Image-to-image translation (task=paired) through the real config tree: presets train, resume is
exact, the metrics and best.ckpt follow the held-out pairs, ganforge-eval agrees with training, and
ganforge-sample translates a folder of images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import assert_refused_before_training, command
from test_resume import assert_same_training_state

SR = ["experiment=pix2pix_sr_digits", "model.generator.width=8", "model.discriminator.width=8"]
METRICS = ["metrics=[psnr,ssim,l1,fid,class_acc]", "metrics.classifier.steps=50"]


def last(out: Path) -> dict:
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)


def test_paired_run_logs_its_terms_and_metrics_and_a_source_output_target_grid(run):
    summary, out = run("sr", *SR, *METRICS, "train.steps=4", "train.log_every=2", "metrics.every=2")
    assert summary["status"] == "finished" and summary["g_steps"] == 4
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    logged = [r for r in rows if r.get("train/g_l1")]  # the objective's value: test_tasks.py, by hand
    assert [int(r["trainer/g_step"]) for r in logged] == [2, 4]
    assert all(r.get("train/g_adv") for r in logged)
    val = [r for r in rows if r.get("val/psnr")]
    assert [int(r["trainer/g_step"]) for r in val] == [2, 4]
    for key in ("val/psnr", "val/ssim", "val/l1", "val/fid", "val/class_acc"):
        assert np.isfinite(float(val[-1][key])), key
    assert 0.0 <= float(val[-1]["val/class_acc"]) <= 1.0
    # best.ckpt follows val/fid by default (lower is better)
    fids = [float(r["val/fid"]) for r in val]
    assert summary["best"]["val/fid"] == min(fids)
    assert last(out)["ganforge"]["g_step"] == 4
    with Image.open(out / "samples" / "step_0000004.png") as img:  # 8 rows of source | output | target
        w, h = img.size
    assert h > 2 * w and w > 3 * 64  # three 64 px columns (16 px digits upscaled x4) plus padding


def test_best_checkpoint_can_follow_psnr(run):
    summary, out = run(
        "psnr", *SR, "metrics=[psnr,l1]", "metrics.monitor=val/psnr", "metrics.every=2", "train.steps=4"
    )
    best = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["ganforge"]["g_step"] == summary["best_step"]
    assert summary["best"]["val/psnr"] == max(
        best["ganforge"]["last_metrics"]["val/psnr"], summary["last"]["val/psnr"]
    )


@pytest.mark.parametrize(
    "extra",
    [[], ["data.degradation=inpaint", "train.n_critic=2", "loss=lsgan", "train.ema.decay=0.9"]],
    ids=["sr", "inpaint-ncritic2-lsgan-ema"],
)
def test_paired_resume_is_exact(run, extra):
    args = [*SR, "metrics=[]", *extra]
    _, straight = run("straight", *args, "train.steps=6")
    _, first = run("first", *args, "train.steps=3")
    summary, second = run("second", *args, "train.steps=6", f"ckpt_path={first}/checkpoints/last.ckpt")
    assert summary["g_steps"] == 6 and summary["resumed_from"].endswith("last.ckpt")
    assert_same_training_state(last(straight), last(second))


def test_l1_only_baseline_is_gradient_descent_on_100_l1(tmp_path):
    """task.adversarial=false: G's step is SGD on λ·mean|G(x) − y| (λ = 100, pix2pix's weight), written
    out here from the step's pair; no adversarial term reaches G."""
    import copy

    from ganforge.build import build
    from helpers import compose_cfg
    from test_steps import bare_trainer

    cfg = compose_cfg(
        tmp_path, *SR, "task.adversarial=false", "model.generator.dropout=0", "optim=sgd", "train.steps=1"
    )
    datamodule, module = build(cfg)
    g0 = copy.deepcopy(module.generator)
    n = cfg.data.batch_size  # a loader batch holds several generator steps: step 0's pairs come first
    source, target = (t[:n] for t in next(iter(datamodule.train_dataloader()))[:2])
    bare_trainer(max_steps=2).fit(module, datamodule=datamodule)
    loss = 100.0 * (g0(source) - target).abs().mean()
    grads = torch.autograd.grad(loss, list(g0.parameters()))
    lr = cfg.optim.lr_g
    for (name, p), p0, grad in zip(module.generator.named_parameters(), g0.parameters(), grads, strict=True):
        torch.testing.assert_close(p.detach(), p0.detach() - lr * grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["task=paired"], "task=paired needs paired data"),
        (["data=degrade"], "use task=paired"),
        ([*SR, "model.conditional=true"], "model.conditional=true is for task=generation"),
        ([*SR, "data.degradation=colorize"], "colorize needs RGB data"),
        ([*SR, "data.scale=3"], "scale"),
        ([*SR, "metrics=[kid]"], "for generation"),
        (["metrics=[psnr]"], "need paired data"),
    ],
)
def test_translation_mistakes_are_one_line(tmp_path, args, message):
    assert_refused_before_training(tmp_path, *args, message=message)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A short pix2pix super-resolution run with metrics at its end (best.ckpt = last step)."""
    from helpers import train_run

    out = tmp_path_factory.mktemp("p2p")
    train_run(out, *SR, *METRICS, "train.steps=4", "metrics.every=0")
    return out


def test_eval_on_a_translation_checkpoint_agrees_with_training(trained, tmp_path):
    summary = json.loads((trained / "summary.json").read_text())
    res = command(
        "eval",
        f"ckpt_path={trained}/checkpoints/best.ckpt",
        *METRICS,
        f"out={tmp_path}/eval.json",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["g_step"] == 4 and result["num_samples"] == result["held_out_pairs"] == 180
    for key in ("val/psnr", "val/ssim", "val/l1", "val/fid", "val/class_acc"):
        assert result["metrics"][key] == pytest.approx(summary["last"][key], rel=1e-6, abs=1e-9), key


def test_sample_translates_a_folder_with_the_same_names(trained, tmp_path):
    inputs = tmp_path / "lowres"
    rng = np.random.default_rng(0)
    names = ["a.png", "b.jpg", "sub/c.png"]
    for name in names:
        (inputs / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(inputs / name)
    res = command(
        "sample",
        f"ckpt_path={trained}/checkpoints/last.ckpt",
        f"input={inputs}",
        f"out={tmp_path}/hr",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    written = sorted(
        p.relative_to(tmp_path / "hr").as_posix() for p in (tmp_path / "hr").rglob("*") if p.is_file()
    )
    assert written == sorted(names)
    with Image.open(tmp_path / "hr" / "a.png") as img:
        assert img.size == (16, 16) and img.mode == "L"
    grid = command(
        "sample", f"ckpt_path={trained}/checkpoints/last.ckpt", "n=4", f"out={tmp_path}/g.png", cwd=tmp_path
    )
    assert grid.returncode == 0, grid.stderr[-2000:]
    with Image.open(tmp_path / "g.png") as img:
        assert img.size[1] > img.size[0]  # 4 rows of source | output | target
        from ganforge.callbacks.samples import grid_image

        plain = grid_image(torch.zeros(12, 1, 16, 16), 3)  # the same grid without its band of titles
        assert img.size[0] == plain.size[0] and img.size[1] > plain.size[1]
    bad = command(
        "sample", f"ckpt_path={trained}/checkpoints/last.ckpt", f"input={tmp_path}/none", cwd=tmp_path
    )
    assert bad.returncode == 2 and "no such folder or zip" in bad.stderr


# --- the test protocol: eval mode, or the pix2pix paper's ------------------------------------------
def bn_dropout_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.Dropout(0.5), torch.nn.Tanh()
    )


def test_paper_test_mode_uses_dropout_and_batch_statistics_and_leaves_training_alone():
    """test_mode=paper is the authors' test.py without --eval: the net in train mode (dropout on, batch
    norm normalising with the test batch's own mean and variance), here written out by hand; the running
    statistics, the net's mode and the global RNG stream are as they were before."""
    from ganforge.tasks.paired import PairedTask

    net = bn_dropout_net()
    net.train()
    with torch.no_grad():
        net[1].running_mean.fill_(3.0)  # statistics eval mode would use, far from the batch's
    x = torch.randn(5, 1, 4, 4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(123)
    stream = torch.get_rng_state()
    with torch.no_grad(), PairedTask(test_mode="paper", test_seed=7).inference(net):
        assert net.training
        out = net(x)
    assert torch.equal(torch.get_rng_state(), stream) and net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    # by hand: conv, normalise with the batch's biased variance, the seeded dropout mask, tanh
    with torch.no_grad():
        h = net[0](x)
        mean, var = h.mean(dim=(0, 2, 3), keepdim=True), h.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        h = (h - mean) / torch.sqrt(var + net[1].eps) * net[1].weight.view(1, -1, 1, 1) + net[1].bias.view(
            1, -1, 1, 1
        )
        torch.manual_seed(7)
        h = torch.nn.functional.dropout(h, 0.5, training=True)
        assert torch.allclose(out, torch.tanh(h), atol=1e-6)
    with torch.no_grad(), PairedTask(test_mode="eval").inference(net):
        assert not net.training
        evaluated = net(x)
    assert net.training and not torch.allclose(evaluated, out)


def test_paper_test_mode_is_in_every_protocol_and_eval_reproduces_it(run, tmp_path):
    from ganforge.eval import evaluate

    summary, out = run(
        "paper", *SR, "metrics=[psnr,l1]", "task.test_mode=paper", "train.steps=2", "metrics.every=2"
    )
    tags = summary["metrics"]["protocol_tags"]
    assert tags["val/psnr"].endswith("test_mode=paper]") and tags["val/l1"].endswith("test_mode=paper]")
    with pytest.raises(Exception, match="test_mode"):
        run("bad", *SR, "metrics=[]", "task.test_mode=train", "train.steps=1")
    from helpers import compose_cfg

    cfg = compose_cfg(tmp_path, *SR, "metrics=[psnr,l1]")  # the metrics settings training used
    result = evaluate(str(out / "checkpoints" / "last.ckpt"), cfg.metrics, cfg.paths.cache_dir)
    assert result["test_mode"] == "paper"
    assert result["metrics"]["val/psnr"] == pytest.approx(summary["last"]["val/psnr"], rel=1e-6)


class Identity:
    """The trivial baseline as a "generator": its answer is its input (bicubic upsampling, for SR)."""

    device = torch.device("cpu")

    def translate(self, source: torch.Tensor, direction: str | None = None) -> torch.Tensor:
        return source


@pytest.mark.slow
def test_pix2pix_beats_the_bicubic_input(run):
    """The benchmark's point: 800 steps of the preset (its nets and settings), and G's outputs are
    closer to the ground truth than the bicubic upsampling they start from (PSNR) and closer to the
    real images as a distribution (FID), both measured by the suite training uses on the same held-out
    pairs. Measured with one G forward per step (as the authors): PSNR 30.08 / 30.89 / 31.18 dB for
    seeds 42 / 1 / 2 against 29.16 for the input, FID 0.23 / 0.42 / 0.25 against 2.5 (with two forwards
    per step, seed 42: 30.7 dB; at 300 steps G is still below the input, 27.0 dB; the issue's 600-step
    batch-1 run before the U-Net fix scored 25.6 dB against 29.2 and nothing noticed). Those FIDs are
    on the default 500-step feature classifier; the test trains a 150-step one (held-out accuracy 0.94,
    15 s less): FID 0.17 against 2.97 at seed 42."""
    from ganforge.build import build
    from ganforge.metrics.suite import MetricSettings
    from ganforge.metrics.translation import TranslationSuite
    from ganforge.restore import restore
    from helpers import compose_cfg

    metrics = ["metrics=[psnr,fid]", "metrics.classifier.steps=150"]
    summary, out = run("sr", "experiment=pix2pix_sr_digits", *metrics, "train.steps=800", "metrics.every=0")
    cfg = compose_cfg(out, "experiment=pix2pix_sr_digits", *metrics)
    datamodule, _ = build(cfg)
    suite = TranslationSuite(MetricSettings.from_config(cfg.metrics), datamodule, cfg.paths.cache_dir)
    suite.prepare(torch.device("cpu"))
    bicubic = suite.measure(Identity(), torch.device("cpu"))
    _, _, module, _ = restore(out / "checkpoints" / "last.ckpt")
    trained = suite.measure(module, torch.device("cpu"))
    assert trained["val/psnr"] == pytest.approx(summary["last"]["val/psnr"], rel=1e-6)  # the same suite
    assert trained["val/psnr"] > bicubic["val/psnr"] + 0.5, (trained, bicubic)
    assert trained["val/fid"] < 0.5 * bicubic["val/fid"], (trained, bicubic)

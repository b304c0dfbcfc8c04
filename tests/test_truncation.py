"""The truncation trick (Brock et al. 2019): the truncated draw's bounds and moments, ψ=None as the
plain draw, ``truncation=`` on ganforge-sample and ganforge-eval, and the refusals."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from scipy.stats import kstest, truncnorm

from ganforge.errors import ConfigError
from ganforge.latents import check_truncation, truncate, truncated_normal, truncation_value
from ganforge.metrics.suite import LatentSequence
from ganforge.sample import grid_inputs
from helpers import train_run


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("psi", [1e-3, 0.25, 0.7, 1.0, 2.0, 8.0])
def test_every_component_lies_within_psi(psi):
    z = truncated_normal(50_000, 8, psi, gen())
    assert z.dtype == torch.float32 and z.shape == (50_000, 8)
    assert bool(z.abs().le(psi).all()) and bool(torch.isfinite(z).all())
    assert z.abs().max() > 0.99 * min(psi, 4.0)  # it reaches the threshold (or the normal's range)


def test_moments_match_the_truncated_normal_by_hand():
    """ψ = 1, by hand: Z = Φ(1) − Φ(−1) = 0.682689, φ(1) = 0.241971, so Var = 1 − 2ψφ(ψ)/Z = 0.291125
    and E|z| = 2(φ(0) − φ(ψ))/Z = 2(0.398942 − 0.241971)/0.682689 = 0.459862; the mean is 0."""
    z = truncated_normal(100_000, 10, 1.0, gen(1)).double()  # 10^6 draws: standard errors ~ 3e-4
    assert abs(z.mean().item()) < 2e-3
    assert z.var().item() == pytest.approx(0.291125, abs=2e-3)
    assert z.abs().mean().item() == pytest.approx(0.459862, abs=2e-3)


@pytest.mark.parametrize("psi", [0.1, 0.5, 1.5, 3.0])
def test_distribution_agrees_with_scipys_truncnorm(psi):
    """An independent implementation: a Kolmogorov-Smirnov test against scipy's truncated normal."""
    z = truncated_normal(20_000, 1, psi, gen(2)).double().flatten().numpy()
    assert kstest(z, truncnorm(-psi, psi).cdf).pvalue > 1e-3
    assert z.var() == pytest.approx(truncnorm.var(-psi, psi), rel=0.05)


def test_none_is_the_plain_draw_bit_for_bit():
    assert torch.equal(truncated_normal(37, 5, None, gen(3)), torch.randn(37, 5, generator=gen(3)))
    z = torch.randn(4, 3)
    assert truncate(z, None) is z
    g = gen(4)  # the latent of the first sample grid row, then the labels after it
    z_grid, y, columns, rows = grid_inputs(20, 6, 10, 4)
    assert torch.equal(z_grid[:columns], torch.randn(columns, 6, generator=g)) and rows == list(range(10))
    assert torch.equal(
        LatentSequence(3, 5, truncation=None).rows(0, 1500)[0], LatentSequence(3, 5).rows(0, 1500)[0]
    )


def test_truncation_keeps_signs_order_and_the_labels_of_a_draw():
    """The inverse-CDF map is monotone and uses the plain draw's random stream: a truncated latent is
    its untruncated one moved towards 0, and labels drawn after it are unchanged."""
    z = torch.randn(2000, 4, generator=gen(5))
    t = truncate(z, 0.5)
    assert torch.equal(t.sign(), z.sign())
    order = z[:, 0].argsort()
    assert bool((t[order, 0].diff() >= 0).all()) and bool((t.abs() <= z.abs()).all())
    assert torch.allclose(truncate(z, 50.0), z, atol=1e-6)  # a far threshold changes nothing

    def labels(n: int, g: torch.Generator) -> torch.Tensor:
        return torch.randint(0, 10, (n,), generator=g)

    plain_z, plain_y = LatentSequence(7, 3, labels).rows(0, 1200)
    trunc_z, trunc_y = LatentSequence(7, 3, labels, truncation=0.5).rows(0, 1200)
    assert torch.equal(plain_y, trunc_y) and torch.equal(trunc_z, truncate(plain_z, 0.5))
    assert bool(trunc_z.abs().le(0.5).all())


@pytest.mark.parametrize("psi", [0, -0.5, "abc", True, math.inf, float("nan")])
def test_bad_thresholds_are_refused(psi):
    with pytest.raises(ConfigError, match=r"give a positive threshold ψ"):
        truncation_value(psi)


def test_values_and_tasks_that_are_accepted_or_refused():
    assert truncation_value(None) is None and truncation_value(1) == 1.0 and truncation_value(0.7) == 0.7
    check_truncation(0.7, "generation")
    check_truncation(None, "paired")
    with pytest.raises(ConfigError, match="only task=generation draws Gaussian latents"):
        check_truncation(0.7, "unpaired")


def cli(name: str, *args: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """``ganforge-<name> *args`` in this process (the real Hydra parsing and entry point, without a
    second interpreter's start-up): (exit code, stdout, the ``ganforge-<name>: error:`` lines)."""
    main = importlib.import_module(f"ganforge.{name}").main
    monkeypatch.setattr(sys, "argv", [f"ganforge-{name}", *args])
    capsys.readouterr()
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        GlobalHydra.instance().clear()
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.startswith(f"ganforge-{name}: error:")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 3-step digits DCGAN checkpoint."""
    out = tmp_path_factory.mktemp("trunc")
    train_run(out, "train.steps=3")
    return out / "checkpoints" / "last.ckpt"


def test_sample_with_truncation(trained, tmp_path, capsys, monkeypatch):
    args = (f"ckpt_path={trained}", "n=6", "format=npz", "seed=3")
    run = {"capsys": capsys, "monkeypatch": monkeypatch}
    code, _, errors = cli("sample", *args, "truncation=0.5", f"out={tmp_path}/t.npz", **run)
    assert code == 0 and not errors, errors
    assert cli("sample", *args, f"out={tmp_path}/p.npz", **run)[0] == 0
    t, p = np.load(tmp_path / "t.npz"), np.load(tmp_path / "p.npz")
    assert np.abs(t["z"]).max() <= 0.5 and float(t["truncation"]) == 0.5 and "truncation" not in p
    assert np.array_equal(t["z"], truncate(torch.from_numpy(p["z"]), 0.5).numpy())  # the seed's, truncated
    assert not np.array_equal(t["samples"], p["samples"])
    code, _, errors = cli(
        "sample", f"ckpt_path={trained}", "n=4", "truncation=1", f"out={tmp_path}/g.png", **run
    )
    assert code == 0 and (tmp_path / "g.png").is_file(), errors


def test_eval_reports_the_truncation_it_used(trained, tmp_path, capsys, monkeypatch):
    args = (
        f"ckpt_path={trained}",
        "metrics=[fid,prc]",
        "metrics.num_samples=300",
        "metrics.classifier.steps=50",
    )
    run = {"capsys": capsys, "monkeypatch": monkeypatch}
    code, out, errors = cli("eval", *args, "truncation=0.5", f"out={tmp_path}/t.json", **run)
    assert code == 0 and not errors, errors
    assert "truncation ψ=0.5" in out
    assert cli("eval", *args, f"out={tmp_path}/p.json", **run)[0] == 0
    t, p = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("t", "p"))
    assert t["truncation"] == 0.5 and p["truncation"] is None
    assert t["protocol"]["truncation"] == 0.5 and p["protocol"]["truncation"] is None  # how it was measured
    assert t["protocol_tags"]["val/fid"].endswith("|truncation=0.5]")
    assert t["metrics"]["val/fid"] > 0 and t["metrics"]["val/fid"] != p["metrics"]["val/fid"]
    assert t["num_samples"] == p["num_samples"] == 300 and 0 <= t["metrics"]["val/precision"] <= 1


@pytest.mark.parametrize("name", ["sample", "eval"])
@pytest.mark.parametrize("psi", ["0", "-1", "abc"])
def test_a_bad_threshold_is_one_line_before_the_checkpoint_is_read(tmp_path, name, psi, capsys, monkeypatch):
    args = ("ckpt_path=no_such.ckpt", f"truncation={psi}", f"out={tmp_path}/o.json")
    code, _, errors = cli(name, *args, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and len(errors) == 1 and f"truncation={psi}: give a positive threshold" in errors[0]


@pytest.fixture(scope="module")
def translator(tmp_path_factory) -> Path:
    """A 1-step pix2pix checkpoint: G's input is an image, not a Gaussian latent."""
    out = tmp_path_factory.mktemp("p2p")
    small = ["model.generator.width=8", "model.discriminator.width=8", "train.steps=1", "metrics=[psnr]"]
    train_run(out, "experiment=pix2pix_sr_digits", *small)
    return out / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("name", ["sample", "eval"])
def test_truncation_of_a_translation_checkpoint_is_refused(translator, tmp_path, name, capsys, monkeypatch):
    args = (f"ckpt_path={translator}", "truncation=0.7", f"out={tmp_path}/o.png")
    extra = ["metrics=[psnr]"] if name == "eval" else []
    code, _, errors = cli(name, *args, *extra, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and len(errors) == 1 and "only task=generation draws Gaussian latents" in errors[0]
    assert "task=paired" in errors[0] and not (tmp_path / "o.png").exists()


def test_truncation_with_input_images_is_refused(tmp_path, capsys, monkeypatch):
    args = ("ckpt_path=x.ckpt", f"input={tmp_path}", "truncation=0.7", f"out={tmp_path}/o")
    code, _, errors = cli("sample", *args, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and len(errors) == 1 and "truncation=0.7: input= translates images" in errors[0]

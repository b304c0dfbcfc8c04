"""Density and coverage (Naeem et al. 2020) against the paper's closed forms and a hand-made example."""

from __future__ import annotations

import pytest
import torch

from ganforge.directions import better
from ganforge.metrics.density_coverage import density_coverage
from helpers import train_run


def test_identical_gaussians_give_density_one_and_the_papers_coverage():
    """Fakes from the real distribution: E[density] = 1 and E[coverage] = 1 − Π_{i=1..k} (N−i)/(M+N−i),
    about 1 − (1/2)^k for M = N (the paper's section 4, for any distribution)."""
    gen = torch.Generator().manual_seed(0)
    n, k = 4000, 5
    real, fake = torch.randn(n, 16, generator=gen), torch.randn(n, 16, generator=gen)
    out = density_coverage(real, fake, k)
    expected = 1.0
    for i in range(1, k + 1):
        expected *= (n - i) / (2 * n - i)
    assert out["density"] == pytest.approx(1.0, abs=0.03)
    assert out["coverage"] == pytest.approx(1.0 - expected, abs=0.02)
    assert 1.0 - expected == pytest.approx(1.0 - 0.5**k, abs=1e-3)


def test_a_hand_made_example():
    # reals on a line at 0, 1, 3; k = 1: radii 1 (0 → 1), 1 (1 → 0), 2 (3 → 1)
    real = torch.tensor([[0.0], [1.0], [3.0]])
    fake = torch.tensor([[0.5], [10.0]])
    # 0.5 lies in the balls of 0 (0.5 ≤ 1) and 1 (0.5 ≤ 1), not of 3 (2.5 > 2); 10 in none
    out = density_coverage(real, fake, k=1)
    assert out["density"] == pytest.approx(2 / (1 * 2))
    # nearest fake of 0: 0.5 ≤ 1 yes; of 1: 0.5 ≤ 1 yes; of 3: 2.5 ≤ 2 no
    assert out["coverage"] == pytest.approx(2 / 3)


def test_outliers_among_the_fakes_do_not_inflate_density():
    """The paper's point against improved precision: one far fake widens no ball here."""
    gen = torch.Generator().manual_seed(1)
    real = torch.randn(500, 8, generator=gen)
    good = torch.randn(500, 8, generator=gen)
    collapsed = torch.zeros(500, 8) + 0.01 * torch.randn(500, 8, generator=gen)  # one mode
    assert density_coverage(real, collapsed)["coverage"] < 0.1 < density_coverage(real, good)["coverage"]
    assert better("val/coverage", 0.9, 0.5) and better("density", 1.0, 0.5)


def test_a_run_reports_density_and_coverage_with_a_protocol_tag(tmp_path):
    summary = train_run(tmp_path, "metrics=[fid,dc]", "train.steps=2", "metrics.num_samples=200")
    last = summary["last"]
    assert 0.0 <= last["val/coverage"] <= 1.0 and last["val/density"] >= 0.0
    tags = (tmp_path / "summary.json").read_text()
    assert "dc[classifier:" in tags

"""The metrics' math on hand-made cases: mode coverage, FID/KID agreement between torchmetrics and
torch-fidelity, FID of a set against itself and under growing noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torchmetrics.image import FrechetInceptionDistance, KernelInceptionDistance

from ganforge.data.digits import DigitsDataModule
from ganforge.data.stacked import StackedDataModule
from ganforge.data.toy import RingDataModule
from ganforge.metrics.features import FeatureLayer
from ganforge.metrics.modes import ModeCoverage, mixture_metrics, stacked_modes
from ganforge.metrics.suite import LatentSequence, MetricSettings, MetricSuite, block, mode_samples

RING = RingDataModule().centers  # 8 centres on the unit circle


def test_modes_hand_computed_case():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    points = torch.tensor([[0.0, 0.0], [0.5, 0.0], [10.0, 0.0], [4.0, 0.0]])
    # nearest: 0, 0, 1, 0; within 3 std (std 1): yes, yes, yes, no (distance 4)
    out = mixture_metrics(points, centers, std=1.0)
    assert out["modes"] == 2
    assert out["hq_frac"] == pytest.approx(3 / 4)
    # histogram of all assignments (3, 1): KL to uniform = .75 ln 1.5 + .25 ln .5
    assert out["reverse_kl"] == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-12)


def test_modes_perfectly_uniform_and_all_in_one_mode():
    uniform = RING.repeat(5, 1)
    assert mixture_metrics(uniform, RING, 0.01) == {"modes": 8, "hq_frac": 1.0, "reverse_kl": 0.0}
    collapsed = RING[3].repeat(40, 1)
    out = mixture_metrics(collapsed, RING, 0.01)
    assert out["modes"] == 1 and out["hq_frac"] == 1.0
    assert out["reverse_kl"] == pytest.approx(math.log(8))


def test_points_off_every_mode_cover_nothing():
    out = mixture_metrics(RING * 1.5, RING, 0.01)  # 0.5 away from each centre, far beyond 3 std
    assert out["modes"] == 0 and out["hq_frac"] == 0.0 and out["reverse_kl"] == pytest.approx(0.0)


def test_mode_coverage_accumulates_like_one_batch():
    gen = torch.Generator().manual_seed(0)
    points = RING[torch.randint(8, (300,), generator=gen)] + 0.02 * torch.randn(300, 2, generator=gen)
    metric = ModeCoverage(8)
    for chunk in points.split(70):
        from ganforge.metrics.modes import assign_modes

        metric.update(*assign_modes(chunk, RING, 0.01))
    assert metric.compute() == pytest.approx(mixture_metrics(points, RING, 0.01))


def test_stacked_modes_read_digits_as_a_number():
    logits = torch.full((2, 3, 10), -5.0)
    for row, digits in enumerate([(4, 0, 7), (9, 9, 1)]):
        for channel, digit in enumerate(digits):
            logits[row, channel, digit] = 5.0
    assert stacked_modes(logits).tolist() == [407, 991]


def _features(n: int, d: int, shift: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=gen) * (1 + shift) + shift).double()


def test_torchmetrics_and_torch_fidelity_agree_on_fid():
    """Same features, two libraries: FID agrees to 1e-6 relative (both float64 eigenvalue forms)."""
    real, fake = _features(600, 16, 0.0, 1), _features(500, 16, 0.3, 2)
    fid = FrechetInceptionDistance(feature=FeatureLayer(torch.nn.Identity(), 0, False, 16))
    fid.update(real, real=True)
    fid.update(fake, real=False)
    ours = float(fid.compute())
    stats = [fid_features_to_statistics(f) for f in (fake, real)]
    theirs = fid_statistics_to_metric(stats[0], stats[1], verbose=False)["frechet_inception_distance"]
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_torchmetrics_and_torch_fidelity_agree_on_kid_over_the_full_sets():
    """With one subset holding every sample both compute the same unbiased MMD (1e-6 relative)."""
    real, fake = _features(300, 8, 0.0, 3), _features(300, 8, 0.5, 4)
    kid = KernelInceptionDistance(
        feature=FeatureLayer(torch.nn.Identity(), 0, False, 8), subsets=1, subset_size=300
    )
    kid.update(real, real=True)
    kid.update(fake, real=False)
    ours = float(kid.compute()[0])
    theirs = kid_features_to_metric(
        fake.float(),
        real.float(),
        kid_subsets=1,
        kid_subset_size=300,
        kid_kernel="poly",
        kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1,
        verbose=False,
        rng_seed=0,
    )
    assert ours == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-5)


def test_fid_of_a_set_against_itself_is_zero():
    feats = _features(400, 12, 0.0, 5)
    fid = FrechetInceptionDistance(feature=FeatureLayer(torch.nn.Identity(), 0, False, 12))
    fid.update(feats, real=True)
    fid.update(feats, real=False)
    assert abs(float(fid.compute())) < 1e-6


@pytest.fixture(scope="module")
def digits_suite() -> tuple[MetricSuite, DigitsDataModule]:
    """FID on the digits with the classifier extractor (trained once per test session, then cached)."""
    import os

    dm = DigitsDataModule(resolution=16)
    suite = MetricSuite(
        MetricSettings(names=["fid"], num_samples=600, batch_size=300), dm, os.environ["GANFORGE_CACHE_DIR"]
    )
    suite.prepare(torch.device("cpu"))
    return suite, dm


def _real_sampler(dm: DigitsDataModule, noise: float):
    """A "generator" that returns real digits (other than the reference subset's order) plus noise."""

    def sample(z: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator().manual_seed(int(z[0, 0].abs() * 1e6))
        x = dm.items(torch.randint(dm.num_items(), (len(z),), generator=gen).tolist())[0]
        return (x + noise * torch.randn(x.shape, generator=gen)).clamp(-1, 1)

    return sample


def test_fid_on_real_digits_is_near_zero_and_grows_with_noise(digits_suite):
    suite, dm = digits_suite
    assert suite.info["classifier_accuracy"] > 0.9
    fids = [
        suite.measure(_real_sampler(dm, s), 8, torch.device("cpu"))["val/fid"]
        for s in (0, 0.1, 0.2, 0.4, 0.8)
    ]
    assert fids[0] < 0.05 * fids[-1]
    assert all(a < b for a, b in zip(fids, fids[1:], strict=False)), fids


def test_measuring_leaves_the_global_rng_alone(digits_suite):
    suite, dm = digits_suite
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    suite.measure(_real_sampler(dm, 0.1), 8, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)


def test_stacked_digits_have_a_thousand_modes(digits_suite):
    import os

    dm = StackedDataModule(DigitsDataModule(resolution=16), seed=1)
    assert dm.data_shape == (3, 16, 16) and dm.num_classes == 1000
    x, y = dm.items([0, 1])
    rows = dm.dataset.table[:2]
    digits = dm.source.items(rows.flatten().tolist())[1].reshape(2, 3)
    assert y.tolist() == (digits * torch.tensor([100, 10, 1])).sum(1).tolist()
    assert torch.equal(x[0, 1], dm.source.items([int(rows[0, 1])])[0][0, 0])
    suite = MetricSuite(
        MetricSettings(names=["modes"], modes_num_samples=3000, batch_size=500),
        dm,
        os.environ["GANFORGE_CACHE_DIR"],
    )
    suite.prepare(torch.device("cpu"))
    one = suite.measure(lambda z: dm.items([0] * len(z))[0], 8, torch.device("cpu"))
    assert one["val/modes"] == 1 and one["val/reverse_kl"] == pytest.approx(np.log(1000))
    gen = torch.Generator().manual_seed(0)
    real = suite.measure(
        lambda z: dm.items(torch.randint(50000, (len(z),), generator=gen).tolist())[0], 8, torch.device("cpu")
    )
    assert real["val/modes"] > 900  # 3,000 uniform draws of 1,000 modes cover about 950


def test_stacked_data_count_26000_samples_for_its_modes():
    """1,000 equally likely modes: 2,500 uniform draws cover 1000·(1 - 0.999^2500) ≈ 918 on average
    (the 2D default would under-count a perfect G), 26,000 cover all (VEEGAN, PacGAN)."""
    gen = torch.Generator().manual_seed(0)
    covered = {}
    for n in (2500, 26000):
        metric = ModeCoverage(1000)
        metric.update(torch.randint(1000, (n,), generator=gen))
        covered[n] = metric.compute()["modes"]
    assert 1000 * (1 - 0.999**2500) == pytest.approx(918.0, abs=0.1)
    assert abs(covered[2500] - 918) < 30 and covered[26000] == 1000
    stacked = StackedDataModule(DigitsDataModule(resolution=16), seed=1)
    assert mode_samples(MetricSettings(), stacked) == 26000
    assert mode_samples(MetricSettings(), RingDataModule()) == 2500
    assert mode_samples(MetricSettings(modes_num_samples=400), stacked) == 400  # the user's count wins


def test_contiguous_blocks_split_the_samples_across_ranks():
    assert [block(301, r, 2) for r in (0, 1)] == [(0, 151), (151, 301)]
    assert [block(10, r, 3) for r in (0, 1, 2)] == [(0, 4), (4, 7), (7, 10)]
    assert block(5, 0, 1) == (0, 5)


def test_the_sample_sequence_does_not_depend_on_batches_or_ranks():
    """Sample i has the same latent and label however the evaluation is cut into batches or ranks."""

    def labels(n: int, gen: torch.Generator) -> torch.Tensor:
        return torch.randint(10, (n,), generator=gen)

    whole_z, whole_y = LatentSequence(3, 5, labels).rows(0, 2300)
    seq = LatentSequence(3, 5, labels)
    parts = [seq.rows(a, min(a + 333, 2300)) for a in range(0, 2300, 333)]
    assert torch.equal(torch.cat([z for z, _ in parts]), whole_z)
    assert torch.equal(torch.cat([y for _, y in parts]), whole_y)
    z, y = LatentSequence(3, 5, labels).rows(1500, 2100)  # a second rank's block, read on its own
    assert torch.equal(z, whole_z[1500:2100]) and torch.equal(y, whole_y[1500:2100])
    assert LatentSequence(3, 5).rows(0, 4)[1] is None
    assert not torch.equal(LatentSequence(4, 5).rows(0, 4)[0], whole_z[:4])  # the seed matters


def test_fid_does_not_depend_on_the_batch_size(digits_suite):
    """A per-sample map of the latents as G: any batch size measures the same samples."""
    suite, _ = digits_suite
    weight = torch.randn(8, 256, generator=torch.Generator().manual_seed(0))

    def sample(z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ weight).reshape(len(z), 1, 16, 16)

    values = []
    for size in (300, 77):
        suite.settings.batch_size = size
        values.append(suite.measure(sample, 8, torch.device("cpu"))["val/fid"])
    suite.settings.batch_size = 300
    assert values[0] == pytest.approx(values[1], rel=1e-6)


def test_a_small_data_set_is_compared_with_as_many_generated_samples():
    """1,797 digits and metrics.num_samples=2000: 1,797 real against 1,797 generated, both recorded."""
    import os

    dm = DigitsDataModule(resolution=16)
    settings = MetricSettings(names=["fid", "prc"], num_samples=2000, batch_size=500)
    suite = MetricSuite(settings, dm, os.environ["GANFORGE_CACHE_DIR"])
    suite.prepare(torch.device("cpu"))
    assert suite.info["n_real"] == suite.info["n_fake"] == dm.num_items() == 1797
    drawn = []

    def sample(z: torch.Tensor) -> torch.Tensor:
        drawn.append(len(z))
        return dm.items(list(range(len(z))))[0]

    values = suite.measure(sample, 8, torch.device("cpu"))
    assert sum(drawn) == 1797 and 0 <= values["val/precision"] <= 1

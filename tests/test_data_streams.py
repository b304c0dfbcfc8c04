"""The real-batch streams: seeded, resumable at any batch, disjoint across DDP ranks."""

from __future__ import annotations

import itertools

import torch

from ganforge.data.base import InfiniteBatchSampler
from ganforge.data.digits import DigitsDataModule
from ganforge.data.toy import GridDataModule, RingDataModule


def take(loader, n):
    return list(itertools.islice(iter(loader), n))


def test_sampler_covers_each_epoch_once_and_reshuffles():
    sampler = InfiniteBatchSampler(10, 4, seed=3)
    stream = list(itertools.chain.from_iterable(itertools.islice(iter(sampler), 5)))  # 20 items = 2 epochs
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert stream[:10] != stream[10:]


def test_sampler_resumes_at_any_batch():
    full = list(itertools.islice(iter(InfiniteBatchSampler(37, 8, seed=1)), 12))
    resumed = list(itertools.islice(iter(InfiniteBatchSampler(37, 8, seed=1, start=7)), 5))
    assert resumed == full[7:]


def test_sampler_ranks_are_disjoint_and_together_are_the_single_stream():
    single = list(itertools.islice(iter(InfiniteBatchSampler(64, 4, seed=0)), 8))
    r0 = list(itertools.islice(iter(InfiniteBatchSampler(64, 2, seed=0, rank=0, world_size=2)), 8))
    r1 = list(itertools.islice(iter(InfiniteBatchSampler(64, 2, seed=0, rank=1, world_size=2)), 8))
    for k in range(8):
        assert not set(r0[k]) & set(r1[k])
        assert r0[k] + r1[k] == single[k]


def test_digits_batches_are_images_in_range_with_labels():
    dm = DigitsDataModule(resolution=16, batch_size=8, draws_per_step=3)
    x, y = take(dm.train_dataloader(), 1)[0]
    assert x.shape == (24, 1, 16, 16) and y.shape == (24,)
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.9 and x.max() > 0.9
    assert set(y.tolist()) <= set(range(10))
    assert len(dm.dataset) == 1797


def test_toy_streams_are_seeded_and_have_the_stated_geometry():
    ring = RingDataModule(num_modes=8, radius=1.0, std=0.01, batch_size=512)
    a = take(ring.train_dataloader(), 2)
    b = take(RingDataModule(batch_size=512).train_dataloader(), 2)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b, strict=True))
    pts, modes = a[0]
    radius = pts.norm(dim=1)
    assert (radius - 1).abs().max() < 0.06  # 6 std
    assert set(modes.tolist()) == set(range(8))
    grid = GridDataModule(batch_size=4096)
    assert grid.centers.shape == (25, 2) and sorted(set(grid.centers[:, 0].tolist())) == [-4, -2, 0, 2, 4]
    pts, modes = take(grid.train_dataloader(), 1)[0]
    assert (pts - grid.centers[modes]).std() < 0.06
    assert RingDataModule(seed=1, batch_size=4).real_batch(5).shape == (5, 2)


def test_a_fixed_toy_training_set_is_drawn_once_and_cycled_through_per_epoch():
    """data.train_size (PacGAN's fixed 100,000 points): every epoch is a permutation of the same points,
    a fresh one each epoch, and the set depends on the seed only."""
    dm = RingDataModule(train_size=40, batch_size=10, seed=5)
    batches = take(dm.train_dataloader(), 8)  # 80 points: two epochs
    points = torch.cat([b[0] for b in batches])
    held = dm.dataset.images
    assert held.shape == (40, 2)
    for epoch in (points[:40], points[40:]):
        assert torch.equal(epoch[torch.argsort(epoch[:, 0])], held[torch.argsort(held[:, 0])])
    assert not torch.equal(points[:40], points[40:])
    radius = held.norm(dim=1)
    assert ((radius - 1).abs() < 0.05).all()  # the ring's points, not something else
    again = RingDataModule(train_size=40, batch_size=10, seed=5)
    again.setup()
    assert torch.equal(again.dataset.images, held)
    other = RingDataModule(train_size=40, batch_size=10, seed=6)
    other.setup()
    assert not torch.equal(other.dataset.images, held)
    fresh = torch.cat([b[0] for b in take(RingDataModule(batch_size=10, seed=5).train_dataloader(), 8)])
    assert len({tuple(p.tolist()) for p in fresh}) == 80  # train_size 0: no point ever repeats

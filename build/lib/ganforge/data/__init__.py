"""LightningDataModules: endless, seeded, resumable streams of real batches."""

from ganforge.data.base import GANDataModule, InfiniteBatchSampler

__all__ = ["GANDataModule", "InfiniteBatchSampler"]

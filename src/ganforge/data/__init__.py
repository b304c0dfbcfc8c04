"""LightningDataModules: endless, seeded, resumable streams of real batches (the contract: ``base``).

Nothing is imported here, so that a light module of the package (``images``, ``layouts``) does not
pull in Lightning."""

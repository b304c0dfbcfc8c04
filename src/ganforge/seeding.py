"""Seeds derived from several integers: the one rule every seeded stream (data order, latents, metric
samples) uses, in a module that imports numpy alone so light entry points can use it too."""

from __future__ import annotations

import numpy as np


def mix_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from several integers (seed, rank, batch index, ...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)

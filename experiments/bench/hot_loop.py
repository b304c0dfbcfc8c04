"""Microseconds of the pieces of a training step that ganforge changed for speed, old way vs new way.

On the toy MLP discriminator (ring8, ``model=mlp``) built from the real config:

- ``adam_step``: one Adam update, torch's default implementation vs ``fused=True`` (``optim.fused``);
- ``grad_norm``: the gradient norm, one norm per parameter vs ``ganforge.module.grad_norm``;
- ``loss_call``: the D loss called through Hydra's partial vs the plain partial ganforge keeps.

Prints one JSON line per piece: ``{"piece": ..., "old_us": ..., "new_us": ..., "speedup": ...}``.

    python experiments/bench/hot_loop.py            # 3,000 calls each, the best of 3 rounds
    python experiments/bench/hot_loop.py --quick    # 50 calls (what CI runs: checks it works)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ganforge import CONFIG_DIR
from ganforge.build import build
from ganforge.losses import plain
from ganforge.module import grad_norm


def per_call_us(fn: Callable[[], object], calls: int, rounds: int = 3) -> float:
    """Microseconds per call of ``fn``, the best of ``rounds`` rounds of ``calls`` calls."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="50 calls per piece")
    args = parser.parse_args()
    calls = 50 if args.quick else 3000
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(
            "train", overrides=["data=ring8", "model=mlp", f"paths.output_dir={tempfile.mkdtemp()}"]
        )
    _, module = build(cfg)
    D = module.discriminator
    real, fake = torch.randn(256, 2), torch.randn(256, 2)
    D(real).sum().backward()

    def adam(**impl: bool) -> Callable[[], object]:
        opt = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), **impl)
        return opt.step

    def norm_per_parameter() -> torch.Tensor:
        return torch.stack([p.grad.norm(2) for p in D.parameters() if p.grad is not None]).norm(2)

    hydra_loss = instantiate(cfg.loss.d_loss)  # what Hydra hands over: a partial that checks its target
    plain_loss = plain(hydra_loss)  # unwrapped once, as GANLoss does
    logits = D(real).detach(), D(fake).detach()
    pieces = {
        "adam_step": (adam(), adam(fused=True)),
        "grad_norm": (norm_per_parameter, lambda: grad_norm(D)),
        "loss_call": (lambda: hydra_loss(*logits), lambda: plain_loss(*logits)),
    }
    for piece, (old, new) in pieces.items():
        old_us, new_us = per_call_us(old, calls), per_call_us(new, calls)
        line = {"piece": piece, "old_us": round(old_us, 1), "new_us": round(new_us, 1)}
        print(json.dumps({**line, "speedup": round(old_us / new_us, 2), "calls": calls}), flush=True)


if __name__ == "__main__":
    main()

"""Does FID with the self-supervised extractor (``metrics.extractor=selfsup``: SimCLR, Chen et al. 2020,
trained on the reference images, no labels) rank image sets as a person would? Held-out real images
against the reference set, then the same images blurred, noisy, or from a "collapsed generator" (one
image, or ten, repeated; only half the classes): every degradation must score worse, and a stronger one
worse still. Measured by the suite training uses (``MetricSuite``, the held-out images playing the
generator's samples), next to the classifier extractor where the data has labels (a second opinion).

Prints one JSON line per (data, extractor) and the Markdown table of the README; writes ``results.json``.

    OMP_NUM_THREADS=1 python experiments/metrics/selfsup_ranking.py                 # digits, CIFAR-10
    OMP_NUM_THREADS=1 python experiments/metrics/selfsup_ranking.py --data digits --extractors selfsup
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge.data.base import GANDataModule
from ganforge.data.digits import DigitsDataModule
from ganforge.data.folder import ImageFolderDataModule
from ganforge.metrics.suite import MetricSettings, MetricSuite

HERE = Path(__file__).resolve().parent
CIFAR = HERE.parents[1].parent / "shared" / "datasets"  # ../shared/datasets from the project root


# --- what a person would rank: degradations of real images (floats in [-1, 1]) -----------------------
def blur(x: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of standard deviation ``sigma`` px (separable, 7 taps, reflected borders)."""
    taps = torch.arange(-3, 4, dtype=torch.float32)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(x)
    c = x.shape[1]
    y = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="reflect"), kernel.view(1, 1, 1, 7).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(
        F.pad(y, (0, 0, 3, 3), mode="reflect"), kernel.view(1, 1, 7, 1).repeat(c, 1, 1, 1), groups=c
    )


def noise(x: Tensor, std: float, seed: int = 0) -> Tensor:
    """Additive Gaussian noise of ``std`` in units of the [0, 1] range, clamped to it."""
    gen = torch.Generator().manual_seed(seed)
    return (x + torch.randn(x.shape, generator=gen).to(x) * 2 * std).clamp(-1, 1)


def repeated(x: Tensor, k: int) -> Tensor:
    """A collapsed generator: the first ``k`` images, repeated to as many as ``x`` holds."""
    return x[:k].repeat((len(x) + k - 1) // k, 1, 1, 1)[: len(x)]


def half_the_classes(x: Tensor, labels: Tensor, n: int) -> Tensor:
    """A generator that dropped modes: ``n`` images of classes 0-4 only (each several times when fewer)."""
    kept = x[labels < 5]
    return kept.repeat(-(-n // len(kept)), 1, 1, 1)[:n]


def candidates(x: Tensor, labels: Tensor, n: int) -> dict[str, Tensor]:
    """The image sets to rank, ``n`` images each, made from held-out real images ``x`` (the first ``n``
    of them, all of ``x`` for the classes 0-4); the first set is those real images themselves."""
    real = x[:n]
    sets = {"held-out real": real}
    sets.update({f"blur σ={s:g} px": blur(real, s) for s in (0.5, 1.0, 1.5)})
    sets.update({f"noise σ={s:g}": noise(real, s) for s in (0.05, 0.1, 0.2)})
    sets["half the classes"] = half_the_classes(x, labels, n)
    sets.update({"10 images repeated": repeated(real, 10), "1 image repeated": repeated(real, 1)})
    return sets


ORDERS = (  # what must hold: each list in increasing FID
    ("held-out real", "blur σ=0.5 px", "blur σ=1 px", "blur σ=1.5 px"),
    ("held-out real", "noise σ=0.05", "noise σ=0.1", "noise σ=0.2"),
    ("held-out real", "half the classes"),
    ("held-out real", "10 images repeated", "1 image repeated"),
)


def ranked(fids: dict[str, float]) -> bool:
    """Whether every chain of :data:`ORDERS` is strictly increasing."""
    return all(all(fids[a] < fids[b] for a, b in zip(o, o[1:], strict=False)) for o in ORDERS)


# --- measuring ------------------------------------------------------------------------------------------
def as_generator(images: Tensor) -> Callable[[Tensor], Tensor]:
    """A "generator" whose samples are ``images`` in order (the suite asks for them batch by batch)."""
    offset = 0

    def sample(z: Tensor) -> Tensor:
        nonlocal offset
        out = images[offset : offset + len(z)]
        offset += len(z)
        return out

    return sample


def measure(
    datamodule: GANDataModule,
    held: tuple[Tensor, Tensor],
    extractor: str,
    selfsup: dict[str, Any],
    n: int,
    cache_dir: str,
) -> dict[str, Any]:
    """FID of every candidate set against ``n`` reference images of ``datamodule``, with one extractor."""
    settings = MetricSettings(
        names=["fid"], num_samples=n, batch_size=500, extractor=extractor, selfsup=selfsup
    )
    start, cpu = time.time(), time.process_time()
    suite = MetricSuite(settings, datamodule, cache_dir)
    suite.prepare(torch.device("cpu"))
    prepared = time.time() - start
    fids = {}
    for name, images in candidates(*held, n).items():
        fids[name] = suite.measure(as_generator(images), 1, torch.device("cpu"))["val/fid"]
    info = suite.info
    return {
        "extractor": extractor,
        "tag": info["protocol_tags"]["val/fid"],
        "fid": fids,
        "ranked": ranked(fids),
        "prepare_s": round(prepared, 1),
        "total_s": round(time.time() - start, 1),
        "cpu_s": round(time.process_time() - cpu, 1),  # this process's CPU time: what a quiet core would take
        **{k: info[k] for k in ("selfsup_top1", "selfsup_cached", "classifier_accuracy") if k in info},
    }


def data_sets(names: list[str]) -> dict[str, tuple[GANDataModule, tuple[Tensor, Tensor], int]]:
    """(reference data, held-out images and labels, how many of each) per data set; CIFAR-10 only when
    its zips are at hand."""
    out = {}
    if "digits" in names:  # 900 digits the reference (and the selfsup net's training set), 897 held out
        dm = DigitsDataModule(resolution=16, limit=900)
        held = dm.held_out_items(10_000)
        assert held is not None
        out["digits"] = (dm, held, len(held[0]))
    train, test = CIFAR / "cifar10-train-jpg.zip", CIFAR / "cifar10-test-jpg.zip"
    if "cifar10" in names and train.is_file() and test.is_file():  # train split vs 2,000 test images
        ref = ImageFolderDataModule(str(train), resolution=32)
        test_dm = ImageFolderDataModule(str(test), resolution=32)
        order = torch.randperm(test_dm.num_items(), generator=torch.Generator().manual_seed(0))
        out["cifar10"] = (ref, test_dm.items(order.tolist()), 2000)
    elif "cifar10" in names:
        print(f"skipping CIFAR-10: {train} or {test} is not there")
    return out


def table(rows: list[dict[str, Any]]) -> str:
    """The README's table: one column per (data, extractor), one row per candidate set."""
    head = [f"{r['data']} / {r['extractor']}" for r in rows]
    lines = ["| image set | " + " | ".join(head) + " |", "| --- |" + " ---: |" * len(rows)]
    for name in rows[0]["fid"]:
        lines.append(f"| {name} | " + " | ".join(f"{r['fid'][name]:.4g}" for r in rows) + " |")
    lines.append(
        "| ranked as a person would | " + " | ".join("yes" if r["ranked"] else "**no**" for r in rows)
    )
    lines[-1] += " |"
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", default=["digits", "cifar10"], choices=["digits", "cifar10"])
    parser.add_argument("--extractors", nargs="+", default=["selfsup", "classifier"])
    parser.add_argument("--steps", type=int, default=None, help="metrics.selfsup.steps (default: its own)")
    parser.add_argument("--width", type=int, default=None, help="metrics.selfsup.width")
    parser.add_argument("--batch-size", type=int, default=None, help="metrics.selfsup.batch_size")
    parser.add_argument("--cache-dir", default=os.environ.get("GANFORGE_CACHE_DIR", "~/.cache/ganforge"))
    parser.add_argument("--results", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    selfsup = {
        k: v for k, v in (("steps", args.steps), ("width", args.width), ("batch_size", args.batch_size)) if v
    }
    rows = []
    for data, (dm, held, n) in data_sets(args.data).items():
        for extractor in args.extractors:
            row = {
                "data": data,
                "n": n,
                "selfsup": selfsup,
                **measure(dm, held, extractor, selfsup, n, args.cache_dir),
            }
            print(json.dumps(row, ensure_ascii=False), flush=True)
            rows.append(row)
    args.results.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()

"""Time to compute FID over N generated samples with each feature extractor, on this machine.

Uses the training-time path (ganforge.metrics.suite.MetricSuite: generate, extract, torchmetrics
FID in float64) on the bundled digits with a DCGAN generator. The reference features are computed
into a fresh cache first (timed apart as ``reference_s``). Without the real Inception weights the
Inception case runs the same architecture with random weights: its timing is real, its FID is not.

    python experiments/bench/metrics.py                      # 10,000 samples, both extractors
    python experiments/bench/metrics.py --quick              # 200 samples (what CI runs)
    python experiments/bench/metrics.py --inception-weights pt_inception-2015-12-05-6726825d.pth

Prints one JSON line per extractor.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from ganforge.data.digits import DigitsDataModule
from ganforge.metrics.features import write_random_inception_weights
from ganforge.metrics.suite import MetricSettings, MetricSuite
from ganforge.nets.dcgan import DCGANGenerator


def bench(extractor: str, num_samples: int, weights: str | None, cache: Path, device: torch.device) -> dict:
    datamodule = DigitsDataModule(resolution=16)
    settings = MetricSettings(
        names=["fid"], num_samples=num_samples, batch_size=250, extractor=extractor, weights_path=weights
    )
    suite = MetricSuite(settings, datamodule, cache)
    start = time.perf_counter()
    suite.prepare(device)  # trains the classifier (if needed) and extracts the reference features
    prepare_s = time.perf_counter() - start
    torch.manual_seed(0)
    generator = DCGANGenerator(datamodule.data_shape, z_dim=100, width=32).to(device).eval()
    start = time.perf_counter()
    values = suite.measure(generator, 100, device)
    fid_s = time.perf_counter() - start
    return {
        "extractor": extractor,
        "num_samples": num_samples,
        "reference_samples": suite.info["reference_samples"],
        "prepare_s": round(prepare_s, 2),
        "fid_s": round(fid_s, 2),
        "samples_per_s": round(num_samples / fid_s, 1),
        "fid": round(values["val/fid"], 3),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-samples", type=int, default=10000)
    parser.add_argument("--quick", action="store_true", help="200 samples: a smoke run")
    parser.add_argument("--extractors", default="classifier,inception")
    parser.add_argument("--inception-weights", default=None, help="the real FID Inception weights file")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cache-dir", default=None, help="reuse a classifier cache (default: a fresh one)")
    args = parser.parse_args()
    num_samples = 200 if args.quick else args.num_samples
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache_dir or tmp)
        weights = args.inception_weights
        if "inception" in args.extractors and not weights:
            weights = str(write_random_inception_weights(Path(tmp) / "inception-random.pth"))
        for extractor in args.extractors.split(","):
            result = bench(
                extractor, num_samples, weights if extractor == "inception" else None, cache, device
            )
            if extractor == "inception" and not args.inception_weights:
                result["extractor"] = "inception (random weights)"
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

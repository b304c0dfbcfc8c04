"""The metrics benchmark runs (short mode), so it cannot rot; its numbers are not asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import ROOT


def test_metrics_bench_quick_prints_json():
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments" / "bench" / "metrics.py"),
            "--quick",
            "--extractors",
            "classifier",
            "--cache-dir",
            os.environ["GANFORGE_CACHE_DIR"],
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result["extractor"] == "classifier" and result["num_samples"] == 200
    assert result["fid_s"] > 0 and result["fid"] > 0

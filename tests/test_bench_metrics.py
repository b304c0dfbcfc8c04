"""The metrics benchmark runs (short mode), so it cannot rot; its numbers are not asserted."""

from __future__ import annotations

import json
import os

from helpers import bench


def test_metrics_bench_quick_prints_json(tmp_path):
    res = bench(
        "metrics",
        "--quick",
        "--extractors",
        "classifier",
        "--cache-dir",
        os.environ["GANFORGE_CACHE_DIR"],
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result["extractor"] == "classifier" and result["num_samples"] == 200
    assert result["fid_s"] > 0 and result["fid"] > 0

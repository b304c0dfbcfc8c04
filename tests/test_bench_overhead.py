"""The overhead and hot-loop benchmarks run (short mode), so they cannot rot; their figures are targets,
not asserted."""

from __future__ import annotations

import json

from helpers import bench


def test_overhead_bench_quick_prints_json(tmp_path):
    res = bench(
        "overhead",
        "--quick",
        "--cases",
        "toy_mlp_cpu",
        "--switches",
        "unfused,steps_per_batch_1",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    result, *switches = lines
    assert result["case"] == "toy_mlp_cpu" and result["steps"] == 50
    assert result["plain_s"] > 0 and result["ganforge_s"] > 0 and result["ratio"] > 0
    assert [s["switch"] for s in switches] == ["unfused", "steps_per_batch_1"]
    assert all(s["switch_s"] > 0 and s["speedup"] > 0 for s in switches)


def test_hot_loop_bench_quick_prints_json(tmp_path):
    res = bench("hot_loop", "--quick", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert [line["piece"] for line in lines] == ["adam_step", "grad_norm", "loss_call"]
    assert all(line["old_us"] > 0 and line["new_us"] > 0 for line in lines)

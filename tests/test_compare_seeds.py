"""ganforge-compare over seeds: runs whose configs differ only in ``seed`` share a row (mean ± std, n),
``--group-by`` other keys, "vs best" against the seed spread, the spread in the plots and in the
report of a multirun; on run dirs built here and on a real sweep."""

from __future__ import annotations

import io
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from matplotlib.container import ErrorbarContainer
from omegaconf import OmegaConf

from ganforge import compare
from ganforge.callbacks.hydra_compare import CompareOnMultirunEnd
from helpers import ROOT
from test_compare import check_png, curve, make_run, read_csv, table_cells

# best val/fid of each run (the last of its two values), by loss and seed
FIDS = {"hinge": [30.0, 34.5, 29.25], "wgan": [31.0, 40.0, 45.5], "lsgan": [60.0, 58.0]}


def seed_sweep(root: Path, fids: dict[str, list[float]] = FIDS) -> dict[str, list[Path]]:
    """A multirun dir as ``-m loss=... seed=0,1,2`` leaves it: jobs 0, 1, ... (the seed varies fastest)."""
    job = 0
    runs: dict[str, list[Path]] = {}
    for loss, values in fids.items():
        for seed, fid in enumerate(values):
            path = make_run(root / str(job), [f"loss={loss}", f"seed={seed}"], curve(6, fid=[fid + 20, fid]))
            runs.setdefault(loss, []).append(path)
            job += 1
    return runs


def set_config(run: Path, **values: object) -> None:
    """Set dotted keys in a run's .hydra/config.yaml (a value its config files gave, no override)."""
    path = run / ".hydra" / "config.yaml"
    config = OmegaConf.create(yaml.safe_load(path.read_text()))
    for key, value in values.items():
        OmegaConf.update(config, key, value, force_add=True)
    path.write_text(OmegaConf.to_yaml(config))


def by_loss(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {row["loss"]: row for row in rows}


def test_seeds_share_a_row_with_their_mean_and_std(tmp_path, capsys):
    seed_sweep(tmp_path / "sweep")
    assert compare.main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    rows = by_loss(read_csv(tmp_path / "out" / "comparison.csv"))
    assert list(rows) == ["hinge", "wgan", "lsgan"]  # best mean val/fid first: 31.25, 38.83, 59
    for loss, fids in FIDS.items():
        row = rows[loss]
        assert row["n"] == str(len(fids)) and row["val/fid n"] == str(len(fids))
        assert float(row["val/fid best"]) == statistics.mean(fids)
        assert float(row["val/fid best std"]) == statistics.stdev(fids)
        assert float(row["val/fid final"]) == statistics.mean(fids)  # the last value is the best
        scores = [10 - f for f in fids]  # val/is = 10 - val/fid: its best is the last value too
        assert float(row["val/is best"]) == statistics.mean(scores)
        assert float(row["val/is best std"]) == statistics.stdev(scores)
        assert row["seed"] == "{" + ", ".join(str(s) for s in range(len(fids))) + "}"
        assert row["status"] == "finished" and row["g_steps"] == "60"
        assert float(row["train/d_loss"]) == pytest.approx(1 / 6) and float(row["train/d_loss std"]) == 0
    assert rows["hinge"]["run"] == "0, 1, 2" and rows["hinge"]["path"].count(";") == 2
    printed = capsys.readouterr().out
    assert "8 runs in 3 rows (mean ± std)" in printed
    md = (tmp_path / "out" / "comparison.md").read_text()
    assert "| 0, 1, 2 | hinge | {0, 1, 2} | 3 | best |" in md
    mean, std = statistics.mean(FIDS["hinge"]), statistics.stdev(FIDS["hinge"])
    assert f"{mean:.4g} ± {std:.4g}" in md
    assert "runs whose configs differ only in seed share a row" in md


def test_the_terminal_table_shows_every_cell_of_the_rows(tmp_path):
    seed_sweep(tmp_path)
    comp = compare.build_comparison([tmp_path])
    out = io.StringIO()
    compare.print_table(comp, file=out, width=220)
    header, rows = table_cells(out.getvalue())
    assert rows == [[c.replace(" ", "") for c in row] for row in comp.rows(compact=True)]
    assert header[1:5] == ["loss", "seed", "n", "vsbest"]
    assert [row[3] for row in rows] == ["3", "3", "2"]


def test_group_by_a_named_key(tmp_path, capsys):
    root = tmp_path / "runs"
    for i, (loss, lr) in enumerate(
        [("hinge", "1e-4"), ("hinge", "2e-4"), ("wgan", "1e-4"), ("wgan", "2e-4")]
    ):
        make_run(root / f"r{i}", [f"loss={loss}", f"optim.lr_d={lr}"], curve(4, fid=[10.0 * (i + 1)]))
    assert compare.main([str(root), "--group-by", "loss", "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    rows = by_loss(read_csv(tmp_path / "out" / "comparison.csv"))
    assert list(rows) == ["hinge", "wgan"]
    assert rows["hinge"]["optim.lr_d"] == "{1e-4, 2e-4}" and rows["hinge"]["n"] == "2"
    assert float(rows["hinge"]["val/fid best"]) == statistics.mean([10.0, 20.0])
    assert float(rows["wgan"]["val/fid best std"]) == statistics.stdev([30.0, 40.0])
    assert "runs with equal loss share a row" in capsys.readouterr().out

    # a dotted config key that no override set: runs with equal values share a row
    for i, norm in enumerate(["spectral", "none", "spectral", "none"]):
        set_config(root / f"r{i}", **{"model.discriminator.norm": norm})
    comp = compare.build_comparison([root], group_by="model.discriminator.norm")
    assert [(g.label, g.n) for g in comp.groups] == [
        ("model.discriminator.norm=spectral optim.lr_d=1e-4 (n=2)", 2),  # what its runs share
        ("model.discriminator.norm=none optim.lr_d=2e-4 (n=2)", 2),
    ]
    assert comp.keys[0] == "model.discriminator.norm"
    assert [g.spread("val/fid").mean for g in comp.groups] == [20.0, 30.0]
    both = compare.build_comparison([root], group_by=["loss", "model.discriminator.norm"])
    assert [g.n for g in both.groups] == [1, 1, 1, 1]


def test_runs_that_differ_in_another_key_are_not_merged(tmp_path):
    root = tmp_path / "runs"
    for seed in range(2):  # two learning rates, two seeds each
        make_run(root / f"a{seed}", [f"seed={seed}", "optim.lr_d=1e-4"], curve(4, fid=[20.0 + seed]))
        make_run(root / f"b{seed}", [f"seed={seed}", "optim.lr_d=2e-4"], curve(4, fid=[30.0 + seed]))
    # the same overrides, but the config files changed in between: another setup, not another seed
    make_run(root / "c0", ["seed=0", "optim.lr_d=1e-4"], curve(4, fid=[5.0]))
    set_config(root / "c0", **{"model.discriminator.norm": "spectral"})
    for name in ("a0", "a1", "b0", "b1"):
        set_config(root / name, **{"model.discriminator.norm": "none"})
    set_config(root / "a1", **{"paths.output_dir": "/elsewhere", "task_name": "again"})  # bookkeeping only
    comp = compare.build_comparison([root])
    assert [[r.name for r in g.runs] for g in comp.groups] == [["c0"], ["a0", "a1"], ["b0", "b1"]]
    assert comp.keys == ["seed", "optim.lr_d", "model.discriminator.norm"]
    rows = {row[0]: row for row in comp.rows()}
    assert rows["a0, a1"][1:5] == ["{0, 1}", "1e-4", "none", "2"]
    assert rows["c0"][1:5] == ["0", "1e-4", "spectral", "1"]


def test_vs_best_marks_differences_within_the_seed_spread(tmp_path):
    fids = {
        "hinge": [30.0, 32.0, 34.0],
        "wgan": [31.0, 37.0, 40.0],
        "lsgan": [50.0, 51.0, 52.0],
        "mini": [36.0],
    }
    seed_sweep(tmp_path, fids)
    comp = compare.build_comparison([tmp_path])
    verdict = {row[1]: row[4] for row in comp.rows()}
    assert comp.header()[4] == "vs best"
    best = fids["hinge"]
    for loss in ("wgan", "lsgan"):  # the rule, computed here from the values written above
        gap = abs(statistics.mean(fids[loss]) - statistics.mean(best))
        combined = math.sqrt(statistics.stdev(fids[loss]) ** 2 + statistics.stdev(best) ** 2)
        assert verdict[loss] == ("within std" if gap <= combined else "beyond std")
    assert verdict == {"hinge": "best", "wgan": "within std", "lsgan": "beyond std", "mini": "no std"}
    assert [r["vs best"] for r in read_csv(compare.write_csv(comp, tmp_path / "c.csv"))] == [
        "best",
        "within std",
        "no std",
        "beyond std",
    ]


def test_a_row_says_how_many_runs_logged_a_value_and_their_statuses(tmp_path):
    seed_sweep(tmp_path, {"hinge": [30.0, 34.0]})
    make_run(
        tmp_path / "2", ["loss=hinge", "seed=2"], curve(8, nan_at=7), status="crashed"
    )  # no fid, NaN loss
    comp = compare.build_comparison([tmp_path])
    assert len(comp.groups) == 1
    row = dict(zip(comp.header(), comp.rows()[0], strict=True))
    assert row["n"] == "3" and row["status"] == "2 finished, 1 diverged"
    assert (
        row["val/fid best"]
        == f"{statistics.mean([30.0, 34.0]):.4g} ± {statistics.stdev([30.0, 34.0]):.4g} (n=2)"
    )
    assert row["steps"] == "60–80/100" and row["d_loss"] == "nan ± nan"
    csv_row = read_csv(compare.write_csv(comp, tmp_path / "c.csv"))[0]
    assert csv_row["val/fid n"] == "2" and csv_row["n"] == "3"


def test_group_by_none_is_one_row_per_run_as_before(tmp_path):
    seed_sweep(tmp_path / "sweep")
    out = tmp_path / "out"
    assert compare.main([str(tmp_path / "sweep"), "--group-by", "none", "--out", str(out)]) == 0
    rows = read_csv(out / "comparison.csv")
    assert len(rows) == 8 and "n" not in rows[0] and "val/fid best std" not in rows[0]
    assert [float(r["val/fid best"]) for r in rows] == sorted(f for fids in FIDS.values() for f in fids)
    assert not (out / "comparison_spread.png").exists()
    assert compare.build_comparison([tmp_path / "sweep"], group_by=None).groups is None


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("model.discriminator.nrm", "model.discriminator.nrm: no run has this key (did you mean model.disc"),
        ("loss,sed", "sed: no run has this key (did you mean seed?)"),
        (",", "',': no key given"),
    ],
)
def test_an_unknown_group_by_key_is_one_line_exit_2_listing_the_keys(tmp_path, capsys, given, words):
    runs = seed_sweep(tmp_path / "sweep", {"hinge": [1.0], "wgan": [2.0]})
    set_config(runs["hinge"][0], **{"model.discriminator.norm": "none"})
    out = tmp_path / "out"
    assert compare.main([str(tmp_path / "sweep"), "--group-by", given, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ganforge-compare: error: --group-by {words}"), err
    if given != ",":
        assert err[0].endswith("known keys: loss, model.*, seed, train.*")
    assert not out.exists()


def test_plots_show_the_spread_of_each_row(tmp_path):
    seed_sweep(tmp_path / "sweep")
    result = compare.compare([tmp_path / "sweep"], out=tmp_path / "out", show=False)
    for name in ("comparison_losses.png", "comparison_metrics.png", "comparison_spread.png"):
        check_png(tmp_path / "out" / name)
        assert f"]({name})" in (tmp_path / "out" / "comparison.md").read_text()
    comp = result["comparison"]

    fig = compare.metrics_figure(comp.runs, comp.metrics, comp.groups)
    ax = fig.axes[comp.metrics.index("val/fid")]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 3  # a mean curve with ± std bars per row
    line, _, (segments,) = bars[0]  # the best row: hinge, its last point the runs' last val/fid
    assert line.get_ydata()[-1] == statistics.mean(FIDS["hinge"])
    low, high = segments.get_segments()[-1][:, 1]
    assert high - low == pytest.approx(2 * statistics.stdev(FIDS["hinge"]))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "0, 1, 2: loss=hinge (n=3)",
        "3, 4, 5: loss=wgan (n=3)",
        "6, 7: loss=lsgan (n=2)",
    ]

    fig = compare.spread_figure(comp.groups, comp.metrics)
    ax = fig.axes[comp.metrics.index("val/fid")]
    points = [
        sorted(line.get_ydata())
        for line in ax.lines
        if line.get_linestyle() == "None" and len(line.get_ydata()) > 1
    ]
    assert points[:3] == [sorted(FIDS[k]) for k in FIDS]  # every run's own best, over its row
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert [c.lines[0].get_ydata()[0] for c in bars] == [statistics.mean(FIDS[k]) for k in FIDS]
    low, high = bars[1].lines[2][0].get_segments()[0][:, 1]
    assert high - low == pytest.approx(2 * statistics.stdev(FIDS["wgan"]))

    fig = compare.losses_figure(comp.runs, comp.groups)  # the runs of a row share its colour
    colors = {tuple(line.get_color()) for line in fig.axes[0].lines[:6]}
    assert len(fig.axes[0].lines) == 16 and len(colors) == 1


def test_the_multirun_report_groups_seeds(tmp_path):
    seed_sweep(tmp_path)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    CompareOnMultirunEnd().on_multirun_end(config)
    rows = by_loss(read_csv(tmp_path / "comparison.csv"))
    assert {loss: row["n"] for loss, row in rows.items()} == {"hinge": "3", "wgan": "3", "lsgan": "2"}
    assert float(rows["wgan"]["val/fid best std"]) == statistics.stdev(FIDS["wgan"])
    check_png(tmp_path / "comparison_spread.png")
    CompareOnMultirunEnd(group_by="none").write(tmp_path)
    assert len(read_csv(tmp_path / "comparison.csv")) == 8


@pytest.mark.slow
def test_a_real_sweep_over_seeds_gives_one_row_per_loss(tmp_path):
    """``ganforge-train -m loss=hinge,lsgan seed=0,1``: the report the sweep writes has two rows."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
    }
    sweep_dir = tmp_path / "multirun"
    args = ["model=mlp", "data=ring8", "logger=[csv]", "train.steps=6", "train.log_every=2"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ganforge.train",
            "-m",
            *args,
            "loss=hinge,lsgan",
            "seed=0,1",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = by_loss(read_csv(sweep_dir / "comparison.csv"))
    assert set(rows) == {"hinge", "lsgan"}
    for row in rows.values():
        assert row["n"] == "2" and row["seed"] == "{0, 1}" and row["status"] == "finished"
        jobs = [compare.load_run(Path(p)) for p in row["path"].split(";")]
        losses = [run.last_losses()["train/g_loss"] for run in jobs]
        assert float(row["train/g_loss"]) == statistics.mean(losses)
        assert float(row["train/g_loss std"]) == statistics.stdev(losses)


def test_a_row_of_many_seeds_is_short_in_the_table_and_whole_in_the_csv(tmp_path):
    fids = [20.0 + seed for seed in range(8)]
    seed_sweep(tmp_path, {"hinge": fids})
    comp = compare.build_comparison([tmp_path])
    row = dict(zip(comp.header(), comp.rows()[0], strict=True))
    assert row["run"] == "0, 1, …, 7" and row["seed"] == "{0, 1, 2, …, 7}" and row["n"] == "8"
    csv_row = read_csv(compare.write_csv(comp, tmp_path / "c.csv"))[0]
    assert csv_row["run"] == ", ".join(map(str, range(8))) and csv_row["seed"] == "{0, 1, 2, 3, 4, 5, 6, 7}"
    assert float(csv_row["val/fid best std"]) == statistics.stdev(fids)


def test_a_collapsed_row_puts_the_plots_on_a_log_axis(tmp_path):
    """A collapsed run (FID 3000 beside FIDs of 3) would flatten every other row: with positive values
    that span 100× or more the metric panels use a log axis; otherwise they stay linear."""
    for name, fids, scale in (("wide", {"hinge": [3.0, 3.5], "minimax": [3000.0, 2500.0]}, "log"),
                              ("narrow", {"hinge": [3.0, 3.5], "wgan": [5.0, 6.0]}, "linear")):  # fmt: skip
        seed_sweep(tmp_path / name, fids)
        comp = compare.compare([tmp_path / name], out=tmp_path / f"out_{name}", show=False)["comparison"]
        for fig in (
            compare.spread_figure(comp.groups, comp.metrics),
            compare.metrics_figure(comp.runs, comp.metrics, comp.groups),
        ):
            assert fig.axes[comp.metrics.index("val/fid")].get_yscale() == scale, name

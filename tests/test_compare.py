"""ganforge-compare: a real 3-job sweep (one job crashes) compared by the Hydra callback and the CLI;
runs in progress, diverged runs, skipped dirs and metric directions on run dirs built here."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from ganforge import compare
from ganforge.callbacks.hydra_compare import CompareOnMultirunEnd
from helpers import ROOT

PLOTS = ("comparison_losses.png", "comparison_metrics.png", "comparison_samples.png")
# train.steps=20 reaches CrashAt(18); 12 and 16 finish before it
SWEEP = [
    "model=mlp",
    "data=ring8",
    "logger=[csv]",
    "train.steps=12,16,24",
    "train.log_every=2",
    "train.sample_every=10",
    "+callbacks.crash._target_=helpers.CrashAt",
    "+callbacks.crash.step=18",  # at the end of the batch of steps 11-20 (10 a batch)
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``python -m ganforge.train -m`` with three tiny jobs, the last of which crashes."""
    tmp = tmp_path_factory.mktemp("sweep")
    sweep_dir = tmp / "multirun"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",  # tiny nets: threads only contend
    }
    proc = subprocess.run(
        [sys.executable, "-m", "ganforge.train", "-m", *SWEEP, f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    return sweep_dir, proc


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_png(path: Path) -> None:
    assert path.is_file(), path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= 300 and image.height >= 200, image.size
        assert len(set(image.convert("L").getdata())) > 10  # more than a blank canvas


@pytest.mark.slow
def test_sweep_end_writes_comparison_even_with_a_failed_job(sweep):
    sweep_dir, proc = sweep
    assert proc.returncode != 0, "a crashed job fails the sweep"
    assert "injected crash" in proc.stderr
    rows = {r["run"]: r for r in read_csv(sweep_dir / "comparison.csv")}
    assert set(rows) == {"0", "1", "2"}
    assert {k: r["status"] for k, r in rows.items()} == {"0": "finished", "1": "finished", "2": "crashed"}
    assert {k: r["train.steps"] for k, r in rows.items()} == {"0": "12", "1": "16", "2": "24"}
    assert {k: r["g_steps"] for k, r in rows.items()} == {"0": "12", "1": "16", "2": "20"}
    # only the override that differs is a column, not the common ones nor the whole config
    header = list(next(iter(rows.values())))
    assert "train.steps" in header
    assert not {"model", "data", "logger", "train.log_every", "callbacks.crash.step", "seed"} & set(header)
    md = (sweep_dir / "comparison.md").read_text()
    for name in PLOTS[:1] + PLOTS[2:]:
        check_png(sweep_dir / name)
        assert f"]({name})" in md


@pytest.mark.slow
def test_runs_log_their_group_choices(sweep):
    sweep_dir, _ = sweep
    hparams = yaml.safe_load((sweep_dir / "0" / "hparams.yaml").read_text())
    assert hparams["choice/loss"] == "nonsaturating"
    assert hparams["choice/model"] == "mlp"
    assert hparams["choice/data"] == "ring8"
    assert not any(k.startswith("choice/hydra") for k in hparams)


@pytest.mark.slow
def test_cli_table_sorted_by_metric(sweep, tmp_path, capsys):
    sweep_dir, _ = sweep
    out = tmp_path / "cmp"
    assert compare.main([str(sweep_dir), "--metric", "train/g_loss", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "train.steps" in printed and "crashed" in printed and "finished" in printed
    rows = read_csv(out / "comparison.csv")
    best = [float(r["train/g_loss best"]) for r in rows]
    assert best == sorted(best)  # losses are lower-is-better
    for name in PLOTS[:1] + PLOTS[2:]:
        check_png(out / name)


def test_a_metric_no_run_logged_is_one_line_and_writes_nothing(sweep, tmp_path, capsys):
    sweep_dir, _ = sweep
    out = tmp_path / "cmp"
    assert compare.main([str(sweep_dir), "--metric", "val/bogus", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "ganforge-compare: error: --metric val/bogus: no run logged it"
    )
    assert "train/g_loss" in err[0] and not out.exists()


# --- run dirs built here -------------------------------------------------------------------------------
def make_run(
    path: Path,
    overrides: list[str],
    rows: list[dict[str, float]],
    status: str | None = "finished",
    steps: int = 100,
) -> Path:
    """A run dir as ganforge-train leaves it: .hydra, metrics.csv, samples, summary.json (if status)."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"train": {"steps": steps}, "seed": 1}))
    keys = sorted({k for r in rows for k in r} | {"step", "trainer/g_step"})
    with open(path / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "step": row["trainer/g_step"]})
    (path / "samples").mkdir()
    noise = Image.effect_noise((64, 64), 60).convert("RGB")  # stands in for a sample grid
    noise.save(path / "samples" / f"step_{rows[-1]['trainer/g_step']:07d}.png")
    if status is not None:
        last = {k: v for r in rows for k, v in r.items()}
        summary = {"status": status, "g_steps": rows[-1]["trainer/g_step"], "steps_target": steps}
        summary.update(wall_time_s=12.5, last=last)
        (path / "summary.json").write_text(json.dumps(summary))
    return path


def curve(n: int, fid: list[float] | None = None, nan_at: int | None = None) -> list[dict[str, float]]:
    rows = []
    for i in range(1, n + 1):
        d = math.nan if nan_at is not None and i >= nan_at else 1.0 / i
        rows.append({"trainer/g_step": i * 10, "train/d_loss": d, "train/g_loss": 2.0 - d})
    for i, value in enumerate(fid or []):  # val/* rows of their own, as the metrics callback logs them
        rows.append({"trainer/g_step": (i + 1) * 10 * n // len(fid), "val/fid": value, "val/is": 10 - value})
    rows.sort(key=lambda r: r["trainer/g_step"])
    return rows


def test_statuses_partial_files_and_skipped_dirs(tmp_path):
    root = tmp_path / "runs"
    make_run(root / "a", ["loss=hinge", "optim.lr_d=1e-4"], curve(10, fid=[50, 30]))
    running = make_run(root / "b", ["loss=hinge", "optim.lr_d=2e-4"], curve(6, fid=[40]), status=None)
    with open(running / "metrics.csv", "a") as f:
        f.write("0.5,0.3,")  # a row being written right now
    make_run(root / "c", ["loss=lsgan", "optim.lr_d=1e-4"], curve(8, nan_at=7), status="crashed")
    make_run(root / "d", ["loss=lsgan", "optim.lr_d=1e-4"], curve(8, nan_at=7), status="diverged")
    (root / "e" / ".hydra").mkdir(parents=True)  # a job that never started training
    (root / "e" / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (tmp_path / "empty").mkdir()

    result = compare.compare(
        [root, tmp_path / "empty", tmp_path / "missing"], out=tmp_path / "out", show=False
    )
    comp = result["comparison"]
    status = {r.name: r.status for r in comp.runs}
    assert status == {"a": "finished", "b": "running", "c": "diverged", "d": "diverged"}
    assert [r.name for r in comp.runs][:2] == ["a", "b"]  # best val/fid first: 30 < 40; no fid last
    assert comp.keys == ["loss", "optim.lr_d"]
    assert comp.metric == "val/fid" and comp.metrics == ["val/fid", "val/is"]
    run_b = next(r for r in comp.runs if r.name == "b")
    assert run_b.steps == 60 and run_b.final("train/d_loss") == pytest.approx(1 / 6)
    skipped = {p.name: why for p, why in comp.skipped}
    assert set(skipped) == {"e", "empty", "missing"}
    assert "not started" in skipped["e"] and "does not exist" in skipped["missing"]
    md = (tmp_path / "out" / "comparison.md").read_text()
    assert "## Skipped" in md and "missing" in md
    for name in PLOTS:
        check_png(tmp_path / "out" / name)


def test_metric_direction_decides_the_order(tmp_path):
    make_run(tmp_path / "r1", ["seed=1"], curve(4, fid=[20, 10]))  # best fid 10, best is 0
    make_run(tmp_path / "r2", ["seed=2"], curve(4, fid=[30, 5]))  # best fid 5, best is 5
    make_run(tmp_path / "r3", ["seed=3"], curve(4, fid=[8, 9]))  # best fid 8, best is 2
    by_fid = compare.build_comparison([tmp_path], "val/fid")
    assert [r.name for r in by_fid.runs] == ["r2", "r3", "r1"]
    by_is = compare.build_comparison([tmp_path], "val/is")
    assert [r.name for r in by_is.runs] == ["r2", "r3", "r1"]
    assert by_is.runs[0].best("val/is") == 5 and by_is.runs[0].final("val/is") == 5
    assert by_fid.runs[-1].best("val/fid") == 10 and by_fid.runs[-1].final("val/fid") == 10


def test_hydra_callback_writes_on_multirun_end_and_never_raises(tmp_path, caplog):
    from omegaconf import OmegaConf

    shutil.rmtree(tmp_path, ignore_errors=True)
    make_run(tmp_path / "0", ["loss=hinge"], curve(5))
    make_run(tmp_path / "1", ["loss=wgan"], curve(5))
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    callback = CompareOnMultirunEnd()
    callback.on_multirun_end(config)
    assert [r["loss"] for r in read_csv(tmp_path / "comparison.csv")] == ["hinge", "wgan"]
    assert (tmp_path / "comparison_losses.png").is_file()

    (tmp_path / "0" / "metrics.csv").write_text("not,a\ncsv")  # damaged: still no exception
    (tmp_path / "0" / "summary.json").write_text("{")
    callback.write(tmp_path)
    assert [r["run"] for r in read_csv(tmp_path / "comparison.csv")] == ["1"]  # the other run still
    assert f"skipped {(tmp_path / '0').resolve()}: summary.json is not valid JSON" in caplog.text
    callback.write(tmp_path / "missing")
    assert "no runs" in caplog.text


def test_only_real_differences_are_columns(tmp_path):
    make_run(tmp_path / "a", ["train.steps=1e2", "loss=hinge"], curve(3), steps=100)
    make_run(tmp_path / "b", ["loss=lsgan"], curve(3), steps=100)  # steps 100 from its config
    comp = compare.build_comparison([tmp_path])
    assert comp.keys == ["loss"]
    assert [r.label for r in comp.runs] == ["loss=hinge", "loss=lsgan"]


# damaged files: (file, content, words of the reason)
DAMAGED = {
    "summary-list": ("summary.json", "[1, 2]", "summary.json holds a JSON list, not an object"),
    "summary-empty": ("summary.json", "", "summary.json is empty"),
    "summary-bad-json": ("summary.json", '{"status": "finished",', "summary.json is not valid JSON"),
    "summary-bad-field": ("summary.json", '{"status": "finished", "last": [1]}', "summary.json: last is"),
    "overrides-bad-yaml": (".hydra/overrides.yaml", "- loss=[hinge\n- a: {", ".hydra/overrides.yaml is not"),
    "config-not-mapping": (".hydra/config.yaml", "- 1\n- 2\n", ".hydra/config.yaml holds a list"),
    "metrics-binary": ("metrics.csv", b"\xff\xfe\x00garbage\n", "metrics.csv cannot be read"),
    "metrics-no-step": ("metrics.csv", "a,b\n1,2\n", "metrics.csv is not a metrics table"),
}


@pytest.mark.parametrize("kind", list(DAMAGED))
def test_a_damaged_run_is_listed_with_its_reason_and_the_others_compared(tmp_path, capsys, kind):
    name, content, reason = DAMAGED[kind]
    root = tmp_path / "runs"
    make_run(root / "good1", ["loss=hinge"], curve(5, fid=[40]))
    make_run(root / "good2", ["loss=lsgan"], curve(5, fid=[30]), status=None)  # running: no summary
    bad = make_run(root / "bad", ["loss=wgan"], curve(5, fid=[20]))
    target = bad / name
    target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)

    assert compare.main([str(root), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    captured = capsys.readouterr()
    assert f"skipped {bad.resolve()}: {reason}" in captured.err
    rows = read_csv(tmp_path / "out" / "comparison.csv")
    assert [(r["run"], r["status"]) for r in rows] == [("good2", "running"), ("good1", "finished")]
    assert "bad" not in captured.out.split("written:")[0]
    md = (tmp_path / "out" / "comparison.md").read_text()
    assert f"`{bad.resolve()}`: {reason}" in md.split("## Skipped")[1]


# --- readable tables and plots ------------------------------------------------------------------------
AUGMENT = ["[color,translation,cutout]", "[color]", "null"]


def many_runs(root: Path, n: int = 10, points: int = 12) -> None:
    """``n`` runs that differ in a list-valued override, a long key and a boolean."""
    for i in range(n):
        overrides = [
            f"train.diffaugment={AUGMENT[i % 3]}",
            f"optim.lr_d={i + 1}e-4",
            f"model.discriminator.an_uncommonly_long_option_name={'true' if i % 2 else 'false'}",
        ]
        make_run(root / f"run_with_a_long_name_{i}", overrides, curve(points, fid=[60 - i, 50 - i]))


def table_cells(text: str) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of a rich table as printed, each cell's wrapped lines joined (spaces dropped)."""
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    mid = next(i for i, line in enumerate(lines) if line.startswith("┡"))
    bottom = next(i for i, line in enumerate(lines) if line.startswith("└"))
    cuts = [i for i, ch in enumerate(lines[mid]) if ch in "┡╇┩"]

    def cells(line: str) -> list[str]:
        return [line[a + 1 : b].replace(" ", "") for a, b in zip(cuts, cuts[1:], strict=False)]

    header = ["".join(parts) for parts in zip(*(cells(line) for line in lines[top + 1 : mid]), strict=True)]
    rows: list[list[str]] = []
    for line in lines[mid + 1 : bottom]:
        parts = cells(line)
        if parts[0]:  # a new row (every row has a run name)
            rows.append(parts)
        else:  # a wrapped cell's next line
            rows[-1] = [a + b for a, b in zip(rows[-1], parts, strict=True)]
    return header, rows


def test_terminal_table_keeps_list_values_and_cuts_nothing_when_wide(tmp_path):
    many_runs(tmp_path)
    comp = compare.build_comparison([tmp_path])
    assert comp.keys == [
        "train.diffaugment",
        "optim.lr_d",
        "model.discriminator.an_uncommonly_long_option_name",
    ]
    for width in (200, 100):
        out = io.StringIO()
        compare.print_table(comp, file=out, width=width)
        text = out.getvalue()
        assert "…" not in text
        header, rows = table_cells(text)
        expected = [[c.replace(" ", "") for c in row] for row in comp.rows(compact=True)]
        assert rows == expected  # every value whole, list-valued overrides included
        assert header[1:4] == ["diffaugment", "lr_d", "an_uncommonly_long_option_name"]
        assert "diffaugment = train.diffaugment" in text  # the full keys of the short headers
        if width == 200:
            assert "[color,translation,cutout]" in text and "run_with_a_long_name_0" in text


def test_one_rendering_of_values_in_every_table(tmp_path):
    make_run(tmp_path / "a", ["train.ema.decay=0.999", "model.conditional=True", "data.aug=[a, b]"], curve(3))
    make_run(tmp_path / "b", ["data.aug=[c]"], curve(3, fid=[5]))
    config = {"train": {"steps": 100, "ema": {"decay": None}}, "model": {"conditional": False}}
    (tmp_path / "b" / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    comp = compare.build_comparison([tmp_path])
    assert comp.keys == ["train.ema.decay", "model.conditional", "data.aug"]
    rows = {row[0]: row for row in comp.rows()}
    assert rows["a"][1:4] == ["0.999", "true", "[a,b]"]
    assert rows["b"][1:4] == ["null", "false", "[c]"]
    assert rows["a"][-1] == rows["a"][-2] == "-"  # a never logged val/fid
    text = io.StringIO()
    compare.print_table(comp, file=text)
    assert not {"None", "True", "False"} & set(text.getvalue().split())
    # the same value written as an override and found in the config is no difference
    make_run(tmp_path / "c", ["data.aug=[a,b]"], curve(3))
    (tmp_path / "c" / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({**config, "data": {"aug": ["a", "b"]}})
    )
    make_run(tmp_path / "d", [], curve(3))
    (tmp_path / "d" / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({**config, "data": {"aug": ["a", "b"]}})
    )
    assert "data.aug" not in compare.build_comparison([tmp_path / "c", tmp_path / "d"]).keys


def test_loss_axes_show_every_point_unless_a_run_shoots_off(tmp_path):
    make_run(tmp_path / "few", ["seed=1"], curve(12))  # 12 points of 1/i: the largest, 1.0, must show
    halved = [{k: v if k == "trainer/g_step" else v / 2 for k, v in r.items()} for r in curve(12)]
    make_run(tmp_path / "few2", ["seed=2"], halved)
    fig = compare.losses_figure(compare.build_comparison([tmp_path]).runs)
    for ax, key in zip(fig.axes, compare.LOSSES, strict=False):
        lo, hi = ax.get_ylim()
        values = [v for r in compare.build_comparison([tmp_path]).runs for _, v in r.series[key]]
        assert lo <= min(values) and max(values) <= hi, key

    steady = [1.0 + 0.1 * math.sin(i) for i in range(200)]
    assert compare.robust_limits(steady) is None
    lo, hi = compare.robust_limits([*steady, 1e6, 2e6, -5e5])
    assert lo <= min(steady) and max(steady) <= hi < 3
    assert compare.robust_limits([1.0, 2.0, 1e6]) is None  # a handful of points: all shown


def test_legend_of_ten_runs_is_whole_and_clear_of_the_panels(tmp_path):
    many_runs(tmp_path)
    comp = compare.build_comparison([tmp_path])
    for fig in (compare.losses_figure(comp.runs), compare.metrics_figure(comp.runs, comp.metrics)):
        fig.draw_without_rendering()
        legend = fig.legends[0].get_window_extent()
        page = fig.bbox
        assert page.x0 <= legend.x0 and legend.x1 <= page.x1 and page.y0 <= legend.y0 and legend.y1 <= page.y1
        panels = [ax.get_tightbbox() for ax in fig.axes if ax.get_visible() and ax.axison]
        assert legend.y1 <= min(p.y0 for p in panels)  # below every panel and its axis labels
        assert len(fig.legends[0].get_texts()) == 10
        assert all("…" not in t.get_text() for t in fig.legends[0].get_texts())


def test_montage_titles_clear_the_row_above(tmp_path):
    many_runs(tmp_path, n=8)
    tall = Image.effect_noise((64, 256), 60).convert("RGB")  # a conditional grid: taller than wide
    tall.save(tmp_path / "run_with_a_long_name_1" / "samples" / "step_0000120.png")
    comp = compare.build_comparison([tmp_path])
    fig = compare.samples_figure(comp.runs, comp.keys)
    fig.draw_without_rendering()
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 8
    for upper in axes[:4]:
        for lower in axes[4:]:
            assert not lower.title.get_window_extent().overlaps(upper.get_window_extent())
    for ax in axes:  # whole titles: every differing value is in it
        assert "diffaugment=" in ax.get_title().replace("\n", "")


# --- scale: the fast readers give what the reference ones gave ------------------------------------------
def reference_read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """The reader ganforge-compare had before it was made fast (csv.DictReader, every column)."""
    series: dict[str, list[tuple[int, float]]] = {}
    if not path.is_file():
        return series
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise compare.DamagedRun(f"{path.name} cannot be read ({compare._why(exc)})") from None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()
    reader = csv.DictReader(lines)
    try:
        if lines and not set(compare.STEP_KEYS) & set(reader.fieldnames or []):
            raise compare.DamagedRun(f"{path.name} is not a metrics table: no trainer/g_step or step column")
        rows = list(reader)
    except csv.Error as exc:
        raise compare.DamagedRun(f"{path.name} cannot be read ({compare._why(exc)})") from None
    for row in rows:
        step = next((row[k] for k in compare.STEP_KEYS if row.get(k) not in (None, "")), None)
        x = compare._float(step)
        if not math.isfinite(x):
            continue
        for key, cell in row.items():
            if key is None or key in compare.NOT_METRICS or cell in (None, ""):
                continue
            value = compare._float(cell)
            if not math.isnan(value) or cell.strip().lower() == "nan":
                series.setdefault(key, []).append((int(x), value))
    for values in series.values():
        values.sort(key=lambda p: p[0])
    return series


def reference_load_yaml(path: Path) -> object:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def reference_add_legend(fig, runs, colors, panels_height):
    fig.draw_without_rendering()  # what _add_legend did before measuring its legend
    return FAST["_add_legend"](fig, runs, colors, panels_height)


FAST = {"_add_legend": compare._add_legend}

CSV_CASES = {
    "plain": "step,train/d_loss,train/g_loss,trainer/g_step,val/fid\n10,1,2,10,\n10,,,10,40\n"
    "20,0.5,nan,20,\n",
    "repeated-column": "step,train/d_loss,train/d_loss,trainer/g_step\n10,1,3,10\n20,2,,20\n",
    "short-and-long-rows": "step,train/d_loss,train/x,trainer/g_step\n10,1\n20,2,5,20,99,98\n\n30,3,,30\n",
    "being-written": "trainer/g_step,train/d_loss,train/lr\n10,1,0.1\n20,2,0.1\n30,3",
    "odd-cells": "step,train/d_loss,train/lr\n10,x,0.1\n 20 ,inf,\nnan,1,1\n40,NaN,-inf\n50,,7\n",
    "other-column-last": "step,train/d_loss,train/lr,trainer/g_step\n10,1,,10\n20,,0.5,20\n",
    "empty": "",
    "header-only": "step,train/d_loss\n",
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_fast_metrics_reader_reads_what_the_reference_read(tmp_path, case):
    path = tmp_path / "metrics.csv"
    path.write_text(CSV_CASES[case])
    expected = reference_read_metrics(path)
    expected = dict(sorted(expected.items()))  # the order of the columns is never shown
    assert repr(dict(sorted(compare.read_metrics(path).items()))) == repr(expected)  # nan is nan
    shown = compare._read_metrics(path, keep=lambda k: k == "train/d_loss" or k.startswith("val/"))
    series, others, last = shown
    shown_expected = {k: v for k, v in expected.items() if k == "train/d_loss" or k.startswith("val/")}
    assert repr(dict(sorted(series.items()))) == repr(shown_expected)
    assert others == set(expected) - set(series)
    assert last == max((v[-1][0] for v in expected.values()), default=None)


YAML_CASES = {
    "config": "train:\n  steps: 100\n  lr: 1e-4\n  betas: [0.5, 0.999]\nb: ${train.steps}\n"
    "when: 2024-01-02\n",
    "hydra": "hydra:\n  sweep:\n    dir: multirun/${now:%Y-%m-%d}_${now:%H-%M-%S}\n  runtime:\n    choices:\n"
    "      loss: hinge\n      optim/scheduler: null\n",
    "overrides": "- loss=hinge\n- optim.lr_d=1e-4\n- data.aug=[a, b]\n",
    "keys": "1: a\n1.5: b\ntrue: c\n'': d\n",
    "empty": "",
    "bad-interpolation": "a: ${oops\n",
    "duplicate-key": "a: 1\na: 2\n",
    "null-key": "null: 1\n",
    "scalar": "just text\n",
    "number": "3\n",
    "binary": "a: !!binary aGVsbG8=\n",
    "set": "a: !!set {x, y}\n",
    "broken": "a: [1, 2\n",
    "tabs": "a:\n\t- 1\n",
    "control-character": "a: b\x07c\n",
    "byte-order-mark": "\ufeffa: 1\n",
    "crlf": "a: 1\r\nb: [1, 2]\r\n",
}


@pytest.mark.parametrize("case", list(YAML_CASES))
def test_fast_yaml_reads_what_omegaconf_read(tmp_path, case):
    path = tmp_path / ".hydra" / "config.yaml"
    path.parent.mkdir()
    path.write_text(YAML_CASES[case])

    def outcome(load):
        try:
            return ("ok", repr(load(path)))
        except Exception as exc:  # noqa: BLE001 - the same error type and words, or the same value
            return ("error", compare._why(exc))

    assert outcome(compare._load_yaml) == outcome(reference_load_yaml)


def same_outputs(a: Path, b: Path) -> None:
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for pa in a.iterdir():
        pb = b / pa.name
        if pa.suffix == ".png":
            with Image.open(pa) as ia, Image.open(pb) as ib:
                assert ia.size == ib.size and ia.tobytes() == ib.tobytes(), pa.name
        elif pa.suffix == ".md":  # but for its time stamp
            strip = [line for line in pa.read_text().splitlines() if "written " not in line]
            assert strip == [line for line in pb.read_text().splitlines() if "written " not in line]
        else:
            assert pa.read_bytes() == pb.read_bytes(), pa.name


@pytest.mark.parametrize("metric", [None, "train/g_loss"])
def test_output_is_what_the_reference_readers_and_plots_gave(tmp_path, monkeypatch, capsys, metric):
    root = tmp_path / "runs"
    many_runs(root, n=5)
    make_run(root / "diverged", ["loss=lsgan"], curve(8, nan_at=7), status="diverged")
    running = make_run(root / "running", ["loss=hinge"], curve(6, fid=[40]), status=None)
    with open(running / "metrics.csv", "a") as f:
        f.write("0.5,0.3,")
    (root / "bad").mkdir()
    (root / "bad" / "summary.json").write_text("{")
    extra = ["--metric", metric] if metric else []

    assert compare.main([str(root), "--out", str(tmp_path / "new"), *extra]) == 0
    new = capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(compare.load, "_load_yaml", reference_load_yaml)
        m.setattr(
            compare.load, "_read_metrics", lambda path, keep=None: (reference_read_metrics(path), set(), None)
        )
        m.setattr(compare.plots, "_add_legend", reference_add_legend)
        assert compare.main([str(root), "--out", str(tmp_path / "ref"), *extra]) == 0
    ref = capsys.readouterr()
    assert new.err == ref.err and new.out.replace("/new/", "/ref/") == ref.out
    same_outputs(tmp_path / "new", tmp_path / "ref")


# --- a place that cannot be written ----------------------------------------------------------------------
def test_an_unwritable_out_is_one_line_exit_2_before_reading_runs(tmp_path, monkeypatch, capsys):
    make_run(tmp_path / "runs" / "a", ["loss=hinge"], curve(3))
    (tmp_path / "file").write_text("x")
    places = [tmp_path / "file" / "out", tmp_path / "file"]
    if os.geteuid() != 0:  # root writes into a read-only folder anyway
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        places += [locked, locked / "out"]
    if Path("/proc").is_dir():  # read-only for root too
        places.append(Path("/proc/ganforge-compare-out"))

    def no_reading(*args, **kwargs):
        raise AssertionError("runs read before the destination was checked")

    monkeypatch.setattr(compare.cli, "build_comparison", no_reading)
    for out in places:
        assert compare.main([str(tmp_path / "runs"), "--out", str(out)]) == 2, out
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(
            f"ganforge-compare: error: cannot write the comparison into {out}"
        )
    assert not (tmp_path / "file" / "out").exists()

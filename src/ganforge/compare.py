"""``ganforge-compare DIR...``: runs side by side from their run dirs alone (no W&B, no network).

Each DIR is a run dir or any folder holding run dirs (a multirun dir, ``outputs/train``). The
result is a table (terminal, ``comparison.md``, ``comparison.csv``) with one row per run, the
overrides that differ between the runs, steps, wall time, status and the final/best value of
every ``val/*`` metric, sorted by the chosen metric; and PNG plots next to it: D/G loss curves,
``val/*`` curves and a montage of each run's latest sample grid. Runs in progress and crashed
runs are read from whatever they have written so far.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganforge.directions import best as best_of
from ganforge.directions import mode

LOSSES = ("train/d_loss", "train/g_loss")
STEP_KEYS = ("trainer/g_step", "step")
NOT_METRICS = {"step", "epoch", "trainer/g_step", "trainer/global_step"}
MAX_DEPTH = 4  # how deep below a given DIR run dirs are looked for
MONTAGE_MAX = 36  # sample grids in the montage (the best runs first)
# the default metric to sort by: the first of these that any run logged, else the first val/* by name
PREFERRED = ("val/fid", "val/kid", "val/reverse_kl", "val/modes", "val/hq_frac", "val/is")
PLOTS = {
    "losses": "comparison_losses.png",
    "metrics": "comparison_metrics.png",
    "samples": "comparison_samples.png",
}


# --- reading runs ------------------------------------------------------------------------------------
@dataclass
class Run:
    """What one run dir holds: overrides, summary, metric curves, the latest sample grid."""

    path: Path
    overrides: dict[str, str]
    summary: dict[str, Any] | None
    series: dict[str, list[tuple[int, float]]]
    config: dict[str, Any] = field(default_factory=dict)
    choices: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    label: str = ""

    @property
    def status(self) -> str:
        """summary.json's status (finished, stopped, preempted, crashed), ``running`` without one,
        ``diverged`` when the last D or G loss is NaN/Inf (or the summary says so)."""
        status = (self.summary or {}).get("status", "running")
        if status != "running" and any(not math.isfinite(v) for v in self.last_losses().values()):
            return "diverged"
        return status

    def last_losses(self) -> dict[str, float]:
        """The last logged D and G losses (summary.json's, else metrics.csv's)."""
        last = dict((self.summary or {}).get("last") or {})
        out = {}
        for key in LOSSES:
            value = last.get(key)
            if value is None and self.series.get(key):
                value = self.series[key][-1][1]
            if value is not None:
                out[key] = _float(value)
        return out

    @property
    def steps(self) -> int:
        if self.summary and self.summary.get("g_steps") is not None:
            return int(self.summary["g_steps"])
        return max((s[-1][0] for s in self.series.values() if s), default=0)

    @property
    def steps_target(self) -> int | None:
        target = (self.summary or {}).get("steps_target")
        if target is None:
            target = (self.config.get("train") or {}).get("steps")
        return int(target) if target is not None else None

    @property
    def wall_time(self) -> float | None:
        """Seconds of training (summary.json); for a run in progress, seconds since it started."""
        if self.summary and self.summary.get("wall_time_s") is not None:
            return float(self.summary["wall_time_s"])
        files = [p for p in (self.path / "metrics.csv", self.path / ".hydra" / "config.yaml") if p.exists()]
        if len(files) < 2:
            return None
        return max(0.0, files[0].stat().st_mtime - files[1].stat().st_mtime)

    def final(self, metric: str) -> float | None:
        """The last logged value of ``metric`` (None when it was never logged)."""
        values = self.series.get(metric)
        if values:
            return values[-1][1]
        last = (self.summary or {}).get("last") or {}
        return _float(last[metric]) if metric in last else None

    def best(self, metric: str) -> float | None:
        """The best value of ``metric`` over the run (its direction from ``ganforge.directions``)."""
        values = [v for _, v in self.series.get(metric, [])]
        recorded = ((self.summary or {}).get("best") or {}).get(metric)
        if isinstance(recorded, dict):
            recorded = recorded.get("value")
        if recorded is not None:
            values.append(_float(recorded))
        if not values and self.final(metric) is not None:
            values.append(self.final(metric))  # type: ignore[arg-type]
        return best_of(metric, values)

    def metric_names(self) -> set[str]:
        names = set(self.series)
        names.update(((self.summary or {}).get("best") or {}).keys())
        return names

    def latest_samples(self) -> Path | None:
        """The sample grid of the highest step in ``samples/`` (None when there is none)."""
        grids = sorted((self.path / "samples").glob("step_*.png"))
        return grids[-1] if grids else None


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Every column of a CSVLogger ``metrics.csv`` as (generator step, value) pairs, empty cells skipped.

    Tolerates files being written: a last line without its newline and unparsable cells are ignored.
    """
    series: dict[str, list[tuple[int, float]]] = {}
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return series
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()  # still being written
    for row in csv.DictReader(lines):
        step = next((row[k] for k in STEP_KEYS if row.get(k) not in (None, "")), None)
        x = _float(step)
        if not math.isfinite(x):
            continue
        for key, cell in row.items():
            if key is None or key in NOT_METRICS or cell in (None, ""):
                continue
            value = _float(cell)
            if not math.isnan(value) or cell.strip().lower() == "nan":
                series.setdefault(key, []).append((int(x), value))
    for values in series.values():
        values.sort(key=lambda p: p[0])
    return series


def _yaml(path: Path) -> Any:
    """A YAML file as plain containers; None when missing or unreadable (a run is never an error)."""
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False) if path.is_file() else None
    except Exception:  # noqa: BLE001 - damaged or half-written
        return None


def parse_overrides(lines: Iterable[str]) -> dict[str, str]:
    """``["loss=hinge", "+x.y=1"]`` -> ``{"loss": "hinge", "x.y": "1"}`` (``+``/``++``/``~`` dropped)."""
    out: dict[str, str] = {}
    for line in lines:
        key, _, value = str(line).partition("=")
        out[key.lstrip("+~")] = value
    return out


def load_run(path: Path) -> Run:
    """Read one run dir; missing or damaged files give empty parts, never an error."""
    hydra = path / ".hydra"
    overrides = parse_overrides(_yaml(hydra / "overrides.yaml") or [])
    summary = None
    if (path / "summary.json").is_file():
        try:
            summary = json.loads((path / "summary.json").read_text())
        except (OSError, ValueError):
            summary = None  # being written: treat as running
    hydra_cfg = _yaml(hydra / "hydra.yaml") or {}
    choices = ((hydra_cfg.get("hydra") or {}).get("runtime") or {}).get("choices") or {}
    return Run(
        path=path,
        overrides=overrides,
        summary=summary,
        series=read_metrics(path / "metrics.csv"),
        config=_yaml(hydra / "config.yaml") or {},
        choices=choices,
    )


def _is_run_dir(path: Path) -> bool:
    return any((path / name).exists() for name in (".hydra/config.yaml", "metrics.csv", "summary.json"))


def find_runs(dirs: Sequence[Path], exclude: Path | None = None) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Run dirs under ``dirs`` and the dirs skipped with the reason, for the user to see."""
    found: list[Path] = []
    skipped: list[tuple[Path, str]] = []

    def walk(path: Path, depth: int) -> int:
        if depth > 0 and exclude is not None and path.resolve() == exclude.resolve():
            return 0  # our own output folder
        if _is_run_dir(path):
            if not (path / "metrics.csv").exists() and not (path / "summary.json").exists():
                skipped.append((path, "no metrics.csv or summary.json yet (not started, or failed on setup)"))
                return 0
            found.append(path)
            return 1
        if depth >= MAX_DEPTH:
            return 0
        children = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
        children.sort(key=lambda p: natural_key(p.name))
        return sum(walk(child, depth + 1) for child in children)

    for d in dirs:
        if not d.exists():
            skipped.append((d, "does not exist"))
        elif not d.is_dir():
            skipped.append((d, "not a directory"))
        elif walk(d, 0) == 0 and not any(s[0].is_relative_to(d) for s in skipped):
            skipped.append(
                (d, "no run dirs inside (a run dir has .hydra/config.yaml, metrics.csv or summary.json)")
            )
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique, skipped


# --- what differs ------------------------------------------------------------------------------------
def _actual(run: Run, key: str) -> str:
    """The value ``key`` had in ``run`` when it did not override it: a group choice or a config value."""
    if key in run.choices:
        value = run.choices[key]
        return "null" if value is None else str(value)
    node: Any = run.config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return "-"
        node = node[part]
    if isinstance(node, dict):  # a group selected as a list (logger=[csv,wandb]): its members
        return "[" + ",".join(node) + "]"
    return json.dumps(node) if isinstance(node, list) else str(node)


def _same(value: str) -> str:
    """A value written so that ``2e-4`` and ``0.0002`` (override vs. config) compare equal."""
    try:
        return repr(float(value))
    except ValueError:
        return value.strip().replace(" ", "")


def differing_overrides(runs: Sequence[Run]) -> list[str]:
    """Override keys whose value differs between runs (where a run lacks the key, its actual value counts)."""
    keys = list(dict.fromkeys(k for run in runs for k in run.overrides))
    differing = []
    for key in keys:
        values = {_same(run.overrides.get(key, _actual(run, key))) for run in runs}
        if len(values) > 1:
            differing.append(key)
    return differing


def _name_runs(runs: Sequence[Run], keys: Sequence[str]) -> None:
    """``name``: the path below the runs' common folder; ``label``: the differing overrides (or the name)."""
    paths = [r.path for r in runs]
    common = Path(*_common_parts(paths)) if len(paths) > 1 else paths[0].parent
    for run in runs:
        rel = run.path.relative_to(common) if run.path != common else Path(run.path.name)
        run.name = str(rel)
        parts = [f"{k}={run.overrides.get(k, _actual(run, k))}" for k in keys]
        run.label = " ".join(parts) or run.name


def _common_parts(paths: Sequence[Path]) -> list[str]:
    parts = [p.parts for p in paths]
    common = []
    for items in zip(*parts, strict=False):
        if len(set(items)) != 1:
            break
        common.append(items[0])
    return common or ["/"]


# --- the table ---------------------------------------------------------------------------------------
def pick_metric(runs: Sequence[Run], metric: str | None) -> str | None:
    """``metric`` as given; by default the first of ``PREFERRED`` logged, else the first ``val/*``."""
    if metric:
        return metric
    names = sorted({n for r in runs for n in r.metric_names() if n.startswith("val/")})
    return next((n for n in PREFERRED if n in names), names[0] if names else None)


def natural_key(text: str) -> list[Any]:
    """Sort key that puts ``2`` before ``10`` (job numbers, dates)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def sort_runs(runs: list[Run], metric: str | None) -> list[Run]:
    """Best first by ``metric`` (runs without it last), then by name."""
    runs = sorted(runs, key=lambda r: natural_key(r.name))
    if metric is None:
        return runs
    best = {id(r): r.best(metric) for r in runs}  # never NaN (directions.best skips it)
    sign = 1 if mode(metric) == "min" else -1
    with_value = sorted((r for r in runs if best[id(r)] is not None), key=lambda r: sign * best[id(r)])
    return with_value + [r for r in runs if best[id(r)] is None]


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4g}"


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class Comparison:
    """The table of a set of runs, ready to print or write."""

    runs: list[Run]
    keys: list[str]
    metric: str | None
    metrics: list[str]
    skipped: list[tuple[Path, str]]

    def header(self, compact: bool = False) -> list[str]:
        cols = ["run", *self.keys, "status", "steps", "wall time", "d_loss", "g_loss"]
        for name in self.metrics:
            if compact and name != self.metric:
                cols.append(f"{name} best")
            else:
                cols += [f"{name} final", f"{name} best"]
        return cols

    def rows(self, compact: bool = False) -> list[list[str]]:
        rows = []
        for run in self.runs:
            target = run.steps_target
            losses = run.last_losses()
            row = [run.name, *(run.overrides.get(k, _actual(run, k)) for k in self.keys)]
            row += [
                run.status,
                f"{run.steps}/{target}" if target else str(run.steps),
                _fmt_time(run.wall_time),
                _fmt(losses.get("train/d_loss")),
                _fmt(losses.get("train/g_loss")),
            ]
            for name in self.metrics:
                if not (compact and name != self.metric):
                    row.append(_fmt(run.final(name)))
                row.append(_fmt(run.best(name)))
            rows.append(row)
        return rows

    def csv_rows(self) -> tuple[list[str], list[list[Any]]]:
        """Machine-readable: raw numbers, separate steps/target columns, the run's full path."""
        header = ["run", "path", *self.keys, "status", "g_steps", "steps_target", "wall_time_s"]
        header += ["train/d_loss", "train/g_loss"]
        for name in self.metrics:
            header += [f"{name} final", f"{name} best"]
        rows = []
        for run in self.runs:
            losses = run.last_losses()
            row: list[Any] = [
                run.name,
                str(run.path),
                *(run.overrides.get(k, _actual(run, k)) for k in self.keys),
            ]
            row += [run.status, run.steps, run.steps_target, run.wall_time]
            row += [losses.get("train/d_loss"), losses.get("train/g_loss")]
            for name in self.metrics:
                row += [run.final(name), run.best(name)]
            rows.append(["" if v is None else v for v in row])
        return header, rows


def build_comparison(
    dirs: Sequence[Path], metric: str | None = None, exclude: Path | None = None
) -> Comparison:
    """Find and read the runs under ``dirs`` and line them up (no files written)."""
    paths, skipped = find_runs(dirs, exclude=exclude)
    runs = [load_run(p) for p in paths]
    keys = differing_overrides(runs) if len(runs) > 1 else []
    if runs:
        _name_runs(runs, keys)
    metric = pick_metric(runs, metric)
    metrics = sorted({n for r in runs for n in r.metric_names() if n.startswith("val/")})
    if metric:  # the chosen one first, also when it is not a val/* metric
        metrics = [metric, *(m for m in metrics if m != metric)]
    return Comparison(sort_runs(runs, metric), keys, metric, metrics, skipped)


# --- plots -------------------------------------------------------------------------------------------
def _figure_grid(rows: int, cols: int, width: float, height: float) -> tuple[Any, Any]:
    """A matplotlib Figure and its axes grid, without pyplot (no global backend or figure state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.subplots(rows, cols, squeeze=False)


def smooth(values: Sequence[float], weight: float | None = None) -> list[float]:
    """Debiased exponential moving average (TensorBoard's smoothing); the weight grows with the length."""
    if weight is None:
        weight = min(0.9, max(0.0, 1 - 8 / max(len(values), 1)))
    out, avg, norm = [], 0.0, 0.0
    for v in values:
        avg = weight * avg + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out.append(avg / norm)
    return out


def _robust_ylim(ax: Any, values: list[float]) -> None:
    """Keep the axes on the bulk of the curves when a diverging run shoots off."""
    finite = sorted(v for v in values if math.isfinite(v))
    if len(finite) < 10:
        return
    lo, hi = finite[int(0.01 * len(finite))], finite[int(0.99 * len(finite)) - 1]
    if hi > lo:
        pad = 0.1 * (hi - lo)
        ax.set_ylim(lo - pad, hi + pad)


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _legend(fig: Any, runs: Sequence[Run], colors: Sequence[Any]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, lw=2) for c in colors]
    labels = [f"{r.name}: {r.label}" if r.label != r.name else r.name for r in runs]
    labels = [text if len(text) <= 90 else text[:89] + "…" for text in labels]
    fig.legend(handles, labels, loc="lower center", ncol=min(2, len(runs)), fontsize=8, frameon=False)


def _figure(n_panels: int, n_runs: int) -> tuple[Any, list[Any], float]:
    """Panels, three to a row, with room below for the legend (one line per two runs)."""
    from matplotlib.ticker import MaxNLocator

    cols = min(3, n_panels)
    rows = math.ceil(n_panels / cols)
    legend_in = 0.18 * math.ceil(n_runs / 2) + 0.25
    height = 3.6 * rows + legend_in
    fig, axes = _figure_grid(rows, cols, 5.2 * cols, height)
    for ax in axes.flat[n_panels:]:
        ax.axis("off")
    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, list(axes.flat[:n_panels]), legend_in / height


def plot_losses(runs: Sequence[Run], path: Path) -> Path | None:
    """D and G loss of every run against the generator step: smoothed lines, the raw values faint."""
    if not any(r.series.get(k) for r in runs for k in LOSSES):
        return None
    fig, axes, bottom = _figure(2, len(runs))
    colors = _colors(len(runs))
    for ax, key in zip(axes, LOSSES, strict=True):
        seen: list[float] = []
        for run, color in zip(runs, colors, strict=True):
            points = [(s, v) for s, v in run.series.get(key, []) if math.isfinite(v)]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, color=color, alpha=0.2, lw=0.8)
            ax.plot(xs, smooth(ys), color=color, lw=1.6)
            seen.extend(ys)
        _robust_ylim(ax, seen)
        ax.set_title(key)
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
    _legend(fig, runs, colors)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path)
    return path


def plot_metrics(runs: Sequence[Run], metrics: Sequence[str], path: Path) -> Path | None:
    """Every ``val/*`` metric against the generator step, one panel each."""
    metrics = [m for m in metrics if any(r.series.get(m) for r in runs)]
    if not metrics:
        return None
    fig, axes, bottom = _figure(len(metrics), len(runs))
    colors = _colors(len(runs))
    for ax, name in zip(axes, metrics, strict=True):
        for run, color in zip(runs, colors, strict=True):
            points = [(s, v) for s, v in run.series.get(name, []) if math.isfinite(v)]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, color=color, marker="o", ms=3, lw=1.4)
        ax.set_title(f"{name} ({'lower' if mode(name) == 'min' else 'higher'} is better)")
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
    _legend(fig, runs, colors)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path)
    return path


def plot_samples(runs: Sequence[Run], path: Path) -> Path | None:
    """Each run's latest sample grid, labelled with its differing overrides and step."""
    import textwrap

    from PIL import Image

    shown = list(runs[:MONTAGE_MAX])
    if not any(r.latest_samples() for r in shown):
        return None
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = _figure_grid(rows, cols, 3.4 * cols, 3.9 * rows)
    for ax in axes.flat:
        ax.axis("off")
    for ax, run in zip(axes.flat, shown, strict=False):
        grid = run.latest_samples()
        label = run.label if run.label == run.name else f"{run.name}: {run.label}"
        title = "\n".join(textwrap.wrap(label, 38)[:3])
        if grid is None:
            ax.text(0.5, 0.5, "no samples yet", ha="center", va="center", color="gray")
            ax.set_title(f"{title}\n{run.status}", fontsize=8)
            continue
        with Image.open(grid) as image:
            ax.imshow(image.convert("RGB"))
        step = grid.stem.removeprefix("step_").lstrip("0") or "0"
        ax.set_title(f"{title}\nstep {step}, {run.status}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


# --- output ------------------------------------------------------------------------------------------
def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_markdown(comp: Comparison, plots: dict[str, Path], path: Path) -> Path:
    """``comparison.md``: the table, the plots (linked relative to it) and the skipped dirs."""
    lines = ["# Run comparison", ""]
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    sort = (
        f"sorted by best `{comp.metric}` ({mode(comp.metric)})" if comp.metric else "no val/* metric logged"
    )
    lines += [f"{len(comp.runs)} runs, {sort}; written {when} by `ganforge-compare`.", ""]
    if comp.keys:
        lines += ["Overrides that differ: " + ", ".join(f"`{k}`" for k in comp.keys) + ".", ""]
    lines += [_md_table(comp.header(), comp.rows()), ""]
    titles = {"losses": "Losses", "metrics": "Metrics", "samples": "Latest samples"}
    for key, plot in plots.items():
        lines += [f"## {titles[key]}", "", f"![{titles[key]}]({plot.name})", ""]
    if comp.skipped:
        lines += ["## Skipped", ""]
        lines += [f"- `{p}`: {why}" for p, why in comp.skipped]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def write_csv(comp: Comparison, path: Path) -> Path:
    header, rows = comp.csv_rows()
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def print_table(comp: Comparison, file: Any = None) -> None:
    """The compact table, with rich, on the terminal (stdout by default)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout)
    if not console.is_terminal:
        console.width = max(console.width, 200)  # a pipe or file: don't squeeze the columns to 80
    title = f"{len(comp.runs)} runs" + (f", best {comp.metric} first" if comp.metric else "")
    table = Table(title=title)
    styles = {
        "finished": "green",
        "stopped": "yellow",
        "preempted": "yellow",
        "crashed": "red",
        "diverged": "magenta",
        "running": "cyan",
    }
    header = comp.header(compact=True)
    for col in header:
        table.add_column(col, justify="right" if col not in ("run", "status", *comp.keys) else "left")
    status_at = header.index("status")
    for row in comp.rows(compact=True):
        style = styles.get(row[status_at], "")
        row[status_at] = f"[{style}]{row[status_at]}[/{style}]" if style else row[status_at]
        table.add_row(*row)
    console.print(table)


def compare(
    dirs: Sequence[str | Path],
    metric: str | None = None,
    out: str | Path | None = None,
    plots: bool = True,
    show: bool = True,
) -> dict[str, Any]:
    """Compare the runs under ``dirs``; write table and plots into ``out``; returns what it wrote.

    ``out`` defaults to the single DIR given, or ``./comparison`` for several.
    """
    paths = [Path(d) for d in dirs]
    out_dir = Path(out) if out else (paths[0] if len(paths) == 1 else Path("comparison"))
    comp = build_comparison(paths, metric, exclude=out_dir)
    for p, why in comp.skipped:
        print(f"ganforge-compare: skipped {p}: {why}", file=sys.stderr)
    result: dict[str, Any] = {"comparison": comp, "files": {}}
    if not comp.runs:
        return result
    out_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    if plots:
        for key, fn in (
            ("losses", lambda p: plot_losses(comp.runs, p)),
            ("metrics", lambda p: plot_metrics(comp.runs, comp.metrics, p)),
            ("samples", lambda p: plot_samples(comp.runs, p)),
        ):
            written = fn(out_dir / PLOTS[key])
            if written is not None:
                made[key] = written
    files = {
        "md": write_markdown(comp, made, out_dir / "comparison.md"),
        "csv": write_csv(comp, out_dir / "comparison.csv"),
        **made,
    }
    result["files"] = files
    if show:
        print_table(comp)
        print(f"written: {files['md']} (+ comparison.csv, {len(made)} plots)")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ganforge-compare``; exit code 1 when no run was found, 2 for a metric none logged."""
    parser = argparse.ArgumentParser(
        prog="ganforge-compare",
        description="Compare ganforge runs: a table and plots from run dirs or multirun dirs.",
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run dirs, multirun dirs or folders of runs")
    parser.add_argument(
        "--metric", default=None, help="sort by this metric (default: val/fid, else the first val/* logged)"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="where to write comparison.md/.csv and plots (default: DIR, or ./comparison)",
    )
    parser.add_argument("--no-plots", action="store_true", help="only the table")
    args = parser.parse_args(argv)
    if args.metric:  # a metric no run logged would sort by nothing: say so before writing anything
        runs = build_comparison([Path(d) for d in args.dirs]).runs
        logged = sorted({n for r in runs for n in r.metric_names()})
        if runs and args.metric not in logged:
            shown = ", ".join(n for n in logged if n.startswith(("val/", "train/"))) or "none"
            print(
                f"ganforge-compare: error: --metric {args.metric}: no run logged it; logged: {shown}",
                file=sys.stderr,
            )
            return 2
    result = compare(args.dirs, metric=args.metric, out=args.out, plots=not args.no_plots)
    if not result["comparison"].runs:
        print("ganforge-compare: error: no runs found", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

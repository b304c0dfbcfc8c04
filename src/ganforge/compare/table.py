"""The comparison table: what differs between runs, their order, and the table on the terminal,
in ``comparison.md`` and in ``comparison.csv``."""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganforge.compare.load import LOSSES, DamagedRun, Run, find_runs, load_run, natural_key
from ganforge.directions import mode

# the default metric to sort by: the first of these that any run logged, else the first val/* by name
PREFERRED = ("val/fid", "val/kid", "val/reverse_kl", "val/modes", "val/hq_frac", "val/is")


# --- what differs ------------------------------------------------------------------------------------
MISSING = "-"  # a cell with no value: a key the run's config lacks, a metric it never logged


def yaml_text(value: Any) -> str:
    """A config value as every table shows it, the way YAML and overrides write it: ``true``,
    ``false``, ``null``, ``0.0002``, ``[color,translation]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):  # a group selected as a list (logger=[csv,wandb]): its members
        return "[" + ",".join(map(str, value)) + "]"
    if isinstance(value, list):
        return "[" + ",".join(yaml_text(v) for v in value) + "]"
    return str(value)


def override_text(text: str) -> str:
    """An override's value rendered as :func:`yaml_text` renders the value it sets (``True`` and
    ``NULL`` are Hydra's ``true`` and ``null``; ``[a, b]`` is ``[a,b]``)."""
    text = text.strip()
    if text.lower() in ("true", "false", "null"):
        return text.lower()
    if text.startswith("[") and text.endswith("]"):
        return "[" + ",".join(part.strip() for part in text[1:-1].split(",")) + "]"
    return text


def value_of(run: Run, key: str) -> str:
    """``key``'s value in ``run``: its override, else its group choice or config value, else ``-``."""
    if key in run.overrides:
        return override_text(run.overrides[key])
    if key in run.choices:
        return yaml_text(run.choices[key])
    node: Any = run.config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return yaml_text(node)


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
        values = {_same(value_of(run, key)) for run in runs}
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
        parts = [f"{k}={value_of(run, k)}" for k in keys]
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
        return MISSING
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4g}"


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
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
            row = [run.name, *(value_of(run, k) for k in self.keys)]
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
                *(value_of(run, k) for k in self.keys),
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
    runs = []
    for path in paths:
        try:  # the curves shown (losses, val/*, the chosen metric); the other metrics by name
            runs.append(
                load_run(path, keep=lambda key: key in LOSSES or key.startswith("val/") or key == metric)
            )
        except DamagedRun as exc:  # listed with the reason; the other runs are still compared
            skipped.append((path, str(exc)))
    keys = differing_overrides(runs) if len(runs) > 1 else []
    if runs:
        _name_runs(runs, keys)
    metric = pick_metric(runs, metric)
    metrics = sorted({n for r in runs for n in r.metric_names() if n.startswith("val/")})
    if metric:  # the chosen one first, also when it is not a val/* metric
        metrics = [metric, *(m for m in metrics if m != metric)]
    return Comparison(sort_runs(runs, metric), keys, metric, metrics, skipped)


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


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Column headers for override keys: the shortest dotted suffix that tells each key from the
    others (``train.ema.decay`` -> ``decay``), so that a wide table keeps its headers readable."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if sum(1 for k in keys if k == tail or k.endswith("." + tail)) == 1:
                short[key] = tail
                break
        else:
            short[key] = key
    return short


def print_table(comp: Comparison, file: Any = None, width: int | None = None) -> None:
    """The compact table, with rich, on the terminal (stdout by default).

    Cells are plain text (an override such as ``[color,cutout]`` is never read as markup). Run names,
    statuses and numbers are never cut: override values wrap inside their columns, override keys
    are shortened in the headers (the full keys below the table), and a table that cannot fit even
    so is printed wider than the terminal rather than cut.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=file or sys.stdout, width=width)
    if not console.is_terminal and width is None:
        console.width = max(console.width, 200)  # a pipe or file: don't squeeze the columns to 80
    title = f"{len(comp.runs)} runs" + (f", best {comp.metric} first" if comp.metric else "")
    styles = {
        "finished": "green",
        "stopped": "yellow",
        "preempted": "yellow",
        "crashed": "red",
        "diverged": "magenta",
        "collapsed": "magenta",
        "running": "cyan",
    }
    short = short_keys(comp.keys)
    renamed = [f"{short[k]} = {k}" for k in comp.keys if short[k] != k]
    table = Table(title=Text(title), caption=Text("; ".join(renamed)) if renamed else None)
    header = comp.header(compact=True)
    rows = comp.rows(compact=True)
    for i, col in enumerate(header):
        if col in short:  # override values (lists, long paths) wrap inside their column
            table.add_column(Text(short[col]), overflow="fold")
            continue
        widest = max((len(row[i]) for row in rows), default=1)
        left = col in ("run", "status")
        table.add_column(Text(col), justify="left" if left else "right", min_width=widest, overflow="fold")
    status_at = header.index("status")
    for row in rows:
        cells = [Text(cell) for cell in row]
        cells[status_at].stylize(styles.get(row[status_at], ""))
        table.add_row(*cells)
    console.print(table, crop=False)  # too wide even so: longer lines (the terminal wraps them), no cut

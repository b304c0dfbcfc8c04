"""The comparison table: what differs between runs, which runs share a row (by default those whose
configs differ only in the seed, shown as mean ± std), their order, and the table on the terminal,
in ``comparison.md`` and in ``comparison.csv``."""

from __future__ import annotations

import csv
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
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


# --- rows of several runs ----------------------------------------------------------------------------
ALL_BUT_SEED = "all-but-seed"  # the default grouping: runs whose configs differ only in `seed` share a row
# config keys that say where and under which name a run went, not what it trained: never split a row
BOOKKEEPING = ("seed", "task_name", "tags", "paths", "hydra")


class UnknownKey(ValueError):
    """A ``--group-by`` key that no run has (the message lists the keys there are)."""


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation (``None`` below two values) and count of a row's values."""

    mean: float | None
    std: float | None
    n: int


def spread(values: Sequence[float]) -> Spread:
    """The :class:`Spread` of ``values`` (statistics.mean/stdev; NaN/Inf among them: a NaN std)."""
    n = len(values)
    if n == 0:
        return Spread(None, None, 0)
    if not all(math.isfinite(v) for v in values):  # statistics.stdev cannot take them
        return Spread(sum(values) / n, math.nan if n > 1 else None, n)
    return Spread(statistics.mean(values), statistics.stdev(values) if n > 1 else None, n)


@dataclass
class Group:
    """The runs shown as one row of the table: equal in the grouping keys (by default: everything but
    the seed), so that their spread is the seed's and not a difference of setup."""

    runs: list[Run]
    name: str = ""
    label: str = ""

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def names(self) -> str:
        """Every run's name (``name`` shortens a long list: ``0, 12, …, 1988``)."""
        return ", ".join(run.name for run in self.runs)

    def values(self, metric: str, which: str = "best") -> list[float]:
        """Each run's ``best`` or ``final`` value of ``metric`` (runs that never logged it left out)."""
        get = Run.best if which == "best" else Run.final
        return [v for v in (get(run, metric) for run in self.runs) if v is not None]

    def spread(self, metric: str, which: str = "best") -> Spread:
        """Mean ± std over the runs of their ``which`` value of ``metric``."""
        return spread(self.values(metric, which))

    def loss_spread(self, key: str) -> Spread:
        """Mean ± std of the runs' last D or G loss."""
        return spread([v for v in (run.last_losses().get(key) for run in self.runs) if v is not None])


def group_keys(group_by: str | Sequence[str] | None) -> str | list[str] | None:
    """``group_by`` as :func:`build_comparison` takes it: :data:`ALL_BUT_SEED`, None or ``"none"``
    (one row per run), ``"a,b"`` or a list of keys."""
    if group_by is None or group_by == ALL_BUT_SEED:
        return group_by
    parts = group_by.split(",") if isinstance(group_by, str) else list(group_by)
    keys = [k.strip() for k in parts if k.strip()]
    if keys == ["none"]:
        return None
    if not keys:
        raise UnknownKey(f"{group_by!r}: no key given (give KEY[,KEY], or none for one row per run)")
    return keys


def config_keys(config: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys of every value in ``config`` (lists are values, as a table shows them)."""
    keys = []
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            keys += config_keys(value, dotted + ".")
        else:
            keys.append(dotted)
    return keys


def unexplained_config(runs: Sequence[Run], keys: Sequence[str]) -> list[str]:
    """Config keys (not bookkeeping such as ``seed`` or ``paths``) whose value differs between runs
    that agree on ``keys``: a change of the config files that no override explains (the config
    values a group choice such as ``loss=hinge`` brings along are explained by it)."""
    known = set(keys)
    config = list(dict.fromkeys(k for run in runs for k in config_keys(run.config)))
    config = [k for k in config if k not in known and k.split(".")[0] not in BOOKKEEPING]
    same_keys = group_runs(runs, [k for k in keys if k != "seed"])
    return [k for k in config if any(len({_same(value_of(r, k)) for r in g.runs}) > 1 for g in same_keys)]


def _known_keys_text(runs: Sequence[Run]) -> str:
    """The keys ``--group-by`` accepts, short: overrides, group choices, config sections as ``x.*``."""
    keys = {k for run in runs for k in run.overrides}
    keys |= {k for run in runs for k in run.choices if not k.startswith("hydra")}
    for run in runs:
        keys |= {k if not isinstance(v, dict) or not v else f"{k}.*" for k, v in run.config.items()}
    return ", ".join(sorted(keys))


def check_keys(runs: Sequence[Run], keys: Sequence[str]) -> None:
    """Raise :class:`UnknownKey` for a key none of ``runs`` has: grouping by it would merge every run."""
    import difflib

    for key in keys:
        if any(value_of(run, key) != MISSING for run in runs):
            continue
        every = {k for run in runs for k in (*run.overrides, *run.choices, *config_keys(run.config))}
        close = difflib.get_close_matches(key, sorted(every), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UnknownKey(f"{key}: no run has this key{hint}; known keys: {_known_keys_text(runs)}")


def group_runs(runs: Sequence[Run], by: Sequence[str]) -> list[Group]:
    """Runs with equal values of the keys ``by`` (``2e-4`` equal to ``0.0002``) as groups, in the
    order of their first run by name."""
    groups: dict[tuple[str, ...], list[Run]] = {}
    for run in sorted(runs, key=lambda r: natural_key(r.name)):
        groups.setdefault(tuple(_same(value_of(run, k)) for k in by), []).append(run)
    return [Group(members) for members in groups.values()]


def _distinct(group: Group, key: str) -> list[str]:
    """``key``'s values in the runs of ``group``, each once (``2e-4`` and ``0.0002`` are one value)."""
    by_value: dict[str, str] = {}
    for run in group.runs:
        text = value_of(run, key)
        by_value.setdefault(_same(text), text)
    return list(by_value.values())


def group_value(group: Group, key: str, limit: int | None = 6) -> str:
    """``key``'s value in a row: the one value its runs share, else ``{a, b}`` (the seeds of a row),
    more than ``limit`` of them shortened to ``{0, 1, 2, …, 165}`` (None: all of them)."""
    values = _distinct(group, key)
    if len(values) == 1:
        return values[0]
    values.sort(key=natural_key)
    if limit is not None and len(values) > limit:
        values = [*values[: limit - 3], "…", values[-1]]
    return "{" + ", ".join(values) + "}"


def _name_groups(groups: Sequence[Group], keys: Sequence[str]) -> None:
    """``name``: its runs' names; ``label``: the values its runs share (as a run's label) and n."""
    for group in groups:
        names = [run.name for run in group.runs]
        group.name = ", ".join(names if len(names) <= 4 else [*names[:2], "…", names[-1]])
        shared = [f"{k}={group_value(group, k)}" for k in keys if len(_distinct(group, k)) == 1]
        group.label = " ".join(shared) or group.name
        if group.n > 1:
            group.label += f" (n={group.n})"


def sort_groups(groups: list[Group], metric: str | None) -> list[Group]:
    """Best mean first by the runs' best ``metric`` (rows without it last), then by name."""
    groups = sorted(groups, key=lambda g: natural_key(g.runs[0].name))
    if metric is None:
        return groups
    means = {id(g): g.spread(metric).mean for g in groups}
    sign = 1 if mode(metric) == "min" else -1
    valued = {id(g) for g in groups if means[id(g)] is not None and not math.isnan(means[id(g)])}
    with_value = sorted((g for g in groups if id(g) in valued), key=lambda g: sign * means[id(g)])
    return with_value + [g for g in groups if id(g) not in valued]


# what "vs best" says of a row; the rule, for the table's notes and --help
VS_BEST = {
    "best": "the best mean",
    "within std": "differs from the best mean by at most the combined std sqrt(s² + s_best²): "
    "within the seed spread",
    "beyond std": "differs from the best mean by more than the combined std",
    "no std": "it or the best row has a single run (or a NaN/Inf value): no spread to judge by",
}


def vs_best(group: Group, best: Group | None, metric: str | None) -> str:
    """Whether ``group``'s mean best ``metric`` differs from the ``best`` row's by more than the
    combined standard deviation of the two (see :data:`VS_BEST`)."""
    if metric is None or best is None:
        return MISSING
    mine = group.spread(metric)
    if mine.mean is None:
        return MISSING
    if group is best:
        return "best"
    top = best.spread(metric)
    if mine.std is None or top.std is None or top.mean is None or math.isnan(mine.std + top.std):
        return "no std"
    within = abs(mine.mean - top.mean) <= math.hypot(mine.std, top.std)
    return "within std" if within else "beyond std"


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


def _fmt_spread(stats: Spread, n: int) -> str:
    """``mean ± std`` (a single value: the value), with how many runs it is of when not all ``n``."""
    if stats.mean is None:
        return MISSING
    text = _fmt(stats.mean) if stats.std is None else f"{_fmt(stats.mean)} ± {_fmt(stats.std)}"
    return text if stats.n == n else f"{text} (n={stats.n})"


def _steps_text(steps: Sequence[int], targets: Sequence[int | None]) -> str:
    """``steps/target`` of a run, ``low–high/target`` of a row whose runs stopped at different steps."""
    done = str(steps[0]) if len(set(steps)) == 1 else f"{min(steps)}–{max(steps)}"
    target = targets[0] if len(set(targets)) == 1 else None
    return f"{done}/{target}" if target else done


def _status_text(statuses: Sequence[str]) -> str:
    """A row's status: its runs' common one, else how many runs have each (``2 finished, 1 crashed``)."""
    counts = dict.fromkeys(statuses, 0)
    for status in statuses:
        counts[status] += 1
    if len(counts) == 1:
        return statuses[0]
    return ", ".join(f"{n} {status}" for status, n in counts.items())


@dataclass
class Comparison:
    """The table of a set of runs, ready to print or write: one row per run, or with ``groups`` one
    row per group of runs (mean ± std, n and "vs best")."""

    runs: list[Run]
    keys: list[str]
    metric: str | None
    metrics: list[str]
    skipped: list[tuple[Path, str]]
    groups: list[Group] | None = None  # None: one row per run
    group_by: str | list[str] | None = None  # ALL_BUT_SEED or the keys the groups share
    verdicts: dict[int, str] = field(default_factory=dict)  # id(group) -> vs best

    @property
    def judged(self) -> bool:
        """Whether "vs best" is shown: some row has a spread (two runs or more)."""
        return self.groups is not None and any(g.n > 1 for g in self.groups)

    def grouping_text(self) -> str:
        """How runs share rows, in words."""
        if self.groups is None:
            return "one row per run"
        if self.group_by == ALL_BUT_SEED:
            return "runs whose configs differ only in seed share a row"
        return "runs with equal " + ", ".join(self.group_by or []) + " share a row"

    def header(self, compact: bool = False) -> list[str]:
        cols = ["run", *self.keys]
        if self.groups is not None:
            cols += ["n", "vs best"] if self.judged else ["n"]
        cols += ["status", "steps", "wall time", "d_loss", "g_loss"]
        for name in self.metrics:
            if compact and name != self.metric:
                cols.append(f"{name} best")
            else:
                cols += [f"{name} final", f"{name} best"]
        return cols

    def rows(self, compact: bool = False) -> list[list[str]]:
        if self.groups is not None:
            return [self._group_row(g, compact) for g in self.groups]
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

    def _group_row(self, group: Group, compact: bool) -> list[str]:
        """A row of several runs: shared values, n, "vs best" and mean ± std of every number."""
        times = [t for t in (run.wall_time for run in group.runs) if t is not None]
        row = [group.name, *(group_value(group, k) for k in self.keys), str(group.n)]
        if self.judged:
            row.append(self.verdicts.get(id(group), MISSING))
        row += [
            _status_text([run.status for run in group.runs]),
            _steps_text([run.steps for run in group.runs], [run.steps_target for run in group.runs]),
            _fmt_time(statistics.mean(times) if times else None),
            _fmt_spread(group.loss_spread("train/d_loss"), group.n),
            _fmt_spread(group.loss_spread("train/g_loss"), group.n),
        ]
        for name in self.metrics:
            if not (compact and name != self.metric):
                row.append(_fmt_spread(group.spread(name, "final"), group.n))
            row.append(_fmt_spread(group.spread(name, "best"), group.n))
        return row

    def csv_rows(self) -> tuple[list[str], list[list[Any]]]:
        """Machine-readable: raw numbers, separate steps/target columns, the run's full path. Rows of
        several runs: means, with a std column after each and the count of runs that logged a metric."""
        if self.groups is not None:
            return self._group_csv_rows(self.groups)
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

    def _group_csv_rows(self, groups: Sequence[Group]) -> tuple[list[str], list[list[Any]]]:
        header = ["run", "path", *self.keys, "n", "vs best", "status", "g_steps", "steps_target"]
        header += ["wall_time_s", "train/d_loss", "train/d_loss std", "train/g_loss", "train/g_loss std"]
        for name in self.metrics:
            header += [f"{name} final", f"{name} final std", f"{name} best", f"{name} best std", f"{name} n"]
        rows = []
        for group in groups:
            targets = [t for t in (run.steps_target for run in group.runs) if t is not None]
            times = [t for t in (run.wall_time for run in group.runs) if t is not None]
            row: list[Any] = [group.names, ";".join(str(run.path) for run in group.runs)]
            verdict = self.verdicts.get(id(group), MISSING)
            row += [
                *(group_value(group, k, None) for k in self.keys),
                group.n,
                "" if verdict == MISSING else verdict,
            ]
            row += [_status_text([run.status for run in group.runs])]
            row += [statistics.mean(run.steps for run in group.runs)]
            row += [statistics.mean(targets) if targets else None, statistics.mean(times) if times else None]
            for key in LOSSES:
                stats = group.loss_spread(key)
                row += [stats.mean, stats.std]
            for name in self.metrics:
                final, best = group.spread(name, "final"), group.spread(name, "best")
                row += [final.mean, final.std, best.mean, best.std, best.n]
            rows.append(["" if v is None else v for v in row])
        return header, rows


def build_comparison(
    dirs: Sequence[Path],
    metric: str | None = None,
    exclude: Path | None = None,
    group_by: str | Sequence[str] | None = ALL_BUT_SEED,
) -> Comparison:
    """Find and read the runs under ``dirs`` and line them up (no files written).

    ``group_by``: :data:`ALL_BUT_SEED` (runs whose configs differ only in ``seed`` share a row), keys
    (runs with equal values of them share a row) or None (one row per run). An unknown key raises
    :class:`UnknownKey`.
    """
    by = group_keys(group_by)
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
    comp = Comparison(sort_runs(runs, metric), keys, metric, metrics, skipped)
    if by is None or not runs:
        return comp
    if by == ALL_BUT_SEED:  # what differs: the overrides and any config value, but the seed
        comp.keys = keys + (unexplained_config(runs, keys) if len(runs) > 1 else [])
        split = [k for k in comp.keys if k != "seed"]
    else:
        check_keys(runs, by)
        split = list(by)
        comp.keys = [*by, *(k for k in keys if k not in by)]
    groups = sort_groups(group_runs(runs, split), metric)
    _name_groups(groups, comp.keys)
    comp.groups, comp.group_by = groups, by
    best = groups[0] if metric and groups[0].spread(metric).mean is not None else None
    comp.verdicts = {id(g): vs_best(g, best, metric) for g in groups}
    return comp


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
    if comp.groups is None:
        lines += [f"{len(comp.runs)} runs, {sort}; written {when} by `ganforge-compare`.", ""]
    else:
        sort = sort.replace("sorted by best", "sorted by the mean of the runs' best")
        rows = f"{len(comp.groups)} rows ({comp.grouping_text()})"
        lines += [f"{len(comp.runs)} runs in {rows}, {sort}; written {when} by `ganforge-compare`.", ""]
    if comp.keys:
        what = "Overrides" if comp.groups is None else "Keys"
        lines += [f"{what} that differ: " + ", ".join(f"`{k}`" for k in comp.keys) + ".", ""]
    if comp.groups is not None:
        lines += [
            "Numbers are mean ± std over the runs of a row (n of them; `(n=k)`: only k logged it)."
            + (
                f" `vs best` compares each row's mean best `{comp.metric}` with the best row's:"
                if comp.judged
                else ""
            ),
            "",
        ]
        if comp.judged:
            lines += [f"- `{word}`: {meaning}" for word, meaning in VS_BEST.items()] + [""]
    lines += [_md_table(comp.header(), comp.rows()), ""]
    titles = {
        "losses": "Losses",
        "metrics": "Metrics",
        "spread": "Spread of each row's runs",
        "samples": "Latest samples",
    }
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
    title = f"{len(comp.runs)} runs"
    if comp.groups is not None:
        title += f" in {len(comp.groups)} rows (mean ± std)"
    title += f", best {comp.metric} first" if comp.metric else ""
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
    notes = renamed + (
        [f"{comp.grouping_text()}; vs best: within std = |mean - best| <= sqrt(std² + std_best²)"]
        if comp.judged
        else []
    )
    table = Table(title=Text(title), caption=Text("; ".join(notes)) if notes else None)
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
    verdict_at = header.index("vs best") if "vs best" in header else None
    verdict_styles = {"best": "bold green", "within std": "yellow"}
    for row in rows:
        cells = [Text(cell) for cell in row]
        cells[status_at].stylize(styles.get(row[status_at], ""))
        if verdict_at is not None:
            cells[verdict_at].stylize(verdict_styles.get(row[verdict_at], ""))
        table.add_row(*cells)
    console.print(table, crop=False)  # too wide even so: longer lines (the terminal wraps them), no cut

"""``ganforge-compare DIR...``: runs side by side from their run dirs alone (no W&B, no network).

Each DIR is a run dir or any folder holding run dirs (a multirun dir, ``outputs/train``). The
result is a table (terminal, ``comparison.md``, ``comparison.csv``) with one row per run, the
overrides that differ between the runs, steps, wall time, status and the final/best value of
every ``val/*`` metric, sorted by the chosen metric; and PNG plots next to it: D/G loss curves,
``val/*`` curves and a montage of each run's latest sample grid. Runs in progress and crashed
runs are read from whatever they have written so far; a run dir with a damaged file is listed
with the file and what is wrong with it, and the other runs are still compared.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganforge.directions import best as best_of
from ganforge.directions import mode

LOSSES = ("train/d_loss", "train/g_loss")
STEP_KEYS = ("trainer/g_step", "step")
NOT_METRICS = {"step", "epoch", "trainer/g_step", "trainer/global_step"}
# the summary.json fields read here and their JSON types (a field of another type makes the run damaged)
SUMMARY_FIELDS = {
    "status": str,
    "g_steps": (int, float),
    "steps_target": (int, float),
    "wall_time_s": (int, float),
    "last": dict,
    "best": dict,
}
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
    # metrics.csv columns read for their names only (not shown), and the highest step of any value
    other_metrics: set[str] = field(default_factory=set)
    last_step: int | None = None

    @property
    def status(self) -> str:
        """summary.json's status (finished, stopped, preempted, crashed, collapsed), ``running`` without one,
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
        ends = [s[-1][0] for s in self.series.values() if s]
        if self.last_step is not None:
            ends.append(self.last_step)
        return max(ends, default=0)

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
        names = set(self.series) | self.other_metrics
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


class DamagedRun(Exception):
    """A run dir holding a file that cannot be read as ganforge writes it: the run is listed with
    this reason instead of being compared (a wrong value would read as a real result)."""


def _why(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:120]}" if lines else type(exc).__name__


def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Every column of a CSVLogger ``metrics.csv`` as (generator step, value) pairs, empty cells skipped.

    Tolerates files being written: a last line without its newline and unparsable cells are ignored.
    A file that cannot be read, or whose header has no step column, raises :class:`DamagedRun`.
    """
    return _read_metrics(path)[0]


def _read_metrics(
    path: Path, keep: Callable[[str], bool] | None = None
) -> tuple[dict[str, list[tuple[int, float]]], set[str], int | None]:
    """:func:`read_metrics` of the columns ``keep`` accepts (all by default), with the names of the
    other columns that hold a value and the highest step of any value (None: no value)."""
    series: dict[str, list[tuple[int, float]]] = {}
    if not path.is_file():
        return series, set(), None
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedRun(f"{path.name} cannot be read ({_why(exc)})") from None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()  # still being written
    # csv.reader with the columns looked up once (what csv.DictReader gives, at a fraction of the cost:
    # a repeated column name counts with its last cell; cells past the header and blank lines are skipped)
    reader = csv.reader(lines)
    try:
        header = next(reader, None)
        if lines and not set(STEP_KEYS) & set(header or []):
            raise DamagedRun(f"{path.name} is not a metrics table: no {' or '.join(STEP_KEYS)} column")
        rows = list(reader)
    except csv.Error as exc:
        raise DamagedRun(f"{path.name} cannot be read ({_why(exc)})") from None
    columns = {key: i for i, key in enumerate(header or [])}  # a repeated name: its last column
    steps = [columns[k] for k in STEP_KEYS if k in columns]
    index = {key: i for key, i in columns.items() if key not in NOT_METRICS}
    kept = [(i, series.setdefault(key, [])) for key, i in index.items() if keep is None or keep(key)]
    others = [(key, i) for key, i in index.items() if not (keep is None or keep(key))]
    found: set[str] = set()  # the other columns seen with a value (only their names are kept)
    last: int | None = None
    for row in rows:
        if not row:
            continue
        n = len(row)
        step = next((row[i] for i in steps if i < n and row[i] != ""), None)
        x = _float(step)
        if not math.isfinite(x):
            continue
        s = int(x)
        hit = False
        for i, values in kept:
            cell = row[i] if i < n else ""
            if cell == "":
                continue
            value = _float(cell)
            if not math.isnan(value) or cell.strip().lower() == "nan":
                values.append((s, value))
                hit = True
        if others and (not hit or len(found) < len(others)):
            for key, i in others:
                if (key in found and (hit or (last is not None and last >= s))) or i >= n or row[i] == "":
                    continue
                value = _float(row[i])
                if not math.isnan(value) or row[i].strip().lower() == "nan":
                    found.add(key)
                    hit = True
        if hit and (last is None or s > last):
            last = s
    for key in [k for k, values in series.items() if not values]:
        del series[key]  # a column with no value: no series
    for values in series.values():
        values.sort(key=lambda p: p[0])
    return series, found, last


_LOADER: Any = None


def _fast_loader() -> Any:
    """OmegaConf's YAML loader (its float syntax, no timestamps, duplicate keys refused) on top of
    libyaml's C parser when PyYAML has it: OmegaConf's own pure-Python loader and its DictConfig
    nodes took most of the time on thousands of runs."""
    global _LOADER
    if _LOADER is None:
        import yaml
        from omegaconf._utils import get_yaml_loader

        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

        class FastOmegaConfLoader(base):  # type: ignore[misc, valid-type]
            def construct_mapping(self, node: Any, deep: bool = False) -> Any:
                keys = set()  # duplicate keys refused, as OmegaConf's loader does
                for key_node, _ in node.value:
                    if key_node.tag != yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG:
                        continue
                    if key_node.value in keys:
                        raise yaml.constructor.ConstructorError("duplicate key")
                    keys.add(key_node.value)
                return super().construct_mapping(node, deep=deep)

        reference = get_yaml_loader()  # OmegaConf's float syntax (1e-4), no timestamps
        resolvers = reference.yaml_implicit_resolvers
        FastOmegaConfLoader.yaml_implicit_resolvers = {k: list(v) for k, v in resolvers.items()}
        _LOADER = FastOmegaConfLoader
    return _LOADER


_PLAIN = (str, int, float, bool, type(None))
_GOOD_INTERPOLATIONS: set[str] = set()


def _plain(node: Any) -> bool:
    """Whether ``node`` is what ``OmegaConf.to_container(OmegaConf.create(node))`` gives back
    unchanged: dicts (keys str/int/float/bool), lists and scalars, interpolation strings that
    OmegaConf's grammar accepts. Anything else goes through OmegaConf itself (same value, same error)."""
    from omegaconf._utils import _is_interpolation_string

    stack = [node]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            for key, value in item.items():
                if type(key) not in (str, int, float, bool) or (type(key) is str and "${" in key):
                    return False
                stack.append(value)
        elif kind is list:
            stack.extend(item)
        elif kind is str:
            if "${" in item and item not in _GOOD_INTERPOLATIONS:
                try:
                    _is_interpolation_string(item, True)
                except Exception:  # noqa: BLE001 - a bad interpolation: OmegaConf says what
                    return False
                _GOOD_INTERPOLATIONS.add(item)  # every run of a sweep has the same ones: parsed once
        elif kind not in _PLAIN:
            return False
    return True


def _load_yaml(path: Path) -> Any:
    """``OmegaConf.to_container(OmegaConf.load(path), resolve=False)``, fast for the files ganforge
    writes; any file the fast path is not sure of (or cannot parse) is read by OmegaConf itself."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        if not yaml.reader.Reader.NON_PRINTABLE.search(text):  # else PyYAML's own reader says what
            data = yaml.load(text, Loader=_fast_loader())  # noqa: S506 - a SafeLoader subclass
            if data is None:
                return {}
            if type(data) in (dict, list) and _plain(data):
                return data
    except Exception:  # noqa: BLE001, S110 - read again below, by OmegaConf, for its error
        pass
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def _yaml(path: Path, kind: type = dict) -> Any:
    """A YAML file of the run as plain containers (None when missing); :class:`DamagedRun` when it
    cannot be parsed or holds something other than a ``kind`` (an empty file counts as empty)."""
    if not path.is_file():
        return None
    try:
        data = _load_yaml(path)
    except Exception as exc:  # noqa: BLE001 - OmegaConf raises many types for a damaged file
        raise DamagedRun(f"{_rel(path)} is not readable YAML ({_why(exc)})") from None
    if data == {}:
        return kind()
    if not isinstance(data, kind):
        raise DamagedRun(f"{_rel(path)} holds a {type(data).__name__}, not a {kind.__name__}")
    return data


def _rel(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name == ".hydra" else path.name


def read_summary(path: Path) -> dict[str, Any] | None:
    """``summary.json`` as a dict (None when missing: the run is still going); :class:`DamagedRun`
    when it is empty (a crash while writing it), not JSON or not a JSON object."""
    if not path.is_file():
        return None
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedRun(f"{path.name} cannot be read ({_why(exc)})") from None
    if not text.strip():
        raise DamagedRun(f"{path.name} is empty (the run stopped while writing it)")
    try:
        summary = json.loads(text)
    except ValueError as exc:
        raise DamagedRun(f"{path.name} is not valid JSON ({_why(exc)})") from None
    if not isinstance(summary, dict):
        raise DamagedRun(f"{path.name} holds a JSON {type(summary).__name__}, not an object")
    for key, kind in SUMMARY_FIELDS.items():
        if summary.get(key) is not None and not isinstance(summary[key], kind):
            raise DamagedRun(f"{path.name}: {key} is a JSON {type(summary[key]).__name__}")
    return summary


def parse_overrides(lines: Iterable[str]) -> dict[str, str]:
    """``["loss=hinge", "+x.y=1"]`` -> ``{"loss": "hinge", "x.y": "1"}`` (``+``/``++``/``~`` dropped)."""
    out: dict[str, str] = {}
    for line in lines:
        key, _, value = str(line).partition("=")
        out[key.lstrip("+~")] = value
    return out


def load_run(path: Path, keep: Callable[[str], bool] | None = None) -> Run:
    """Read one run dir; missing files give empty parts (a run in progress), a damaged one raises
    :class:`DamagedRun` with the file and what is wrong with it. ``keep``: the metrics whose curves
    are read (default: all; the others are known by name only)."""
    hydra = path / ".hydra"
    choices: Any = _yaml(hydra / "hydra.yaml") or {}
    for key in ("hydra", "runtime", "choices"):
        choices = choices.get(key) if isinstance(choices, dict) else None
    overrides = parse_overrides(_yaml(hydra / "overrides.yaml", list) or [])
    summary = read_summary(path / "summary.json")
    series, others, last_step = _read_metrics(path / "metrics.csv", keep)
    return Run(
        path=path,
        overrides=overrides,
        summary=summary,
        series=series,
        config=_yaml(hydra / "config.yaml") or {},
        choices=choices if isinstance(choices, dict) else {},
        other_metrics=others,
        last_step=last_step,
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


# --- plots -------------------------------------------------------------------------------------------
LEGEND_WRAP = 70  # characters per legend line: long labels wrap, never cut
TITLE_WRAP = 38  # characters per line of a montage title


def _figure_grid(
    rows: int, cols: int, width: float, height: float, heights: Sequence[float] | None = None
) -> tuple[Any, Any]:
    """A matplotlib Figure and its axes grid, without pyplot (no global backend or figure state);
    with row ``heights``, laid out by matplotlib's constrained layout (titles never overlap)."""
    from matplotlib.figure import Figure

    if heights is None:
        fig = Figure(figsize=(width, height), dpi=100)
        return fig, fig.subplots(rows, cols, squeeze=False)
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False, gridspec_kw={"height_ratios": list(heights)})


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


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values, linearly interpolated."""
    pos = q * (len(ordered) - 1)
    i = int(pos)
    return ordered[i] if i + 1 >= len(ordered) else ordered[i] + (pos - i) * (ordered[i + 1] - ordered[i])


def robust_limits(
    values: Sequence[float], min_points: int = 20, fence: float = 5.0
) -> tuple[float, float] | None:
    """Y-limits that leave out only far outliers (a diverging run shooting off), so the other curves
    stay readable: points more than ``fence`` widths of the central 90% beyond it. None (matplotlib's
    own limits: every point shown) when there is no such point or fewer than ``min_points`` points."""
    ordered = sorted(v for v in values if math.isfinite(v))
    if len(ordered) < min_points:
        return None
    lo, hi = _quantile(ordered, 0.05), _quantile(ordered, 0.95)
    width = max(hi - lo, 1e-3 * max(abs(lo), abs(hi)), 1e-12)
    kept = [v for v in ordered if lo - fence * width <= v <= hi + fence * width]
    if len(kept) == len(ordered):
        return None
    pad = 0.05 * max(kept[-1] - kept[0], width)
    return kept[0] - pad, kept[-1] + pad


def _limit_axes(ax: Any, values: Sequence[float]) -> None:
    """Apply :func:`robust_limits` and say on the panel how many points it left out."""
    limits = robust_limits(values)
    if limits is None:
        return
    ax.set_ylim(*limits)
    off = sum(1 for v in values if math.isfinite(v) and not limits[0] <= v <= limits[1])
    ax.text(
        0.99,
        0.98,
        f"{off} points off the axes",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=7,
        color="gray",
    )


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _add_legend(fig: Any, runs: Sequence[Run], colors: Sequence[Any], panels_height: float) -> Any:
    """One legend for all panels, below them; the figure grows (taller, and wider for long labels) so
    that the legend is whole and clear of the panels."""
    import textwrap

    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, lw=2) for c in colors]
    labels = [f"{r.name}: {r.label}" if r.label != r.name else r.name for r in runs]
    labels = ["\n".join(textwrap.wrap(text, LEGEND_WRAP, subsequent_indent="  ")) for text in labels]
    ncol = 1 if len(runs) <= 3 else 2
    legend = fig.legend(
        handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, fontsize=8, frameon=False
    )
    box = legend.get_window_extent()  # its size alone (no draw of every curve just to measure it)
    legend_w, legend_h = box.width / fig.dpi + 0.3, box.height / fig.dpi + 0.2
    height = panels_height + legend_h
    fig.set_size_inches(max(fig.get_figwidth(), legend_w), height)
    fig.tight_layout(rect=(0, legend_h / height, 1, 1))
    return legend


def _panels(n_panels: int) -> tuple[Any, list[Any], float]:
    """Panels, three to a row (the others hidden); the figure and the panels' height in inches."""
    from matplotlib.ticker import MaxNLocator

    cols = min(3, n_panels)
    rows = math.ceil(n_panels / cols)
    fig, axes = _figure_grid(rows, cols, 5.2 * cols, 3.6 * rows)
    for ax in axes.flat[n_panels:]:
        ax.axis("off")
    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, list(axes.flat[:n_panels]), 3.6 * rows


def losses_figure(runs: Sequence[Run]) -> Any | None:
    """D and G loss of every run against the generator step: smoothed lines, the raw values faint."""
    if not any(r.series.get(k) for r in runs for k in LOSSES):
        return None
    fig, axes, height = _panels(2)
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
        _limit_axes(ax, seen)
        ax.set_title(key)
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
    _add_legend(fig, runs, colors, height)
    return fig


def metrics_figure(runs: Sequence[Run], metrics: Sequence[str]) -> Any | None:
    """Every ``val/*`` metric against the generator step, one panel each."""
    metrics = [m for m in metrics if any(r.series.get(m) for r in runs)]
    if not metrics:
        return None
    fig, axes, height = _panels(len(metrics))
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
    _add_legend(fig, runs, colors, height)
    return fig


def samples_figure(runs: Sequence[Run], keys: Sequence[str] = ()) -> Any | None:
    """Each run's latest sample grid (2D runs: scatter plots, on the same axes for the same data),
    titled with its differing overrides ``keys`` (shortened as in the terminal table), step and
    status; every row as tall as its tallest grid and its titles."""
    import textwrap

    from PIL import Image

    shown = list(runs[:MONTAGE_MAX])
    if not any(r.latest_samples() for r in shown):
        return None
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    cell_w = 3.4
    pictures: list[Any] = []
    titles: list[str] = []
    short = short_keys(keys)
    for run in shown:
        grid = run.latest_samples()
        label = (
            " ".join([f"{run.name}:", *(f"{short[k]}={value_of(run, k)}" for k in keys)])
            if keys
            else run.name
        )
        title = "\n".join(textwrap.wrap(label, TITLE_WRAP))
        if grid is None:
            pictures.append(None)
            titles.append(f"{title}\n{run.status}")
            continue
        with Image.open(grid) as image:
            pictures.append(image.convert("RGB"))
        step = grid.stem.removeprefix("step_").lstrip("0") or "0"
        titles.append(f"{title}\nstep {step}, {run.status}")
    heights = []
    for r in range(rows):
        row = [p for p in pictures[r * cols : (r + 1) * cols] if p is not None]
        aspect = max((p.height / p.width for p in row), default=1.0)
        lines = max(t.count("\n") + 1 for t in titles[r * cols : (r + 1) * cols])
        heights.append(cell_w * aspect + 0.16 * lines + 0.15)
    fig, axes = _figure_grid(rows, cols, cell_w * cols, sum(heights), heights)
    for ax in axes.flat:
        ax.axis("off")
    for ax, picture, title in zip(axes.flat, pictures, titles, strict=False):
        if picture is None:
            ax.text(0.5, 0.5, "no samples yet", ha="center", va="center", color="gray")
        else:
            ax.imshow(picture, interpolation="nearest")
        ax.set_title(title, fontsize=8)
    return fig


def _save(fig: Any | None, path: Path) -> Path | None:
    if fig is None:
        return None
    import gc

    fig.savefig(path)
    fig.clear()  # a figure of thousands of curves is large: freed now, not next to the next one
    del fig
    gc.collect()
    return path


def plot_losses(runs: Sequence[Run], path: Path) -> Path | None:
    """:func:`losses_figure` as a PNG at ``path`` (None when no run logged a loss)."""
    return _save(losses_figure(runs), path)


def plot_metrics(runs: Sequence[Run], metrics: Sequence[str], path: Path) -> Path | None:
    """:func:`metrics_figure` as a PNG at ``path`` (None when no run logged a metric)."""
    return _save(metrics_figure(runs, metrics), path)


def plot_samples(runs: Sequence[Run], path: Path, keys: Sequence[str] = ()) -> Path | None:
    """:func:`samples_figure` as a PNG at ``path`` (None when no run has a sample grid yet)."""
    return _save(samples_figure(runs, keys), path)


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


def compare(
    dirs: Sequence[str | Path],
    metric: str | None = None,
    out: str | Path | None = None,
    plots: bool = True,
    show: bool = True,
    comparison: Comparison | None = None,
) -> dict[str, Any]:
    """Compare the runs under ``dirs``; write table and plots into ``out``; returns what it wrote.

    ``out`` defaults to the single DIR given, or ``./comparison`` for several. ``comparison``: the
    runs already read by :func:`build_comparison` (with ``exclude=out``), not read again.
    """
    paths = [Path(d) for d in dirs]
    out_dir = default_out(paths, out)
    comp = comparison if comparison is not None else build_comparison(paths, metric, exclude=out_dir)
    for p, why in comp.skipped if show else ():  # else the caller says it (the Hydra callback logs it)
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
            ("samples", lambda p: plot_samples(comp.runs, p, comp.keys)),
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


def default_out(paths: Sequence[Path], out: str | Path | None) -> Path:
    """Where the comparison goes: ``out``, else the single DIR given, else ``./comparison``."""
    return Path(out) if out else (paths[0] if len(paths) == 1 else Path("comparison"))


def unwritable(out: Path) -> str | None:
    """Why the comparison cannot be written into ``out`` (None: it can). Probed with a temporary file
    in ``out``, or in its nearest existing parent when it is still to be made, that is removed at once,
    so that a read-only place is refused before any run is read, and nothing is left behind."""
    import tempfile

    place = out
    while not place.exists():
        if place.is_symlink():  # a dangling link: mkdir would fail on it
            return f"{place} is a broken link"
        if place.parent == place:
            break
        place = place.parent
    if not place.is_dir():
        return f"{place} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=place):
            pass
    except OSError as exc:
        return f"{place} is not writable ({exc.strerror or type(exc).__name__})"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ganforge-compare``; exit code 1 when no run was found, 2 for a metric none
    logged or an ``--out`` that cannot be written."""
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
    paths = [Path(d) for d in args.dirs]
    out = default_out(paths, args.out)
    why = unwritable(out) if args.out is not None or out.exists() else None
    if why is not None:  # before reading thousands of runs
        hint = "" if args.out is not None else " (choose another place with --out)"
        print(
            f"ganforge-compare: error: cannot write the comparison into {out}: {why}{hint}", file=sys.stderr
        )
        return 2
    comp = build_comparison(paths, args.metric, exclude=out)  # read once, for the check and the table
    if args.metric:  # a metric no run logged would sort by nothing: say so before writing anything
        runs = comp.runs
        logged = sorted({n for r in runs for n in r.metric_names()})
        if runs and args.metric not in logged:
            shown = ", ".join(n for n in logged if n.startswith(("val/", "train/"))) or "none"
            print(
                f"ganforge-compare: error: --metric {args.metric}: no run logged it; logged: {shown}",
                file=sys.stderr,
            )
            return 2
    result = compare(args.dirs, metric=args.metric, out=out, plots=not args.no_plots, comparison=comp)
    if not result["comparison"].runs:
        print("ganforge-compare: error: no runs found", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

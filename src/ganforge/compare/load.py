"""Reading run dirs: metrics.csv, summary.json and the Hydra files of each run, found below the DIRs
given (run dirs, multirun dirs, folders of runs); a damaged file makes its run a :class:`DamagedRun`."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganforge.directions import best as best_of

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


def natural_key(text: str) -> list[Any]:
    """Sort key that puts ``2`` before ``10`` (job numbers, dates)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]

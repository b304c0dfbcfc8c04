"""How the files of a translation data set are laid out: which images pair up (pix2pix's ``A/`` + ``B/``
folders or side-by-side ``AB`` images) or belong to which domain (CycleGAN's ``trainA/`` ... ``testB/``),
and which are held out. Both indexers list a folder or .zip once (``list_layout``) and fail with one
readable line (:class:`DataError`) on a layout they cannot read."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ganforge.data.images import list_folders, list_layout
from ganforge.data.translation import DOMAINS, split_off
from ganforge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SIDES = ("A", "B")
LAYOUTS = ("auto", "ab_folders", "side_by_side")
CYCLEGAN_FOLDERS = ("trainA", "trainB", "testA", "testB")
CYCLEGAN_VAL = ("valA", "valB")  # held-out images some CycleGAN-layout sets have besides testA/, testB/
CYCLEGAN_LAYOUT = "expected the CycleGAN layout: trainA/, trainB/ (and testA/, testB/) folders of images"
EVAL_SPLITS = ("auto", "val", "test")  # data.eval_split: which held-out split the metrics and grids use


def check_eval_split(value: str) -> str:
    """``data.eval_split`` checked: auto, val or test; else a one-line ConfigError."""
    if value not in EVAL_SPLITS:
        raise ConfigError(
            f"data.eval_split must be auto (the data's default held-out split), val or test, got {value!r}."
        )
    return value


# --- the paired folder ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    """One pair: the A and B members (B is None for a side-by-side image), its name and label."""

    a: str
    b: str | None
    name: str
    label: int


@dataclass
class PairIndex:
    """The pairs of a paired folder, split into training and held-out, with the class names."""

    layout: str
    train: list[Pair]
    held_out: list[Pair]
    held_out_from: str
    classes: list[str]


def _stem(rel: str) -> str:
    """The pairing key: the relative path without its extension."""
    return PurePosixPath(rel).with_suffix("").as_posix()


def _examples(names: Iterable[str], k: int = 3) -> str:
    names = sorted(names)
    more = ", ..." if len(names) > k else ""
    return ", ".join(names[:k]) + more


def _labels(keys: list[str]) -> tuple[list[int], list[str]]:
    """Labels by parent folder name (as folder.py does); -1 for all when that is not a class structure."""
    parents = [PurePosixPath(k).parent for k in keys]
    if len(set(parents)) <= 1 or any(p == PurePosixPath(".") for p in parents):
        return [-1] * len(keys), []
    classes = sorted({p.name for p in parents})
    to_index = {c: i for i, c in enumerate(classes)}
    return [to_index[p.name] for p in parents], classes


def index_pairs(
    path: str | os.PathLike, layout: str = "auto", val_fraction: float = 0.1, eval_split: str = "auto"
) -> PairIndex:
    """Find the pairs of ``path`` (a folder or .zip); raises one-line :class:`DataError` s. The held-out
    pairs are those of ``eval_split`` (val/ or test/; auto: val/, else test/, else ``val_fraction``)."""
    check_eval_split(eval_split)
    expected = (
        "expected A/ and B/ folders whose images pair by matching file names (optionally inside "
        "train/, val/, test/), or side-by-side AB images (width = 2 x height, left half A) in "
        "train/, val/, test/ (pix2pix's layout)"
    )
    p, prefix, listed = list_layout(path, "paired image", "of image pairs", {*SIDES, *SPLITS}, expected)
    shown = p.resolve()
    # (split or "", side or "") -> {pairing key: member}
    groups: dict[tuple[str, str], dict[str, str]] = {}
    loose: list[str] = []
    for name, parts in listed:
        if len(parts) > 1 and parts[0] in SIDES:
            group, key = ("", parts[0]), "/".join(parts[1:])
        elif len(parts) > 2 and parts[0] in SPLITS and parts[1] in SIDES:
            group, key = (parts[0], parts[1]), "/".join(parts[2:])
        elif len(parts) > 1 and parts[0] in SPLITS:
            group, key = (parts[0], ""), "/".join(parts[1:])
        else:
            loose.append(name)
            continue
        stem = _stem(key)
        members = groups.setdefault(group, {})
        if stem in members:
            where = "/".join(x for x in group if x)
            raise DataError(
                f"{shown}: {members[stem]} and {name} have the same name apart from the extension, so "
                f"the pairs of {where}/ are ambiguous; keep one of them."
            )
        members[stem] = name
    has_ab = any(side for _, side in groups)
    has_sbs = any(split and not side for split, side in groups)
    if layout not in LAYOUTS:
        raise ConfigError(f"data.layout must be one of {', '.join(LAYOUTS)}, got {layout!r}.")
    if layout == "auto":
        if not (has_ab or has_sbs):
            raise DataError(
                f"{shown} matches neither paired layout: {expected}. Found {len(listed)} images, "
                f"e.g. {_examples(n for n, _ in listed)}."
            )
        layout = "ab_folders" if has_ab else "side_by_side"
    if layout == "ab_folders":
        return _index_ab(shown, groups, val_fraction, expected, eval_split)
    return _index_side_by_side(shown, groups, loose, prefix, val_fraction, eval_split)


def _labelled(layout: str, train: list[Pair], held: list[Pair], held_out_from: str) -> PairIndex:
    """The index, every pair labelled by its parent folder with one set of classes across both splits."""
    everything = train + held
    labels, classes = _labels([q.name for q in everything])
    out = [Pair(q.a, q.b, q.name, y) for q, y in zip(everything, labels, strict=True)]
    return PairIndex(layout, out[: len(train)], out[len(train) :], held_out_from, classes)


def _no_split(shown: Path, eval_split: str, has: str) -> None:
    """A one-line DataError when ``eval_split`` names a split the data lacks (``has``: what it has)."""
    if eval_split != "auto":
        raise DataError(
            f"data.eval_split={eval_split}: {shown} has no {eval_split}/ split ({has}); add {eval_split}/ "
            f"or use data.eval_split=auto."
        )


def _by_split(
    shown: Path,
    layout: str,
    splits: Iterable[str],
    pairs_of: Callable[[str], list[Pair]],
    val_fraction: float,
    eval_split: str,
) -> PairIndex:
    """Training pairs from train/, held out from ``eval_split``'s folder (auto: val/, else test/, else
    ``val_fraction`` of train/)."""
    splits = set(splits)
    source = "val" if "val" in splits else "test" if "test" in splits else "val_fraction"
    if eval_split != "auto":
        if eval_split not in splits:
            _no_split(shown, eval_split, f"it has {', '.join(s + '/' for s in sorted(splits))}")
        source = eval_split
    train = pairs_of("train")
    held = None if source == "val_fraction" else pairs_of(source)
    return _labelled(layout, *split_off(train, held, val_fraction), source)


def _index_ab(
    shown: Path,
    groups: dict[tuple[str, str], dict[str, str]],
    val_fraction: float,
    expected: str,
    eval_split: str = "auto",
) -> PairIndex:
    splits = sorted({split for split, side in groups if side})
    if not splits:
        raise DataError(f"{shown} has no A/ and B/ folders (data.layout=ab_folders); {expected}.")
    if "" in splits and len(splits) > 1:
        raise DataError(
            f"{shown} has A/ and B/ folders both at its top and inside {', '.join(s for s in splits if s)}/; "
            f"keep one of the two arrangements."
        )

    def pairs_of(split: str) -> list[Pair]:
        a, b = groups.get((split, "A"), {}), groups.get((split, "B"), {})
        where = f"{split}/" if split else ""
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        if only_a or only_b:
            raise DataError(
                f"{shown}: the images of {where}A/ and {where}B/ pair by name (path without extension), "
                f"but {len(only_a)} of the {len(a)} in {where}A/ have no namesake in {where}B/"
                f"{' (e.g. ' + _examples(only_a) + ')' if only_a else ''} and {len(only_b)} of the "
                f"{len(b)} in {where}B/ have none in {where}A/"
                f"{' (e.g. ' + _examples(only_b) + ')' if only_b else ''}."
            )
        return [Pair(a[k], b[k], k, -1) for k in sorted(a)]

    if splits == [""]:
        _no_split(shown, eval_split, "its A/ and B/ folders are at the top, not in train/, val/, test/")
        return _labelled("ab_folders", *split_off(pairs_of(""), None, val_fraction), "val_fraction")
    if "train" not in splits:
        raise DataError(f"{shown} has no training pairs: expected train/A/ and train/B/ folders.")
    return _by_split(shown, "ab_folders", splits, pairs_of, val_fraction, eval_split)


def _index_side_by_side(
    shown: Path,
    groups: dict[tuple[str, str], dict[str, str]],
    loose: list[str],
    prefix: str,
    val_fraction: float,
    eval_split: str = "auto",
) -> PairIndex:
    splits = {split: members for (split, side), members in groups.items() if split and not side}

    def pairs_of(members: dict[str, str]) -> list[Pair]:
        return [Pair(members[k], None, k, -1) for k in sorted(members)]

    if not splits:  # forced side_by_side on a folder without train/ val/ test/: every image trains
        _no_split(shown, eval_split, "no train/, val/ or test/ folders")
        names = sorted(loose)
        if not names:
            raise DataError(f"{shown} holds no side-by-side AB images (data.layout=side_by_side).")
        pairs = pairs_of({_stem(n[len(prefix) :]): n for n in names})
        return _labelled("side_by_side", *split_off(pairs, None, val_fraction), "val_fraction")
    if "train" not in splits:
        raise DataError(
            f"{shown} has no training images: side-by-side AB images go in train/ "
            f"(found only {', '.join(s + '/' for s in sorted(splits))})."
        )
    return _by_split(
        shown, "side_by_side", splits, lambda split: pairs_of(splits[split]), val_fraction, eval_split
    )


# --- CycleGAN's folders -----------------------------------------------------------------------------
@dataclass
class CycleGANIndex:
    """The images of a CycleGAN-layout source per domain, split into training and held-out."""

    train: tuple[list[str], list[str]]
    held_out: tuple[list[str], list[str]]
    held_out_from: tuple[str, str]  # "testA"/"testB", "valA"/"valB", or "val_fraction"


def index_cyclegan(
    path: str | os.PathLike, val_fraction: float = 0.1, eval_split: str = "auto"
) -> CycleGANIndex:
    """Find the images of ``path`` (a folder or .zip in CycleGAN's layout); one-line :class:`DataError` s.
    Held out: ``eval_split``'s folders (test: testA/, testB/; val: valA/, valB/), each required; auto:
    testA/ and testB/ where there, else ``val_fraction`` of the domain's training images."""
    held = "val" if check_eval_split(eval_split) == "val" else "test"
    used = ("trainA", "trainB", f"{held}A", f"{held}B")  # the folders read; any others are ignored
    p, prefix, listed = list_layout(
        path,
        "unpaired image",
        "with trainA/ and trainB/",
        {*CYCLEGAN_FOLDERS, *CYCLEGAN_VAL},
        CYCLEGAN_LAYOUT,
    )
    shown = p.resolve()
    groups: dict[str, list[str]] = {}
    others: set[str] = set()
    for name, parts in listed:
        if len(parts) > 1 and parts[0] in used:
            groups.setdefault(parts[0], []).append(name)
        else:
            others.add(parts[0] if len(parts) > 1 else ".")
    for side in ("trainA", "trainB"):
        if side in groups:
            continue
        if prefix + side in list_folders(p):
            raise DataError(
                f"{shown}: {prefix}{side}/ holds no images; domain {side[-1]} needs training images."
            )
        found = ", ".join(sorted(f + "/" if f != "." else "(top level)" for f in set(groups) | others))
        raise DataError(f"{shown} has no {prefix}{side}/ folder; {CYCLEGAN_LAYOUT}. Found images in {found}.")
    if others:
        log.warning(
            "%s: ignoring images outside %s (in %s)",
            shown,
            ", ".join(f + "/" for f in used),
            ", ".join(sorted(others)),
        )
    splits = []
    for side in DOMAINS:
        test = groups.get(f"{held}{side}")
        if test is None and eval_split != "auto":
            raise DataError(
                f"data.eval_split={eval_split}: {shown} has no {prefix}{held}{side}/ folder of held-out "
                f"images of domain {side}; add it or use data.eval_split=auto."
            )
        train, held_out = split_off(
            sorted(groups[f"train{side}"]), None if test is None else sorted(test), val_fraction
        )
        splits.append((train, held_out, "val_fraction" if test is None else f"{held}{side}"))
    (train_a, held_a, from_a), (train_b, held_b, from_b) = splits
    return CycleGANIndex((train_a, train_b), (held_a, held_b), (from_a, from_b))

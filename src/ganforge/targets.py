"""Which ``_target_``s a config read back from a checkpoint or a run dir may instantiate.

A stored config is data someone else may have written: instantiated as it is, its ``_target_`` (or a
``_partial_`` one) could name any importable callable (``builtins.open``, ``os.system``). Before a run
is rebuilt from one, every target in it, at any depth (inside a partial, a list, ``_args_``), must be
one ganforge itself writes: a target of the shipped config tree (ganforge's classes and the torch,
Lightning and W&B classes those configs name), or a class or function *defined* in a ganforge module
(``ganforge.config.instantiate`` is Hydra's, not ours, and is refused). Nothing is imported to decide
that but ganforge's own modules. A user's own class is allowed by naming it (``allow_targets``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import importlib.util
import inspect
import re
from collections.abc import Iterable, Iterator
from typing import Any

from omegaconf import OmegaConf

from ganforge import CONFIG_DIR
from ganforge.errors import ConfigError

TARGET_KEYS = ("_target_",)
_TRUSTED: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("trusted", default=frozenset())
_TARGET_LINE = re.compile(r"_target_\s*:\s*[\"']?([A-Za-z_][\w.]*)")
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


@functools.lru_cache(maxsize=1)
def shipped_targets() -> frozenset[str]:
    """Every ``_target_`` named in the shipped config tree (block and flow YAML alike)."""
    found: set[str] = set()
    for path in CONFIG_DIR.rglob("*.yaml"):
        found.update(_TARGET_LINE.findall(path.read_text()))
    return frozenset(found)


def ganforge_defined(target: str) -> bool:
    """Whether ``target`` is a class or function defined (not imported) in a ganforge module.

    Only modules of the ``ganforge`` package are imported to find out; a path through one of them to
    something else (``ganforge.train.os.system``) or a look-alike package (``ganforge_x.y``) is False.
    """
    if not _DOTTED.fullmatch(target) or not target.startswith("ganforge."):
        return False
    module_name, _, attr = target.rpartition(".")
    try:
        if importlib.util.find_spec(module_name) is None:
            return False
        module = importlib.import_module(module_name)
    except (ImportError, AttributeError, ValueError):  # e.g. ganforge.train.os: not a module
        return False
    obj = getattr(module, attr, None)
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return False
    return obj.__module__ == module_name and obj.__qualname__ == attr


def iter_targets(tree: Any) -> Iterator[tuple[str, Any]]:
    """(dotted key, target) for every ``_target_`` in a config (plain containers, as
    :func:`check_targets` makes them), at any depth."""

    def walk(node: Any, key: str) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for k, v in node.items():
                where = f"{key}.{k}" if key else str(k)
                if k in TARGET_KEYS:
                    yield where, v
                else:
                    yield from walk(v, where)
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                yield from walk(v, f"{key}[{i}]")

    return walk(tree, "")


@contextlib.contextmanager
def trusted_targets(targets: Iterable[str] | None) -> Iterator[None]:
    """Within the block, :func:`check_targets` also allows ``targets`` (a command's ``allow_targets``)."""
    if isinstance(targets, str) or not all(isinstance(t, str) for t in targets or ()):
        raise ConfigError(f"allow_targets must be a list of class paths, got {targets!r}")
    token = _TRUSTED.set(frozenset(targets or ()))
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def check_targets(config: Any, source: str, allow: Iterable[str] = ()) -> None:
    """A ConfigError (exit 2) naming the first target of ``config`` that ganforge does not write.

    ``source`` says where the config came from (``ckpt_path=...``); ``allow`` names targets the user
    trusts (their own classes).
    """
    try:  # interpolations resolved first: a resolver (``oc.decode``) could produce a target
        config = OmegaConf.to_container(OmegaConf.create(config), resolve=True)
    except Exception as exc:  # noqa: BLE001 - whatever the stored text is, one line
        raise ConfigError(f"{source}: refused: its stored config does not resolve ({exc})") from None
    allowed = set(allow) | _TRUSTED.get()
    for key, target in iter_targets(config):
        if not isinstance(target, str):
            raise ConfigError(f"{source}: refused: {key} is not a class path ({target!r})")
        if target in allowed or target in shipped_targets() or ganforge_defined(target):
            continue
        raise ConfigError(
            f"{source}: refused: its stored config names {key}={target}, which ganforge does not write; "
            f"pass allow_targets=[{target}] if you trust it"
        )

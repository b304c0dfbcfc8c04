"""The generated parts of ``ganforge-train --help``: config groups with their options, and settings.

Hydra fills ``hydra.help.template`` (conf/hydra/default.yaml) through OmegaConf, so these run as the
resolvers ``${ganforge.help_groups:}`` and ``${ganforge.help_settings:<section>}``. Groups and options
are read from the config tree itself, each option described by the first comment line of its file,
so the page cannot fall behind the tree. A group's ``base.yaml`` holds the settings its options
share and is not an option (not listed); the ``hydra`` group is ganforge's Hydra setup (its
``hydra/launcher`` options are listed).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ganforge import CONFIG_DIR

INTERNAL_OPTIONS = ("base",)  # settings the options of a group include, not an option themselves
HIDDEN_GROUPS = ("hydra",)
WIDTH = 100  # characters per line of the help page
_ENTRY = re.compile(r"^(?P<indent> *)(?:- )?(?P<key>[\w/]+):(?P<value>[^#]*?)\s*(?:#\s?(?P<comment>.*))?$")
_MISSING = "<missing>"


def conf_dir() -> Path:
    """The config tree of the installed package."""
    return CONFIG_DIR


def describe(path: Path) -> str:
    """The first comment line of a config file (past ``# @package``): what the option is."""
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not text.startswith("#"):
            return ""
        text = text.lstrip("#").strip()
        if text and not text.startswith("@package"):
            return text
    return ""


def group_options(root: Path) -> dict[str, dict[str, str]]:
    """``{group: {option: description}}`` of every config group under ``root`` (nested ones as ``a/b``)."""
    groups: dict[str, dict[str, str]] = {}
    for path in sorted(root.rglob("*.yaml")):
        group = path.parent.relative_to(root).as_posix()
        if group == "." or group in HIDDEN_GROUPS or path.stem in INTERNAL_OPTIONS:
            continue
        groups.setdefault(group, {})[path.stem] = describe(path)
    return groups


def commented_keys(path: Path, section: str | None = None) -> list[tuple[str, str]]:
    """``(key, comment)`` of the entries under ``section:`` of a YAML file, or of its top-level entries.

    Nested keys are dotted (``ema.decay``); a comment on a line of its own describes the entry below.
    """
    entries: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    above, inside = "", False
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above = above or stripped.lstrip("#").strip()
            continue
        match = _ENTRY.match(line)
        if match is None:
            above = ""
            continue
        indent, key, comment = len(match["indent"]), match["key"], match["comment"] or above
        above = ""
        if section is None:
            if indent == 0:
                entries.append((key, comment))
            continue
        if indent == 0:
            inside, stack = key == section, []
            continue
        if inside:
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, key))
            entries.append((".".join(k for _, k in stack), comment))
    return entries


def _fit(head: str, text: str = "") -> str:
    """``head`` then ``text`` as one line of the help page; a long ``text`` is cut at a word."""
    room = WIDTH - len(head)
    if len(text) > room:
        text = text[: max(room - 4, 0)].rsplit(" ", 1)[0] + " ..."
    return (head + text).rstrip()


def _value(node: Any) -> str:
    """A config value as it is written on the command line (``[a,b]``, ``null``, ``true``)."""
    if isinstance(node, ListConfig | list | tuple):
        return "[" + ",".join(_value(item) for item in node) + "]"
    return OmegaConf.to_yaml({"v": node}).strip()[3:]


def _escape(text: str) -> str:
    """Hydra fills the help template with ``string.Template``: a literal ``$`` is written ``$$``."""
    return text.replace("$", "$$")


def list_choice(cfg: Any, group: str) -> set[str]:
    """The options of a group chosen as a list (``logger=[csv,wandb]``), which Hydra's runtime choices
    leave out: each option adds a key of its own name under the group's node."""
    node = OmegaConf.select(cfg, group.replace("/", "."), default=None)
    return set(node) if isinstance(node, DictConfig) else set()


def help_groups(*, _root_: Any) -> str:
    """Each config group with what it is for and its options, one line each; ``*`` marks this run's."""
    root = conf_dir()
    notes = dict(commented_keys(root / "train.yaml", "defaults"))
    choices = OmegaConf.select(_root_, "hydra.runtime.choices", default=None) or {}
    lines = []
    for group, options in group_options(root).items():
        chosen = {str(choices[group])} if group in choices else list_choice(_root_, group)
        lines.append(_fit(f"{group}:  ", notes.get(group, "")))
        width = max(map(len, options)) + 2
        lines += [_fit(f"  {'*' if o in chosen else ' '} {o:<{width}}", text) for o, text in options.items()]
    return _escape("\n".join(lines))


def help_settings(section: str, *, _root_: Any) -> str:
    """``key=value  comment`` for each key under ``section`` of train.yaml (``_global_``: its top-level
    keys), with this run's values."""
    top = section == "_global_"
    entries = []
    for key, comment in commented_keys(conf_dir() / "train.yaml", None if top else section):
        full = key if top else f"{section}.{key}"
        if full == "defaults" or OmegaConf.select(_root_, full, default=_MISSING) == _MISSING:
            continue
        node = OmegaConf.select(_root_, full, throw_on_resolution_failure=False)
        if not isinstance(node, DictConfig):  # a section's keys have lines of their own
            entries.append((f"{full}={_value(node)}", comment))
    width = max((len(setting) for setting, _ in entries), default=0) + 2
    return _escape("\n".join(_fit(f"  {setting:<{width}}", comment) for setting, comment in entries))

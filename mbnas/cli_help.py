"""``python -m mbnas <command> --help``: a command's options, their defaults and what they do.

The explanations are the comments beside each key in ``conf/<command>.yaml`` and in the files of
its config groups (``conf/data/synthetic.yaml``, ...), so the help cannot drift from the configs.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mbnas.resources import conf_dir

_KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[\w.+-]+):(?P<value>[^#]*?)\s*(#\s?(?P<doc>.*))?$")
_DEFAULT_LINE = re.compile(r"^\s*-\s*(optional\s+)?(?P<group>[\w/]+):\s*(?P<choice>[^#\s]+)"
                           r"\s*(#\s?(?P<doc>.*))?$")
_COMMENT_LINE = re.compile(r"^(?P<indent>\s*)#\s?(?P<doc>.*)$")
COLUMN = 30  # where the explanations start
WIDTH = 100


def yaml_comments(path: Path, prefix: str = "") -> dict[str, str]:
    """``{dotted.key: comment}`` for every key of a config file that has a comment beside it;
    a comment-only line right below, indented past the ``#`` column, continues it."""
    docs: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    last = None
    for line in path.read_text().splitlines():
        comment = _COMMENT_LINE.match(line)
        if comment and last and len(comment["indent"]) > 0 and docs.get(last):
            docs[last] += " " + comment["doc"].strip()
            continue
        match = _KEY_LINE.match(line)
        if not match or line.lstrip().startswith("-"):
            last = None
            continue
        indent = len(match["indent"])
        stack = [(i, k) for i, k in stack if i < indent]
        key = ".".join([k for _, k in stack] + [match["key"]])
        stack.append((indent, match["key"]))
        last = prefix + key
        if match["doc"]:
            docs[last] = match["doc"].strip()
    return docs


def group_defaults(path: Path) -> dict[str, str]:
    """``{group: comment}`` for the config groups a command's defaults list chooses."""
    docs = {}
    for line in path.read_text().splitlines():
        match = _DEFAULT_LINE.match(line)
        if match and "/" not in match["group"] and "$" not in match["choice"]:
            docs[match["group"]] = (match["doc"] or "").strip()
    return docs


def group_choices(group: str) -> list[str]:
    """The options of a config group: the YAML files in ``conf/<group>/``."""
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted.key, value)`` for every leaf of a config; an empty mapping is one leaf."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), node


def _format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if hasattr(value, "value") and not isinstance(value, (int, float, str)):  # an Enum
        return str(value.value)
    return str(value) if not isinstance(value, (list, dict)) else OmegaConf.to_yaml(
        OmegaConf.create({"v": value})).strip()[3:]


def _row(left: str, doc: str) -> str:
    if not doc:
        return f"  {left}"
    indent = " " * COLUMN
    if len(left) + 2 >= COLUMN:
        return f"  {left}\n" + textwrap.fill(doc, WIDTH, initial_indent=indent,
                                             subsequent_indent=indent)
    return textwrap.fill(doc, WIDTH, initial_indent=f"  {left:<{COLUMN - 2}}",
                         subsequent_indent=indent)


def command_help(command: str, summary: str, cfg: DictConfig, choices: dict[str, str]) -> str:
    """The help of ``command``: usage, its config groups with their choices, every option with
    its default (``cfg``: the config as composed with the given overrides) and explanation."""
    primary = conf_dir() / f"{command}.yaml"
    docs = yaml_comments(primary)
    groups = group_defaults(primary)
    for group, choice in choices.items():
        if group in groups and choice:
            docs.update(yaml_comments(conf_dir() / group / f"{choice}.yaml", prefix=f"{group}."))
    lines = [f"usage: python -m mbnas {command} [key=value ...] [+key=value ...] [--cfg] [-h]",
             "", summary, ""]
    if groups:
        lines.append("Config groups (group=choice; the choice loads conf/<group>/<choice>.yaml):")
        for group, doc in groups.items():
            options = ", ".join(group_choices(group))
            lines.append(_row(f"{group}={choices.get(group) or 'null'}",
                              f"{doc} [one of: {options}]" if doc else f"[one of: {options}]"))
        lines.append("")
    lines.append("Options (key=value; shown with their defaults):")
    values = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
    for key, value in leaves(values):
        lines.append(_row(f"{key}={_format_value(value)}", docs.get(key, "")))
    lines += ["", "A key the config leaves out is added with +, e.g. +budget.macs=300M. "
              "`--cfg` prints the resolved config;", f"conf/{command}.yaml holds the defaults."]
    return "\n".join(lines)

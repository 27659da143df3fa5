"""Command configuration: compose ``conf/<command>.yaml`` with Hydra overrides, check the schema,
and hand the command its typed dataclasses."""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from enum import Enum
from typing import Any, TypeVar

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from mbnas.errors import ConfigError
from mbnas.resources import conf_dir

Schema = TypeVar("Schema")


class OutputFormat(Enum):
    """How a command prints its result: a table for people, one JSON line for programs."""

    table = "table"
    json = "json"


def compose_raw(command: str, overrides: list[str]) -> tuple[DictConfig, dict[str, str]]:
    """``conf/<command>.yaml`` composed with ``overrides`` (no schema yet), and the choice made
    in each config group (``{"data": "synthetic", "preset": "default", ...}``)."""
    overrides = [home_expanded(override) for override in overrides]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        cfg = compose(config_name=command, overrides=overrides, return_hydra_config=True)
    choices = {group: choice for group, choice in cfg.hydra.runtime.choices.items()
               if not group.startswith("hydra/")}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def home_expanded(override: str) -> str:
    """``key=~/path`` with the home folder written out, as a shell would for ``key=~/path`` had
    ``key`` been a variable name: shells leave ``data.root=~/...`` alone, and Hydra's grammar
    refuses a bare ``~`` in a value."""
    key, equals, value = override.partition("=")
    if equals and (value == "~" or value.startswith("~/")):
        return f"{key}={os.path.expanduser(value)}"
    return override


def compose_config(command: str, overrides: list[str], schema: type) -> DictConfig:
    """The resolved config of ``command``, typo- and type-checked against its dataclass schema
    (whose ``OPEN_MAPPINGS``, if any, name the mappings that take keys of the user's choice)."""
    fix = f"see `python -m mbnas {command} --help` for the options"
    try:
        cfg, choices = compose_raw(command, overrides)
    except (HydraException, OmegaConfBaseException) as error:
        raise _explained(command, overrides, schema, fix) or ConfigError(
            "overrides", _first_line(error), fix) from None
    check_presets(choices)
    try:
        merged = merge_schema(schema, cfg, unnamed=f"config of `{command}`", fix=fix)
    except ConfigError as error:
        raise _explained(command, overrides, schema, fix) or error from None
    if "preset" in merged and choices.get("preset"):  # the choice is no key of its own
        merged.preset = choices["preset"]
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        raise ConfigError(missing[0], "required but not given",
                          f"add {missing[0]}=... to the command, e.g. `python -m mbnas {command} "
                          f"{missing[0]}=runs/<name>`" if missing[0] == "run" else
                          f"add {missing[0]}=... to the command")
    OmegaConf.set_readonly(merged, True)
    return merged


def merge_schema(schema: type, values: object, *, fix: str, prefix: str = "",
                 unnamed: str = "config") -> DictConfig:
    """``values`` over ``schema``'s defaults; an unknown key or a wrong type raises ConfigError
    naming the key (``prefix.key``), or ``unnamed`` when OmegaConf names none."""
    try:
        return OmegaConf.merge(OmegaConf.structured(schema), values)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        where = (f"{prefix}.{key}" if prefix else key) if key else unnamed
        raise ConfigError(where, _first_line(error), fix) from None


def check_presets(choices: dict[str, str]) -> None:
    """``preset=`` must name a file of ``conf/preset/`` (Hydra accepts any optional choice)."""
    preset = choices.get("preset")
    known = sorted(p.stem for p in (conf_dir() / "preset").glob("*.yaml"))
    if preset and preset not in known:
        raise ConfigError("preset", f"unknown preset {preset!r}{did_you_mean(preset, known)}",
                          f"use one of: {', '.join(known)}")


def did_you_mean(word: str, candidates: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the candidate closest to a mistyped ``word``, or ``""``."""
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if not close and "." in word:  # a mistyped leaf under a right prefix: data.rooot
        head, leaf = word.rsplit(".", 1)
        siblings = [c.rsplit(".", 1)[1] for c in candidates if c.startswith(head + ".")]
        close = [f"{head}.{m}" for m in difflib.get_close_matches(leaf, siblings, n=1)]
    return f" (did you mean {close[0]!r}?)" if close else ""


def known_keys(command: str, schema: type, selections: Sequence[str] = ()
               ) -> tuple[list[str], dict[str, list[str]]]:
    """Every dotted key ``command`` accepts (its defaults and schema, with the config groups
    chosen as ``selections`` says, e.g. ``["evaluator=zero_cost"]``), and each config group's
    choices: what a mistyped override is compared with."""
    cfg, choices = compose_raw(command, list(selections))
    tree = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(schema), cfg),
                                  resolve=False)
    keys: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            keys.append(prefix + key)
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")

    walk(tree, "")
    groups = {group: sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))
              for group in choices if "/" not in group}
    return keys, groups


def _explained(command: str, overrides: list[str], schema: type, fix: str
               ) -> ConfigError | None:
    """The error for a failed compose: the first unknown key or choice, with a suggestion;
    ``None`` when every key and choice is known (the error is about a value)."""
    try:
        _, groups = known_keys(command, schema)
        # The keys of the groups the overrides choose (evaluator=zero_cost has features).
        pairs = [override.partition("=") for override in overrides]
        keys, _ = known_keys(command, schema, [f"{group}={choice}" for group, _, choice in pairs
                                               if choice in groups.get(group, ())])
    except (HydraException, OmegaConfBaseException):
        return None
    # A key not yet in one of these mappings is added with Hydra's leading +.
    open_mappings = getattr(schema, "OPEN_MAPPINGS", ())
    open_keys = [k for k in keys if k in open_mappings]
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key in groups and value not in groups[key]:
            return ConfigError(key, f"unknown choice {value!r}"
                               f"{did_you_mean(value, groups[key])}",
                               f"use one of: {', '.join(groups[key])}")
        if (key not in keys and key.rpartition(".")[0] in open_mappings
                and not override.startswith("+")):
            return ConfigError(key, "is not in the mapping yet, so it cannot be changed",
                               f"add it with a leading +: +{key}={value}")
        if key not in keys and key not in groups and not any(
                key.startswith(k + ".") for k in open_keys):
            return ConfigError(key, f"unknown option{did_you_mean(key, keys)}", fix)
        inner = [k for k in keys if k.startswith(key + ".")]
        # A mapping given one value (cost's latency=none); {...} replaces a mapping whole.
        if inner and key not in groups and value and not value.startswith("{"):
            return ConfigError(key, f"holds settings ({', '.join(inner[:4])}"
                               f"{', ...' if len(inner) > 4 else ''}), not one value",
                               f"set one of them, e.g. {inner[0]}=...")
    return None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    # OmegaConf appends a "full_key: ... object_type=..." trailer that says nothing new.
    return " ".join(line.strip() for line in text.splitlines()
                    if line.strip() and not line.strip().startswith(("full_key:", "object_type=",
                                                                       "reference_type=")))


def load_config(command: str, overrides: list[str], schema: type[Schema]) -> Schema:
    """The config of ``command`` as an instance of its ``schema`` dataclass."""
    return OmegaConf.to_object(compose_config(command, overrides, schema))  # type: ignore

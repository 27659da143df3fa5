"""Command configuration: compose ``conf/<command>.yaml`` with Hydra overrides, check the schema,
and hand the command its typed dataclasses."""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mbnas.errors import ConfigError
from mbnas.resources import conf_dir

Schema = TypeVar("Schema")


class OutputFormat(Enum):
    """How a command prints its result: a table for people, one JSON line for programs."""

    table = "table"
    json = "json"


def compose_config(command: str, overrides: list[str], schema: type) -> DictConfig:
    """The resolved config of ``command``, typo- and type-checked against its dataclass schema."""
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            cfg = compose(config_name=command, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError("overrides", _first_line(error),
                          f"see `python -m mbnas {command} --cfg` for the valid keys") from None
    merged = merge_schema(schema, cfg, unnamed=f"config of `{command}`",
                          fix=f"see `python -m mbnas {command} --cfg` for the valid keys")
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


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    # OmegaConf appends a "full_key: ... object_type=..." trailer that says nothing new.
    return " ".join(line.strip() for line in text.splitlines()
                    if line.strip() and not line.strip().startswith(("full_key:", "object_type=",
                                                                       "reference_type=")))


def load_config(command: str, overrides: list[str], schema: type[Schema]) -> Schema:
    """The config of ``command`` as an instance of its ``schema`` dataclass."""
    return OmegaConf.to_object(compose_config(command, overrides, schema))  # type: ignore

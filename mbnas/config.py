"""Command configuration: compose ``conf/<command>.yaml`` with Hydra overrides, check the schema."""

from __future__ import annotations

from typing import Any

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mbnas.errors import ConfigError
from mbnas.resources import conf_dir


def load_config(command: str, overrides: list[str], schema: type | None = None) -> DictConfig:
    """The resolved config of ``command``, typo- and type-checked against its dataclass schema."""
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            cfg = compose(config_name=command, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError("overrides", _first_line(error),
                          f"see `python -m mbnas {command} --cfg` for the valid keys") from None
    if schema is None:
        return cfg
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or f"config of `{command}`"
        raise ConfigError(key, _first_line(error),
                          f"see `python -m mbnas {command} --cfg` for the valid keys") from None
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        raise ConfigError(missing[0], "required but not given",
                          f"add {missing[0]}=... to the command, e.g. `python -m mbnas {command} "
                          f"{missing[0]}=runs/<name>`" if missing[0] == "run" else
                          f"add {missing[0]}=... to the command")
    OmegaConf.set_readonly(merged, True)
    return merged


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    # OmegaConf appends a "full_key: ... object_type=..." trailer that says nothing new.
    return " ".join(line.strip() for line in text.splitlines()
                    if line.strip() and not line.strip().startswith(("full_key:", "object_type=",
                                                                       "reference_type=")))


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]

"""Evaluators by name: ``evaluator=NAME`` picks ``conf/evaluator/NAME.yaml`` and the class
registered as NAME; mbnas's own live in ``mbnas/evaluators/NAME.py`` and load on first use."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, TypeVar

from omegaconf import OmegaConf

from mbnas.config import merge_schema
from mbnas.errors import ConfigError
from mbnas.evaluators.base import EvaluationContext, Evaluator, EvaluatorConfig
from mbnas.resources import conf_dir

EvaluatorClass = TypeVar("EvaluatorClass", bound=type[Evaluator])

_REGISTRY: dict[str, type[Evaluator]] = {}


def register(cls: EvaluatorClass) -> EvaluatorClass:
    """Class decorator: make ``cls`` the evaluator named ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def available_evaluators() -> list[str]:
    """The names ``evaluator=`` accepts: shipped configs and registered classes."""
    shipped = {path.stem for path in (conf_dir() / "evaluator").glob("*.yaml")}
    return sorted(shipped | set(_REGISTRY))


def evaluator_class(name: str) -> type[Evaluator]:
    """The evaluator class registered as ``name``."""
    if name not in _REGISTRY and name.isidentifier():
        module = f"{__package__}.{name}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:  # the evaluator exists but lacks a dependency
                raise
    if name not in _REGISTRY:
        raise ConfigError("evaluator.name", f"{name!r} is not an evaluator",
                          f"choose one of {', '.join(available_evaluators())}")
    return _REGISTRY[name]


def evaluator_config(values: Mapping[str, Any]) -> EvaluatorConfig:
    """The ``evaluator`` config node as its evaluator's typed config, checked."""
    cls = evaluator_class(str(values.get("name")))
    merged = merge_schema(cls.config, values, prefix="evaluator", unnamed="evaluator",
                          fix=f"see conf/evaluator/{cls.name}.yaml for its settings")
    cfg = OmegaConf.to_object(merged)
    cfg.check()
    return cfg  # type: ignore[return-value]


def make_evaluator(cfg: EvaluatorConfig, context: EvaluationContext) -> Evaluator:
    """The evaluator ``cfg`` configures."""
    return evaluator_class(cfg.name)(cfg, context)

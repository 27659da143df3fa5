"""Evaluators: how the search scores a candidate, one module per evaluator, chosen by name.

A new evaluator is one module here, ``NAME.py``, defining an :class:`Evaluator` subclass with
``name = "NAME"`` and its config dataclass, decorated with :func:`register`, plus its settings in
``conf/evaluator/NAME.yaml``; ``python -m mbnas search evaluator=NAME`` then uses it.
"""

from mbnas.evaluators.base import (
    Checkpoint,
    Evaluation,
    EvaluationContext,
    Evaluator,
    EvaluatorConfig,
)
from mbnas.evaluators.registry import (
    available_evaluators,
    evaluator_class,
    evaluator_config,
    make_evaluator,
    register,
)

__all__ = ["Checkpoint", "Evaluation", "EvaluationContext", "Evaluator", "EvaluatorConfig",
           "available_evaluators", "evaluator_class", "evaluator_config", "make_evaluator",
           "register"]

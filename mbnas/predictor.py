"""An accuracy predictor over architecture encodings: one-hot choices, ridge regression.

A member is encoded by the choices that produce it in its space (``space.choices``): one input
per (decision, value) pair seen while fitting, 1 where the member makes that choice. Ridge
regression (closed form, intercept unpenalised) maps encodings to labels. Fitted on a few hundred
members labelled by a cheap but noisy evaluator, it shares what each choice contributes across
members, which smooths the labels' noise (NAS predictor literature: BRP-NAS, OFA's accuracy
predictor use richer models on the same idea).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def encode(choices: Sequence[Mapping[str, Any]], vocabulary: Sequence[str]) -> np.ndarray:
    """One row per member: 1.0 where it makes the choice ``decision=value`` of the vocabulary."""
    index = {item: i for i, item in enumerate(vocabulary)}
    rows = np.zeros((len(choices), len(vocabulary)))
    for row, member in enumerate(choices):
        for key, value in member.items():
            column = index.get(f"{key}={value}")
            if column is not None:
                rows[row, column] = 1.0
    return rows


@dataclass(frozen=True)
class RidgePredictor:
    """A fitted ridge regression over one-hot choice encodings."""

    vocabulary: tuple[str, ...]
    weights: tuple[float, ...]
    intercept: float

    @classmethod
    def fit(cls, choices: Sequence[Mapping[str, Any]], labels: Sequence[float],
            penalty: float = 3.0) -> RidgePredictor:
        """The ridge fit of ``labels`` on the members' encodings (penalty λ on the weights)."""
        vocabulary = tuple(sorted({f"{k}={v}" for member in choices for k, v in member.items()}))
        inputs = encode(choices, vocabulary)
        targets = np.asarray(labels, dtype=float)
        means = inputs.mean(axis=0)
        centred = inputs - means
        gram = centred.T @ centred + penalty * np.eye(len(vocabulary))
        weights = np.linalg.solve(gram, centred.T @ (targets - targets.mean()))
        intercept = float(targets.mean() - means @ weights)
        return cls(vocabulary, tuple(float(w) for w in weights), intercept)

    def predict(self, choices: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predicted labels of members given by their choices."""
        return encode(choices, self.vocabulary) @ np.asarray(self.weights) + self.intercept

    def to_dict(self) -> dict[str, Any]:
        return {"vocabulary": list(self.vocabulary), "weights": list(self.weights),
                "intercept": self.intercept}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RidgePredictor:
        return cls(tuple(data["vocabulary"]), tuple(data["weights"]), float(data["intercept"]))

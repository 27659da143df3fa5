import types

import optuna
import pytest

from mbnas.search import callbacks
from mbnas.search.callbacks import StudySummaries


class Drawn(StudySummaries):
    """Records the study's size at each redraw instead of drawing."""

    drawn: list[int]

    def draw(self, study):
        self.drawn.append(len(study.trials))


class Log:
    def trial(self, number, accuracy, best):
        pass


@pytest.mark.parametrize(("seconds_per_trial", "expected"), [(10.0, [5, 10, 15, 20]), (1.0, [5])])
def test_figures_are_redrawn_every_five_trials_at_most_twice_a_minute(
        monkeypatch, seconds_per_trial, expected):
    now = [0.0]
    monkeypatch.setattr(callbacks, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    summaries = Drawn(Log(), "macs", {})
    summaries.drawn = []
    study = optuna.create_study(direction="maximize")
    for number in range(23):
        now[0] += seconds_per_trial
        study.add_trial(optuna.trial.create_trial(value=number / 100,
                                                  user_attrs={"accuracy": number / 100}))
        summaries(study, study.trials[-1])
    assert summaries.drawn == expected  # fast trials: the first five, then every 30 s or more

"""The user-facing error type."""

import pickle

from mbnas.errors import ConfigError


def test_config_error_survives_a_process_boundary():
    # Worker pools and torchrun ranks send exceptions back pickled.
    error = pickle.loads(pickle.dumps(ConfigError("space.yaml", "stage 2 is empty", "add ops")))
    assert isinstance(error, ConfigError)
    assert (error.where, error.problem, error.fix) == ("space.yaml", "stage 2 is empty", "add ops")
    assert str(error) == "space.yaml: stage 2 is empty; add ops"

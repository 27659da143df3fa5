"""Resuming: a run, a study or a checkpoint continues only with the settings it was started with.

Every resumable thing stores the settings it was started with (a train run in ``config.yaml``, a
search in its study, the supernet warm-up in its checkpoint) and compares them here, so all three
refuse a changed resume the same way: naming each setting that differs, then or now.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from mbnas.errors import ConfigError


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys: ``{"optim": {"lr": 0.1}}`` → ``{"optim.lr": 0.1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differences(saved: Mapping[str, Any], current: Mapping[str, Any],
                may_change: Collection[str] = ()) -> dict[str, tuple[Any, Any]]:
    """``{key: (then, now)}`` for each setting both hold with different values, by dotted key."""
    then, now = flatten(saved), flatten(current)
    return {key: (then[key], value) for key, value in now.items()
            if key in then and key not in may_change and then[key] != value}


def override(key: str, value: Any) -> str:
    """``key=value`` as a command-line override: ``data.root=null``, ``optim.lr=0.05``."""
    if isinstance(value, str) and value and not any(c in value for c in " ,=[]{}'\"\\"):
        return f"{key}={value}"
    return f"{key}={json.dumps(value)}"


def check_resumable(saved: Mapping[str, Any] | None, current: Mapping[str, Any], *, where: str,
                    problem: str, fix: str, may_change: Collection[str] = (),
                    overrides: Collection[str] = ()) -> None:
    """Refuse to resume what ``saved`` settings started (``None``: nothing yet) with others.

    The message names each setting that differs, then and now; those whose key (or its first
    part) is in ``overrides`` are also given back as the command-line overrides that resume the
    run as it was.
    """
    if saved is None:
        return
    changed = differences(saved, current, may_change)
    if changed:
        listed = ", ".join(f"{key}={then!r}, now {key}={now!r}"
                           for key, (then, now) in changed.items())
        back = [override(key, then) for key, (then, _) in changed.items()
                if key in overrides or key.split(".")[0] in overrides]
        if back:
            fix += f"; to resume as it was: {' '.join(back)}"
        raise ConfigError(where, f"{problem} ({listed})", fix)

"""The "next:" block that commands end with: the commands a user runs next, each with a short
comment, the comments lined up so the commands read as a column."""

from __future__ import annotations


def next_steps(steps: list[tuple[str, str]]) -> list[str]:
    """Lines for ``steps`` (command, comment; an empty comment leaves the command alone),
    headed by ``next:``."""
    width = max(len(command) for command, _ in steps)
    return ["  next:", *(f"    {command.ljust(width)}   # {comment}" if comment
                         else f"    {command}" for command, comment in steps)]

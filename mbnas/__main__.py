"""``python -m mbnas <command> [Hydra overrides]`` and the ``mbnas`` script: the entry point.

Nothing but the standard library loads before :func:`main` runs, so a Ctrl-C at any moment, even
while torch, Optuna and Hydra load, ends with one line and exit code 130 (only Python's own
start-up, before it runs mbnas, is out of reach). Every run folder is resumable at any moment
(checkpoints, settings and the study are written atomically), so the line says how to go on.
The commands themselves are in :mod:`mbnas.cli`.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

INTERRUPTED = 130  # the shell's code for a program ended by SIGINT


class CtrlC:
    """Python's own SIGINT handler (raise KeyboardInterrupt), remembering that it ran: a library
    interrupted in the middle of its work may raise another error instead (OmegaConf does)."""

    def __init__(self) -> None:
        self.pressed = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.pressed = True
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run one command (see :func:`mbnas.cli.main`); Ctrl-C returns 130 after one line."""
    argv = sys.argv[1:] if argv is None else argv
    ctrl_c, code = CtrlC(), INTERRUPTED
    previous = signal.signal(signal.SIGINT, ctrl_c)
    try:
        # Imported here, not above: loading the libraries takes seconds that Ctrl-C may hit.
        from mbnas.cli import main as run_command
        code = run_command(argv)
    except KeyboardInterrupt:
        ctrl_c.pressed = True
    except BaseException:
        if not ctrl_c.pressed:
            raise
    finally:
        signal.signal(signal.SIGINT, previous)
    if ctrl_c.pressed:
        # CPython marks a KeyboardInterrupt that escaped any exec() of a string (dataclasses
        # build their methods so) as unhandled, and would end the process by SIGINT instead of
        # with this exit code, even though it was handled; a successful exec() clears the mark.
        exec("")
        command = f" {argv[0]}" if argv and not argv[0].startswith("-") else ""
        print(f"\nmbnas{command}: interrupted; run the same command again to resume",
              file=sys.stderr, flush=True)
        return INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())

"""``python -m mbnas <command> [Hydra overrides]`` and the ``mbnas`` script: the entry point.

Nothing but the standard library loads before :func:`main` runs, so a Ctrl-C at any moment, even
while torch, Optuna and Hydra load, ends with one line and exit code 130. Every run folder is
resumable at any moment (checkpoints and the study are written atomically), so the line says how
to go on. The commands themselves are in :mod:`mbnas.cli`.
"""

from __future__ import annotations

import sys

INTERRUPTED = 130  # the shell's code for a program ended by SIGINT


def main(argv: list[str] | None = None) -> int:
    """Run one command (see :func:`mbnas.cli.main`); Ctrl-C returns 130 after one line."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        # Imported here, not above: loading the libraries takes seconds that Ctrl-C may hit.
        from mbnas.cli import main as run_command
        return run_command(argv)
    except KeyboardInterrupt:
        command = f" {argv[0]}" if argv and not argv[0].startswith("-") else ""
        print(f"\nmbnas{command}: interrupted; run the same command again to resume",
              file=sys.stderr, flush=True)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

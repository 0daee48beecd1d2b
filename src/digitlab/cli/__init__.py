"""The `digitlab` command: it parses arguments and calls the library, nothing more.

Each module registers its commands on the one typer app; `main` turns our own errors into one clear line.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

import click
import typer

from ..errors import DigitlabError
# importing each module registers its commands, in this order in --help
from . import chapter, machine, recipes, serving, speed, training, evaluation, listing, prediction  # noqa: F401,I001
from .app import app, err

try:  # typer >= 0.20 vendors click as typer._click; older releases raise click's own exceptions
    from typer._click.exceptions import ClickException as TyperClickException
except ImportError:  # pragma: no cover
    TyperClickException = click.exceptions.ClickException
USAGE_ERRORS = (click.exceptions.ClickException, TyperClickException)
ABORTS = (click.exceptions.Abort, getattr(typer, "Abort", click.exceptions.Abort))
EXITS = (click.exceptions.Exit, typer.Exit)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; our own errors print as one clear line and exit with status 2."""
    try:
        rc = app(args=argv, standalone_mode=False)
    except DigitlabError as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
        return 2
    except ABORTS:
        err.print("aborted")
        return 130
    except USAGE_ERRORS as e:  # a bad option or argument: the usage line and what was wrong
        e.show()
        return e.exit_code
    except EXITS as e:
        return e.exit_code
    return rc if isinstance(rc, int) else 0


def run() -> None:
    """The console script and `python -m digitlab`: main(), then a quick exit.

    Once the command is done, the interpreter's own shutdown (module teardown, the final garbage collection over
    every object torch made) costs 0.1-0.3 s and does nothing a user needs. So when no other Python thread is
    left to join, run the atexit handlers, flush the output and leave with os._exit; otherwise exit normally.
    """
    rc = main()
    if threading.active_count() > 1:
        sys.exit(rc)
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # e.g. a closed pipe: let the normal exit report it
        sys.exit(rc)
    os._exit(rc)


if __name__ == "__main__":
    run()

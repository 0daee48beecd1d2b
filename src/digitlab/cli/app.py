"""The typer application and consoles that every command module registers on."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as installed_version
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from .. import __version__

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                  help="MNIST from scratch, the way fastbook chapter 4 builds it. Start with [bold]digitlab reproduce[/].")
out = Console(soft_wrap=True)  # long paths stay on one line in logs and pipes
err = Console(stderr=True, soft_wrap=True)

DataOpt: Optional[Path] = typer.Option(None, "--data", help="Folder with four IDX files (MNIST, Fashion-MNIST, "
                                       "any other) or image folders (train/<class>/, valid/<class>/, or <class>/) "
                                       "(default: $DIGITLAB_DATA, else the MNIST files shipped in the package).")


def package_version() -> str:
    """The installed distribution's version; the package's own __version__ in a source tree never installed."""
    try:
        return installed_version("digitlab")
    except PackageNotFoundError:
        return __version__


def print_version(value: bool) -> None:
    """--version: print it and stop before any command runs."""
    if value:
        print(f"digitlab {package_version()}")
        raise typer.Exit()


@app.callback()
def options(version: bool = typer.Option(False, "--version", callback=print_version, is_eager=True,
                                         help="Print the version and exit.")) -> None:
    """Options that come before the command."""

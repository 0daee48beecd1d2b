"""The typer application and consoles that every command module registers on."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                  help="MNIST from scratch, the way fastbook chapter 4 builds it. Start with [bold]digitlab reproduce[/].")
out = Console(soft_wrap=True)  # long paths stay on one line in logs and pipes
err = Console(stderr=True, soft_wrap=True)

DataOpt: Optional[Path] = typer.Option(None, "--data", help="Folder with the four MNIST IDX files "
                                       "(default: the repo's data/mnist, or $DIGITLAB_DATA).")

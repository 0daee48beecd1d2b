"""Pictures in the terminal: an image as a table of grey values, each cell shaded like its pixel."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    import torch


def grey_table(img: torch.Tensor, rows: slice = slice(4, 15), cols: slice = slice(4, 22)) -> Table:
    """A rich Table of the pixel values in img[rows, cols] on grey backgrounds (white 0 to black 255)."""
    import torch  # deferred: importing digitlab.viz must not cost torch's import

    region = img[rows, cols].cpu()
    scale = 255 if region.dtype == torch.uint8 or region.max() > 1 else 1
    table = Table(show_header=True, header_style="dim", box=None, pad_edge=False, padding=(0, 0))
    table.add_column("", style="dim", justify="right")
    first_col = cols.start or 0
    for c in range(region.shape[1]):
        table.add_column(str(first_col + c), justify="right", min_width=4)
    for r, row in enumerate(region.tolist()):
        cells = []
        for v in row:
            level = 255 - round(255 * v / scale)  # ink is dark, paper is light, as in the book
            fg = "white" if level < 128 else "black"
            cells.append(Text(f"{v:g} " if scale == 255 else f"{v:.2f} ", style=f"{fg} on rgb({level},{level},{level})"))
        table.add_row(str((rows.start or 0) + r), *cells)
    return table

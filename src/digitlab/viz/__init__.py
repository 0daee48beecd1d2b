"""Plots and terminal pictures."""

from .figures import (curves_figure, grey_table_figure, histories_figure, images_figure, new_figure,
                      plot_function, save, show_image)
from .terminal import grey_table

__all__ = ["curves_figure", "grey_table_figure", "histories_figure", "images_figure", "new_figure",
           "plot_function", "save", "show_image", "grey_table"]

"""Plots and terminal pictures."""

from .figures import (confusion_figure, curves_figure, grey_table_figure, histories_figure, image_grid_figure,
                      images_figure, new_figure, plot_function, save, show_image, weights_figure)
from .terminal import grey_table

__all__ = ["confusion_figure", "curves_figure", "grey_table_figure", "histories_figure", "image_grid_figure",
           "images_figure", "new_figure", "plot_function", "save", "show_image", "weights_figure", "grey_table"]

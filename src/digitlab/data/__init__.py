"""Data: IDX files, the MNIST splits, image folders, a user's own images, the UCI digits, and the DataLoader."""

from .folders import export_split, load_folder
from .idx import parse_idx, read_idx, to_idx_bytes, write_idx
from .images import BlankImageError, ImageError, prepare_image
from .loader import DataLoader, DataLoaders, epoch_permutation
from .mnist import Split, as_xy, data_dir, load_mnist, load_split, mnist_sample
from .uci import uci_digits

__all__ = ["export_split", "load_folder", "parse_idx", "read_idx", "to_idx_bytes", "write_idx", "BlankImageError",
           "ImageError", "prepare_image", "DataLoader", "DataLoaders", "epoch_permutation", "Split", "as_xy",
           "data_dir", "load_mnist", "load_split", "mnist_sample", "uci_digits"]

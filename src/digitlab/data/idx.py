"""Read and write IDX files (the MNIST format), gzip-compressed or raw.

An IDX file is: two zero bytes, a type code, the number of dimensions, each dimension as a big-endian uint32,
then the data in big-endian order. The "magic number" is the first four bytes read as one big-endian int
(2051 for MNIST images, 2049 for labels).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import IdxError

# type code -> big-endian numpy dtype
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_BYTES = 2**31  # refuse to allocate more than 2 GiB for one file: a corrupt header must not exhaust memory
GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic (whatever its name says)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IdxError(f"{path}: no such file. Check the path, or run `digitlab data info` to see where data is looked for.") from None
    except OSError as e:
        raise IdxError(f"{path}: cannot be read ({e.strerror or e}).") from None
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise IdxError(f"{path}: the gzip data is corrupt or truncated ({e}). Replace the file with a good copy.") from None


def parse_idx(data: bytes, name: str = "<bytes>", expect_magic: int | None = None) -> np.ndarray:
    """Parse IDX bytes into a numpy array in native byte order; `name` is used in error messages."""
    if len(data) < 4:
        raise IdxError(f"{name}: too short to be an IDX file ({len(data)} bytes; the header alone is at least 4).")
    magic = struct.unpack(">i", data[:4])[0]
    if expect_magic is not None and magic != expect_magic:
        raise IdxError(f"{name}: wrong magic number {magic}, expected {expect_magic}. Is this the right file "
                       f"(images have 2051, labels 2049)?")
    if data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise IdxError(f"{name}: wrong magic number {magic} (0x{magic:08x}): not an IDX file. The first two bytes "
                       f"must be zero and the third a known type code ({', '.join(hex(c) for c in IDX_DTYPES)}).")
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{name}: truncated header: {ndim} dimensions need {header} bytes, the file has {len(data)}.")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    count = math.prod(shape)  # Python ints: no overflow
    expected = count * dtype.itemsize
    if expected > MAX_BYTES or math.prod(d for d in shape if d) * dtype.itemsize > MAX_BYTES:
        raise IdxError(f"{name}: header claims shape {shape} ({expected} bytes), more than the {MAX_BYTES} bytes allowed.")
    got = len(data) - header
    if got < expected:
        raise IdxError(f"{name}: truncated data: shape {shape} needs {expected} bytes after the header, the file has {got}.")
    if got > expected:
        raise IdxError(f"{name}: {got - expected} bytes of trailing data after the {expected} the header describes "
                       f"(shape {shape}). The file is corrupt or not an IDX file.")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | Path, expect_magic: int | None = None) -> torch.Tensor:
    """Read an IDX file (gzip or raw) into a tensor; raise IdxError naming the file and the problem."""
    array = parse_idx(read_bytes(path), str(path), expect_magic)
    if array.dtype == np.int8 or not array.flags.writeable:
        array = array.copy()  # torch cannot share a read-only buffer
    return torch.from_numpy(array)


def to_idx_bytes(tensor: torch.Tensor | np.ndarray) -> bytes:
    """Encode an array as IDX bytes, choosing the type code from its dtype."""
    array = np.asarray(tensor.numpy() if isinstance(tensor, torch.Tensor) else tensor)
    code = next((c for c, dt in IDX_DTYPES.items() if dt.newbyteorder("=") == array.dtype), None)
    if code is None:
        raise IdxError(f"cannot write dtype {array.dtype} to IDX; use one of uint8, int8, int16, int32, float32, float64.")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(IDX_DTYPES[code], copy=False).tobytes()


def write_idx(path: str | Path, tensor: torch.Tensor | np.ndarray, compress: bool | None = None) -> Path:
    """Write an IDX file; gzip it when `compress` is True or, by default, when the name ends in .gz."""
    path = Path(path)
    data = to_idx_bytes(tensor)
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.write_bytes(data)
    return path

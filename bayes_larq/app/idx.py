"""The IDX file format of MNIST and Fashion-MNIST, read into NumPy with every defect named."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib

import numpy as np

from bayes_larq.app.errors import DatasetError

__all__ = ["read_idx"]

# IDX data type codes (third byte of the magic number) -> big-endian NumPy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_MAX_DIMENSIONS = 32  # the most NumPy arrays may have on every NumPy version


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST / Fashion-MNIST format), gzipped or raw, into NumPy.

    Layout: magic ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 sizes, then
    the big-endian data in C order. Gzip is recognised by content, not by file name. The
    file must hold exactly ``prod(sizes)`` values; anything else (bad gzip stream, wrong
    magic, unknown dtype code, truncated or over-long data) raises :class:`DatasetError`
    naming the file and the problem. Returns a writable array in native byte order.

    Args:
      path: the IDX file.

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "x.idx")
    >>> _ = open(p, "wb").write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(p)
    array([7, 8, 9], dtype=uint8)
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:
            raise DatasetError(
                f"{path}: corrupt or truncated gzip data ({type(err).__name__}: {err})"
            ) from err
    else:
        data = raw
    if len(data) < 4:
        raise DatasetError(
            f"{path}: truncated IDX file: {len(data)} bytes, shorter than the 4-byte magic number"
        )
    if data[0] != 0 or data[1] != 0:
        raise DatasetError(
            f"{path}: not an IDX file: magic number {data[:4].hex()} does not start with "
            "0000 (IDX magic is 00 00 <type code> <number of dimensions>)"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        valid = ", ".join(f"0x{c:02x} ({d.name})" for c, d in _IDX_DTYPES.items())
        raise DatasetError(f"{path}: unknown IDX data type code 0x{code:02x}; valid: {valid}")
    if not 0 < ndim <= _MAX_DIMENSIONS:
        raise DatasetError(f"{path}: IDX header declares {ndim} dimensions; an IDX file "
                           f"has 1 to {_MAX_DIMENSIONS} (images 3, labels 1)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header} header bytes, "
            f"the file has {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    count = math.prod(shape)
    expected = count * dtype.itemsize
    found = len(data) - header
    if found != expected:
        what = "truncated" if found < expected else "too long"
        raise DatasetError(
            f"{path}: {what}: header declares shape {shape} of {dtype.name} "
            f"({expected} data bytes), but {found} data bytes follow the header"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # copy: native order and writable

"""Row ranges of chunked, deflate/shuffle-compressed HDF5 datasets, decoded without holding the GIL.

A catalog run reads the next unit of an HDF5 dataset in a background thread while the network runs
(:mod:`starlabels.inference.catalog`). h5py holds Python's global interpreter lock for the whole of
a read, decompression included, so the network thread, which needs the lock between its kernels,
stalls: a 1-thread torch loop measured 1.5–3.5x slower next to an h5py reading thread on this
project's 2-core machine, and 0.91–0.99x next to a thread decoding the same chunks with
:func:`zlib.decompress` and NumPy, which release it. :func:`read_row_range` does the latter for the
layout :class:`~starlabels.data.hdf5.DatasetWriter` writes — chunks of whole rows, ``shuffle`` then
``deflate`` (gzip) or no filter — reading each chunk's stored bytes with h5py's
``read_direct_chunk`` (the bytes are copied, nothing decoded, under the lock) and decoding them
here. Any other layout (contiguous, chunks splitting rows, lzf, scale-offset, checksums, a chunk
never written) is read by h5py as before, so the result is always what ``ds[start:stop]`` returns
(tests compare the two bit for bit).
"""

from __future__ import annotations

import zlib

import h5py
import numpy as np

__all__ = ["read_row_range"]

_DEFLATE = h5py.h5z.FILTER_DEFLATE
_SHUFFLE = h5py.h5z.FILTER_SHUFFLE


def _pipeline(ds: h5py.Dataset) -> list[int] | None:
    """The dataset's filter codes in write order, or None when a filter is one this module does not
    decode (then h5py reads it)."""
    plist = ds.id.get_create_plist()
    codes = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if any(c not in (_DEFLATE, _SHUFFLE) for c in codes) or len(codes) != len(set(codes)):
        return None
    if codes == [_DEFLATE, _SHUFFLE]:  # shuffle after deflate: not what anyone writes
        return None
    return codes


def _decode(
    raw: bytes, filter_mask: int, codes: list[int], dtype: np.dtype, shape: tuple[int, ...]
) -> np.ndarray:
    """One stored chunk → its (rows, P) array. Bit i of ``filter_mask`` set: filter i was skipped."""
    data: bytes | np.ndarray = raw
    for i in reversed(range(len(codes))):  # undo the filters in reverse order of writing
        if filter_mask & (1 << i):
            continue
        if codes[i] == _DEFLATE:
            data = zlib.decompress(data)
        else:  # shuffle: byte k of every element stored together; transpose back
            planes = np.frombuffer(data, np.uint8).reshape(dtype.itemsize, -1)
            data = np.ascontiguousarray(planes.T)
    return np.frombuffer(data, dtype).reshape(shape)


def read_row_range(ds: h5py.Dataset, start: int, stop: int) -> np.ndarray:
    """``ds[start:stop]`` of a 2-D (or 1-D) dataset; decoded outside the GIL where the layout allows
    (see the module docstring), else by h5py."""
    start, stop = int(start), int(max(start, stop))
    chunks = ds.chunks
    if (
        chunks is None
        or ds.ndim not in (1, 2)
        or (ds.ndim == 2 and chunks[1] != ds.shape[1])
        or ds.dtype.kind not in "fiub"
        or stop - start == 0
    ):
        return ds[start:stop]
    codes = _pipeline(ds)
    if codes is None:
        return ds[start:stop]
    rows = chunks[0]
    out = np.empty((stop - start, *ds.shape[1:]), ds.dtype)
    first, last = start // rows, (stop - 1) // rows
    for c in range(first, last + 1):
        c0 = c * rows
        try:
            mask, raw = ds.id.read_direct_chunk((c0,) + (0,) * (ds.ndim - 1))
        except (KeyError, ValueError, OSError, RuntimeError):  # e.g. a chunk never written
            return ds[start:stop]
        chunk = _decode(raw, mask, codes, ds.dtype, chunks)
        a, b = max(start, c0), min(stop, c0 + rows)
        out[a - start:b - start] = chunk[a - c0:b - c0]
    return out

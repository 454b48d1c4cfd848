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
(tests compare the two bit for bit) — except for a damaged chunk: one whose deflate stream is
corrupt, or that decodes to a size other than the chunk's, raises
:class:`~starlabels.errors.InputFileError` naming the file, dataset and rows (h5py raises a bare
``OSError`` for the first and returns uninitialised memory for the second).

Decoding is most of what the reading process does for an HDF5 catalog run, on the core beside the
network's (cProfile of 256-row APOGEE units with :mod:`zlib` and a NumPy transpose: inflate 38 %,
un-shuffling 22 % of the reader's time). Inflate is zlib-ng's (:mod:`zlib_ng`: the same deflate
format, the GIL released likewise), and un-shuffling copies each byte plane into its strided place
in the output; a chunk that lies wholly inside the range is decoded straight into the result.
``bench/hdf5_decode.py`` measures both against the former code (one run: inflate 1.62x, un-shuffle
2.70x, a 256-row unit of flux, error and bitmask 2.44x, the reading process's whole work per unit
1.63x).
"""

from __future__ import annotations

import h5py
import numpy as np
from zlib_ng import zlib_ng

from starlabels.errors import InputFileError

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


def _damaged(ds: h5py.Dataset, c0: int, problem: str) -> InputFileError:
    """The error for the chunk of ``ds`` that starts at row ``c0`` (built only when one is damaged)."""
    return InputFileError(ds.file.filename,
                          f"dataset {ds.name}, the chunk of rows {c0}–{c0 + ds.chunks[0] - 1}: {problem}")


def _decode_into(
    raw: bytes, filter_mask: int, codes: list[int], dest: np.ndarray, ds: h5py.Dataset, c0: int
) -> None:
    """Decode the stored chunk of ``ds`` at row ``c0`` into ``dest`` (C-contiguous, the chunk's dtype
    and shape). Bit i of ``filter_mask`` set: filter i was skipped."""
    data: bytes = raw
    shuffled = False
    for i in reversed(range(len(codes))):  # undo the filters in reverse order of writing
        if not filter_mask & (1 << i):
            if codes[i] == _DEFLATE:
                try:
                    data = zlib_ng.decompress(data)
                except zlib_ng.error as exc:
                    raise _damaged(ds, c0, f"corrupt deflate stream ({exc})") from exc
            else:  # shuffle is written first (see _pipeline), so it is undone last
                shuffled = True
    if len(data) != dest.nbytes:
        raise _damaged(ds, c0, f"decodes to {len(data)} bytes, expected {dest.nbytes}")
    size = dest.dtype.itemsize
    stored = np.frombuffer(data, np.uint8)
    elements = dest.reshape(-1).view(np.uint8).reshape(-1, size)
    if shuffled and size > 1:  # byte k of every element stored together: plane k → column k
        planes = stored.reshape(size, -1)
        for k in range(size):
            elements[:, k] = planes[k]
    else:
        elements.reshape(-1)[:] = stored


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
    part = None  # a whole chunk, for those the range covers only in part
    first, last = start // rows, (stop - 1) // rows
    for c in range(first, last + 1):
        c0 = c * rows
        try:
            mask, raw = ds.id.read_direct_chunk((c0,) + (0,) * (ds.ndim - 1))
        except (KeyError, ValueError, OSError, RuntimeError):  # e.g. a chunk never written
            return ds[start:stop]
        a, b = max(start, c0), min(stop, c0 + rows)
        if a == c0 and b == c0 + rows:
            _decode_into(raw, mask, codes, out[a - start:b - start], ds, c0)
        else:
            part = np.empty(chunks, ds.dtype) if part is None else part
            _decode_into(raw, mask, codes, part, ds, c0)
            out[a - start:b - start] = part[a - c0:b - c0]
    return out

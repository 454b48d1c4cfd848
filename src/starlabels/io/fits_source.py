"""One small interface to a FITS file's header values and image rows, with two backends.

The APOGEE readers (:mod:`starlabels.io.apogee`, :mod:`starlabels.io.sdss_v`, :mod:`starlabels.io.read`)
are written once against :class:`FitsSource`; where the bytes come from is the backend's business:

* :class:`DirectSource` reads a plain, uncompressed FITS file itself: the header blocks of every HDU
  (80-character cards, :mod:`starlabels.io.fits_cards`; a value is parsed only when asked for), of an
  image only the rows asked for, of a binary table of fixed-size columns all rows, with ``os.pread``
  at the offsets the headers give. It costs a fraction of a millisecond per apStar file where astropy
  spends most of its time building and validating header cards, and it holds the GIL only while it
  parses the few cards a reader asks for (the reads release it).
* :class:`AstropySource` wraps an :mod:`astropy.io.fits` HDUList: every file and every HDU.

:class:`DirectSource` handles only what it reads exactly as astropy does. For anything else —
compressed files or HDUs, BSCALE/BZERO scaling, random groups, a header card whose value it does not
parse (complex numbers, long strings continued with CONTINUE, …), headers or data beyond the end of
the file, tables with variable-length or scaled columns, anything else unusual — it raises
:class:`NeedsAstropyError`, and :func:`read_fits` reads the file again through astropy. So the two
backends give the same results by construction, and errors about damaged files keep astropy's
wording (tests compare the two on fixtures and on the real DR17 files).
"""

from __future__ import annotations

import functools
import math
import os
import stat
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from starlabels.errors import InputFileError
from starlabels.io.fits_cards import DirectHeader, NeedsAstropyError, mandatory, mandatory_int
from starlabels.io.fits_file import (
    FITS_BLOCK,
    bintable_columns,
    bintable_dtype,
    check_fits_file,
    is_compressed,
    native,
    open_fits,
    read_bintable,
)

__all__ = ["AstropySource", "DirectHeader", "DirectSource", "FitsSource", "NeedsAstropyError", "read_fits"]

_T = TypeVar("_T")
_DTYPES = {8: np.dtype("u1"), 16: np.dtype(">i2"), 32: np.dtype(">i4"), 64: np.dtype(">i8"),
           -32: np.dtype(">f4"), -64: np.dtype(">f8")}
_END = b"END" + b" " * 77
_HAVE_PREAD = hasattr(os, "pread") and hasattr(os, "preadv")  # (not on Windows: astropy reads there)
#: bytes read at once for a header: most apStar extension headers fit one block, primaries three
_HEADER_READ = 4 * FITS_BLOCK


class FitsSource:
    """What the readers need from a FITS file (implemented by :class:`DirectSource` and
    :class:`AstropySource`).

    Attributes:
        path: the file.
    """

    path: str | os.PathLike[str]

    def __len__(self) -> int:
        """Number of HDUs."""
        raise NotImplementedError

    def header(self, index: int) -> Mapping[str, Any]:
        """HDU ``index``'s header values: ``key in h``, ``h[key]`` (KeyError when absent) and
        ``h.get(key, default)`` give plain Python values (str, int, float, bool, None) as astropy does."""
        raise NotImplementedError

    def image_info(self, index: int) -> tuple[int, tuple[int, ...]] | None:
        """(BITPIX, shape in numpy order) of image HDU ``index`` from its header; None when the HDU
        is not an image (a table)."""
        raise NotImplementedError

    def is_bintable(self, index: int) -> bool:
        """Whether HDU ``index`` is a binary table (not a compressed image)."""
        raise NotImplementedError

    def table(self, index: int) -> dict[str, np.ndarray]:
        """Every column of binary-table HDU ``index`` (as :func:`~starlabels.io.fits_file.read_bintable`)."""
        raise NotImplementedError

    def image_shape(self, index: int, name: str) -> tuple[int, ...]:
        """Shape of image HDU ``index`` (``name`` says what it holds, for error messages).

        Raises:
            InputFileError: no such HDU, not an image, or no data.
        """
        raise NotImplementedError

    def image(self, index: int, name: str, rows: int | slice | None = None, dtype: Any = None) -> np.ndarray:
        """Image HDU ``index`` (everything, or only ``rows``: an int or a slice over the first numpy
        axis) as a new C-contiguous array in native byte order, of the file's dtype (astropy's for
        scaled data) or cast to ``dtype`` (e.g. float64 for float32 data: the same values as casting
        the file's array, in one pass over the data instead of a byte swap and then a cast).

        Raises:
            InputFileError: as :meth:`image_shape`; OSError, ValueError: data shorter than the header says.
        """
        raise NotImplementedError


# ------------------------------------------------------------------------------------------------
# astropy
# ------------------------------------------------------------------------------------------------
class AstropySource(FitsSource):
    """:class:`FitsSource` on an open astropy HDUList (from :func:`~starlabels.io.fits_file.open_fits`).

    Attributes:
        hdul: the HDUList, for readers of formats only astropy reads here (BOSS spec files, tables).
    """

    def __init__(self, hdul: Any, path: str | os.PathLike[str]):
        self.hdul = hdul
        self.path = path

    def __len__(self) -> int:
        return len(self.hdul)

    def header(self, index: int) -> Mapping[str, Any]:
        return self.hdul[index].header

    def image_info(self, index: int) -> tuple[int, tuple[int, ...]] | None:
        from astropy.io import fits

        hdu = self.hdul[index]
        if not isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
            return None
        h = hdu.header
        prefix = "ZNAXIS" if "ZNAXIS" in h else "NAXIS"
        naxis = int(h.get(prefix, 0))
        shape = tuple(int(h.get(f"{prefix}{i}", 0)) for i in range(naxis, 0, -1))
        return int(h.get("ZBITPIX", h.get("BITPIX", 0))), shape

    def is_bintable(self, index: int) -> bool:
        from astropy.io import fits

        return isinstance(self.hdul[index], fits.BinTableHDU)

    def table(self, index: int) -> dict[str, np.ndarray]:
        return read_bintable(self.hdul, index, self.path)

    def image_shape(self, index: int, name: str) -> tuple[int, ...]:
        return tuple(self._data(index, name).shape)

    def image(self, index: int, name: str, rows: int | slice | None = None, dtype: Any = None) -> np.ndarray:
        data = self._data(index, name)
        return native(data if rows is None else data[rows], dtype)  # (memory-mapped data are read here)

    def _data(self, index: int, name: str) -> np.ndarray:
        from astropy.io import fits

        if index >= len(self.hdul):
            raise InputFileError(self.path, f"has {len(self.hdul)} HDUs, no HDU{index} ({name})")
        hdu = self.hdul[index]
        if not isinstance(hdu, fits.ImageHDU | fits.PrimaryHDU | fits.CompImageHDU):
            raise InputFileError(self.path,
                                 f"HDU{index} ({name}) is a {type(hdu).__name__}, expected an image")
        try:
            data = hdu.data
        except Exception as e:
            raise InputFileError(self.path,
                                 f"cannot read HDU{index} ({name}): {type(e).__name__}: {e}") from e
        if data is None:
            raise InputFileError(self.path, f"HDU{index} ({name}) holds no data")
        return data


# ------------------------------------------------------------------------------------------------
# direct
# ------------------------------------------------------------------------------------------------
class _Layout:
    """What one HDU's header says: image or table, dtype, shape, data bytes; its other cards
    parsed into a :class:`DirectHeader` when first asked for."""

    __slots__ = ("_header", "_plain", "_text", "data_size", "dtype", "image", "shape", "xtension")

    def __init__(self, text: str, primary: bool):
        first = mandatory(text, 0, "SIMPLE" if primary else "XTENSION")
        self.xtension = "" if primary else first
        if primary:
            if first is not True:
                raise NeedsAstropyError
            self.image = True
        elif first in ("IMAGE", "BINTABLE", "TABLE"):
            self.image = first == "IMAGE"  # (compressed images are BINTABLEs: left to astropy)
        else:
            raise NeedsAstropyError  # foreign extensions
        bitpix = mandatory(text, 1, "BITPIX")
        naxis = mandatory_int(text, 2, "NAXIS")
        if bitpix not in _DTYPES or naxis > 999:
            raise NeedsAstropyError
        axes = [mandatory_int(text, 3 + i, f"NAXIS{i + 1}") for i in range(naxis)]
        if primary:
            if axes[:1] == [0]:
                raise NeedsAstropyError  # random groups
            pcount, gcount = 0, 1
        else:
            pcount = mandatory_int(text, 3 + naxis, "PCOUNT")
            gcount = mandatory_int(text, 4 + naxis, "GCOUNT")
        elements = math.prod(axes) if naxis else 0
        self.data_size = abs(bitpix) // 8 * gcount * (pcount + elements)
        self.shape = tuple(reversed(axes))
        self.dtype = _DTYPES[bitpix]
        self._text = text
        self._header: DirectHeader | None = None
        self._plain: bool | None = None

    @property
    def plain_image(self) -> bool:
        """An image with data and without BSCALE/BZERO (read directly; anything else by astropy)."""
        if self._plain is None:
            self._plain = bool(self.image and self.shape and 0 not in self.shape
                               and "BSCALE" not in self.header and "BZERO" not in self.header)
        return self._plain

    @property
    def header(self) -> DirectHeader:
        if self._header is None:
            self._header = DirectHeader(self._text)
        return self._header


def _layout(head: bytes, primary: bool) -> _Layout:
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise NeedsAstropyError from None
    return _Layout(text, primary)


#: extension headers repeat from file to file (apStar HDU1–7 differ at most in NAXIS2): each
#: distinct one is parsed once (keyed by its bytes, so a cached layout is exactly that header's)
_extension_layout = functools.lru_cache(maxsize=256)(lambda head: _layout(head, False))


class DirectSource(FitsSource):
    """:class:`FitsSource` reading a plain FITS file itself (see the module docstring).

    Use :meth:`open` (a context manager); it raises :class:`NeedsAstropyError` for files astropy
    must read.
    """

    def __init__(self, path: str | os.PathLike[str], fd: int, hdus: list[tuple[_Layout, int]]):
        self.path = path
        self._fd = fd
        self._hdus = hdus

    @classmethod
    def open(cls, path: str | os.PathLike[str], what: str, *, quiet: bool = False) -> _Opened:
        """A context manager that opens and scans ``path``: InputFileError as
        :func:`~starlabels.io.fits_file.open_fits` for missing, empty, non-FITS and block-truncated
        files (with ``quiet``, NeedsAstropyError for those too: for callers that try other formats
        next); NeedsAstropyError for what it leaves to astropy."""
        if is_compressed(path) or not _HAVE_PREAD:
            if not quiet:
                check_fits_file(path, what)
            raise NeedsAstropyError
        return _Opened(cls, path, what, quiet)

    @staticmethod
    def _scan(fd: int, size: int) -> list[tuple[_Layout, int]]:
        """(layout, data offset) of every HDU, from the headers."""
        hdus: list[tuple[_Layout, int]] = []
        offset = 0
        while offset < size:
            buf = os.pread(fd, FITS_BLOCK if hdus else _HEADER_READ, offset)
            start = 0
            while True:
                pos = buf.find(_END, start)
                while pos >= 0 and pos % 80:
                    pos = buf.find(_END, pos + 1)
                if pos >= 0:
                    break
                more = os.pread(fd, _HEADER_READ, offset + len(buf)) if offset + len(buf) < size else b""
                if not more:
                    raise NeedsAstropyError  # no END card before the end of the file
                start = len(buf) - len(_END) + 1
                buf += more
            head = buf[:pos]
            layout = _extension_layout(head) if hdus else _layout(head, True)
            data_offset = offset + (pos // FITS_BLOCK + 1) * FITS_BLOCK
            hdus.append((layout, data_offset))
            offset = data_offset + -(-layout.data_size // FITS_BLOCK) * FITS_BLOCK
        if offset > size or not hdus:
            raise NeedsAstropyError  # data beyond the end of the file: astropy words the error
        return hdus

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)

    def __len__(self) -> int:
        return len(self._hdus)

    def header(self, index: int) -> Mapping[str, Any]:
        return self._hdus[index][0].header

    def image_info(self, index: int) -> tuple[int, tuple[int, ...]] | None:
        layout = self._hdus[index][0]
        return (_bitpix(layout.dtype), layout.shape) if layout.image else None

    def is_bintable(self, index: int) -> bool:
        layout = self._hdus[index][0]
        if layout.xtension == "BINTABLE" and "ZIMAGE" in layout.header:
            raise NeedsAstropyError  # a compressed image (astropy: CompImageHDU) or not
        return layout.xtension == "BINTABLE"

    def table(self, index: int) -> dict[str, np.ndarray]:
        layout, data_offset = self._hdus[index]
        dtype = bintable_dtype(layout.header) if self.is_bintable(index) else None
        if dtype is None:
            raise NeedsAstropyError  # scaled, variable-length, complex or bit columns; not a table
        n_rows = layout.shape[0] if layout.shape else 0
        raw = np.empty(n_rows, dtype)
        n = n_rows * dtype.itemsize
        if n and os.preadv(self._fd, [raw.view(np.uint8)], data_offset) != n:
            raise OSError(f"short read in HDU{index} (table)")
        return bintable_columns(raw, layout.header)

    def image_shape(self, index: int, name: str) -> tuple[int, ...]:
        return self._image_hdu(index, name)[0].shape

    def image(self, index: int, name: str, rows: int | slice | None = None, dtype: Any = None) -> np.ndarray:
        layout, data_offset = self._image_hdu(index, name)
        shape = layout.shape
        if rows is None:
            first, count, out_shape = 0, shape[0], shape
        elif isinstance(rows, slice):
            first, stop, step = rows.indices(shape[0])
            if step != 1:
                return np.ascontiguousarray(self.image(index, name, None, dtype)[rows])
            count = max(stop - first, 0)
            out_shape = (count, *shape[1:])
        else:
            r = int(rows)
            if not -shape[0] <= r < shape[0]:
                raise IndexError(f"row {r} out of range for HDU{index} of shape {shape}")
            first, count, out_shape = r % shape[0], 1, shape[1:]
        row_bytes = layout.dtype.itemsize * math.prod(shape[1:])
        out = np.empty(out_shape, layout.dtype)
        n = count * row_bytes
        target = out.reshape(-1).view(np.uint8)
        if n and os.preadv(self._fd, [target], data_offset + first * row_bytes) != n:
            raise OSError(f"short read in HDU{index} ({name})")
        if dtype is not None:
            dt = np.dtype(dtype)
            dt = dt if dt.byteorder in ("=", "|") else dt.newbyteorder("=")
            if dt != out.dtype.newbyteorder("="):
                return out.astype(dt)  # swapped and cast in one pass (the same dtype: swapped in place below)
        if out.dtype.byteorder not in ("=", "|"):
            out = out.byteswap(inplace=True).view(out.dtype.newbyteorder("="))
        return out

    def _image_hdu(self, index: int, name: str) -> tuple[_Layout, int]:
        if index >= len(self._hdus):
            raise InputFileError(self.path, f"has {len(self._hdus)} HDUs, no HDU{index} ({name})")
        layout = self._hdus[index][0]
        if not layout.plain_image:
            raise NeedsAstropyError  # tables, scaled or empty images: astropy's data and wording
        return self._hdus[index]


def _bitpix(dtype: np.dtype) -> int:
    return (-8 if dtype.kind == "f" else 8) * dtype.itemsize


class _Opened:
    """Context manager of :meth:`DirectSource.open`."""

    def __init__(self, cls: type[DirectSource], path: str | os.PathLike[str], what: str, quiet: bool):
        self._cls, self._path, self._what, self._quiet = cls, path, what, quiet
        self._source: DirectSource | None = None

    def __enter__(self) -> DirectSource:
        try:
            fd = os.open(self._path, os.O_RDONLY)
        except OSError:
            if not self._quiet:
                check_fits_file(self._path, self._what)  # the error, worded as open_fits words it
            raise NeedsAstropyError from None
        try:
            st = os.fstat(fd)
            size = st.st_size
            if not stat.S_ISREG(st.st_mode) or not size or size % FITS_BLOCK \
                    or os.pread(fd, 9, 0) != b"SIMPLE  =":
                if not self._quiet:
                    check_fits_file(self._path, self._what)
                raise NeedsAstropyError
            hdus = self._cls._scan(fd, size)
        except BaseException:
            os.close(fd)
            raise
        self._source = self._cls(self._path, fd, hdus)
        return self._source

    def __exit__(self, *exc: object) -> None:
        if self._source is not None:
            self._source.close()


def read_fits(path: str | os.PathLike[str], what: str, reader: Callable[[FitsSource], _T]) -> _T:
    """``reader(source)`` on a :class:`DirectSource` of ``path``, or, where that raises
    :class:`NeedsAstropyError`, on an :class:`AstropySource` (the file opened again by astropy).

    ``reader`` must not have side effects before it returns (it may run twice).

    Raises:
        InputFileError: as :func:`~starlabels.io.fits_file.open_fits`, or from ``reader``.
    """
    try:
        with DirectSource.open(path, what) as source:
            return reader(source)
    except NeedsAstropyError:
        pass
    with open_fits(path, what) as hdul:
        return reader(AstropySource(hdul, path))

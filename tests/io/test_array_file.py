"""NumPy array files that configure a model: values come back as saved, and each wrong file is an
InputFileError that names the file, its role and the problem."""

from __future__ import annotations

import numpy as np
import pytest

from starlabels.errors import InputFileError
from starlabels.io.array_file import load_array_file, load_element_windows_npz, load_pixel_vector


def _problem(call, path, what: str) -> str:
    with pytest.raises(InputFileError) as err:
        call()
    text = str(err.value)
    assert text.startswith(f"{path}: {what}: "), text
    return text


def test_pixel_vector_round_trip_and_refusals(tmp_path):
    values = np.array([0, 3, -1, 7], np.int16)
    np.save(tmp_path / "v.npy", values)
    got = load_pixel_vector(tmp_path / "v.npy", "mask")
    np.testing.assert_array_equal(got, values)
    assert got.dtype == np.int16  # as stored: the caller decides what the values mean

    np.save(tmp_path / "square.npy", np.ones((2, 3)))
    (tmp_path / "text.npy").write_text("0 1 1 0\n")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "archive.npz", mask=values)
    cases = {
        "square.npy": "1-D array; it holds shape (2, 3)",
        "text.npy": "not a readable .npy/.npz file",
        "objects.npy": "not a readable .npy/.npz file",  # a pickle is refused, never loaded
        "archive.npz": "this is an .npz archive",
        "absent.npy": "file does not exist",
    }
    for name, problem in cases.items():
        path = tmp_path / name
        assert problem in _problem(lambda path=path: load_pixel_vector(path, "mask"), path, "mask")


def test_array_file_gives_npz_archives_open(tmp_path):
    np.savez(tmp_path / "two.npz", a=np.arange(3), b=np.ones(2, bool))
    with load_array_file(tmp_path / "two.npz", "table") as archive:
        assert sorted(archive.files) == ["a", "b"]
        np.testing.assert_array_equal(archive["a"], [0, 1, 2])


def test_element_windows_round_trip_and_refusals(tmp_path):
    windows = np.zeros((2, 10), bool)
    windows[0, 2:4] = windows[1, 7] = True
    np.savez(tmp_path / "w.npz", windows=windows.astype(np.uint8), elements=np.array(["Mg", "Fe"]))
    got, names = load_element_windows_npz(tmp_path / "w.npz")
    np.testing.assert_array_equal(got, windows)
    assert got.dtype == bool and names == ["Mg", "Fe"] and all(type(n) is str for n in names)

    np.savez(tmp_path / "no_names.npz", windows=windows)
    np.savez(tmp_path / "mismatch.npz", windows=windows, elements=np.array(["Mg"]))
    np.save(tmp_path / "one.npy", windows)
    np.savez(tmp_path / "objects.npz", windows=windows, elements=np.array([object()], dtype=object))
    cases = {
        "no_names.npz": "needs arrays 'windows' and 'elements', has ['windows']",
        "mismatch.npz": "'windows' of shape (2, 10) do not match 1 element names",
        "one.npy": "this is one .npy array",
        "objects.npz": "not a readable .npz file",
        "absent.npz": "file does not exist",
    }
    for name, problem in cases.items():
        path = tmp_path / name
        text = _problem(lambda path=path: load_element_windows_npz(path), path, "element windows")
        assert problem in text, text
        assert text.count(str(path)) == 1, text  # one message, not one wrapped in another


def test_the_layers_that_load_array_files_do_not_import_the_readers_until_they_do():
    """preprocess and models read these files through starlabels.io, whose package imports every reader
    (~50 ms): they import it when a file is loaded, so importing them stays as light as before."""
    import subprocess
    import sys

    code = "import sys, starlabels.preprocess, starlabels.models; print('starlabels.io' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

"""`report --reference` takes a simulated HDF5 dataset: its meta/true_* are the reference labels."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from starlabels.cli.main import cli
from starlabels.errors import InputFileError
from starlabels.evaluation.report import read_table


def test_hdf5_truth_becomes_true_columns(tmp_path):
    res = CliRunner().invoke(cli, ["simulate", "-n", "8", "-o", str(tmp_path / "s.h5")])
    assert res.exit_code == 0, res.output
    table = read_table(tmp_path / "s.h5", "reference")
    with h5py.File(tmp_path / "s.h5") as fh:
        ids = [x.decode() if isinstance(x, bytes) else str(x) for x in fh["meta/apogee_id"][:]]
        np.testing.assert_array_equal(table["TRUE_LOGG"], fh["meta/true_LOGG"][:])
        np.testing.assert_array_equal(table["SNR"], fh["meta/snr"][:])
    assert table["APOGEE_ID"].tolist() == ids
    assert {"TRUE_TEFF", "TRUE_FE_H", "GROUP"} <= set(table.columns)


def test_hdf5_without_truth_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "no_truth.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("meta/apogee_id", data=np.array([b"a", b"b"]))
    with pytest.raises(InputFileError, match="meta/true_") as info:
        read_table(path, "reference")
    assert "no_truth.h5" in str(info.value)

"""The evaluation and training code change no warnings filter (``warnings.catch_warnings`` and
``simplefilter`` change process-wide state, not thread-safe): the warnings they used to silence are
not produced at all, and the numbers are numpy's."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np
import pytest

from script_module import load_script
from starlabels.errors import InputDataError
from starlabels.evaluation import metrics
from starlabels.evaluation.binned_statistics import nanmean_columns, nanstd_columns
from starlabels.training.provenance import label_range

# the report tests' inputs (a catalog, its reference, a tiny model folder) and their CLI runner
report_inputs = load_script(Path(__file__).parents[1] / "report" / "conftest.py", "_report_inputs",
                            register=True)  # (its dataclass looks its module up there)


@pytest.fixture
def filter_changes(monkeypatch) -> list[str]:
    """Modules of starlabels that call catch_warnings/simplefilter/filterwarnings (recorded), while
    every warning is recorded too (``warnings_seen``)."""
    callers: list[str] = []

    def spy(original):
        def recording(*args, **kwargs):
            module = inspect.currentframe().f_back.f_globals.get("__name__", "")
            if module.startswith("starlabels"):
                callers.append(module)
            return original(*args, **kwargs)
        return recording

    for name in ("catch_warnings", "simplefilter", "filterwarnings"):
        monkeypatch.setattr(warnings, name, spy(getattr(warnings, name)))
    return callers


def _no_warnings(call):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = call()
    assert [str(w.message) for w in seen] == []
    return result


def test_column_means_and_stds_are_numpys_without_the_empty_slice_warning():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5)) * [1, 10, 1e3, 1e-3, 1]
    x[rng.random(x.shape) < 0.3] = np.nan
    x[:, 4] = np.nan  # a column without values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
    ours_mean = _no_warnings(lambda: nanmean_columns(x))
    ours_std = _no_warnings(lambda: nanstd_columns(x))
    assert np.array_equal(ours_mean, mean, equal_nan=True) and np.isnan(ours_mean[4])
    assert np.array_equal(ours_std, std, equal_nan=True) and np.isnan(ours_std[4])


def test_label_range_of_an_all_missing_label_is_null_without_a_warning(filter_changes):
    labels = np.array([[5000.0, -9999.0, 1.0], [4000.0, np.nan, np.inf], [4500.0, -9999.0, -2.0]])
    got = _no_warnings(lambda: label_range(labels))
    assert got["min"] == [4000.0, None, -2.0] and got["max"] == [5000.0, None, 1.0]
    assert filter_changes == []


def test_apogee_net_tables_with_an_empty_label_is_a_clear_error_without_a_warning(filter_changes):
    ref = np.c_[np.linspace(4000, 5000, 6), np.full(6, np.nan)]
    pred = ref + 1.0
    with pytest.raises(InputDataError, match="standard deviations must be positive"):
        _no_warnings(lambda: metrics.apogee_net_tables(pred, ref, ["TEFF", "LOGG"], split=["train"] * 6))
    assert filter_changes == []


def test_a_report_changes_no_warnings_filter_and_reads_foreign_units_quietly(tmp_path, filter_changes):
    from astropy.io import fits
    from astropy.table import Table

    catalog, ref = report_inputs.make_catalog_and_reference(n=60)
    catalog["AL_FE"] = np.nan  # a label without a single value: its statistics and figures
    catalog.to_parquet(tmp_path / "catalog.parquet", index=False)
    Table.from_pandas(ref).write(tmp_path / "reference.fits")
    with fits.open(tmp_path / "reference.fits", mode="update") as hdus:  # a unit astropy does not know
        hdus[1].header[f"TUNIT{ref.columns.get_loc('TEFF') + 1}"] = "furlongs per fortnight squared"
    model = report_inputs.save_model(tmp_path / "model")
    result = _no_warnings(lambda: report_inputs.run_cli(
        model, tmp_path / "catalog.parquet", "--reference", tmp_path / "reference.fits",
        "-o", tmp_path / "out", "--no-isochrones"))
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "index.html").read_text()
    assert "could not be drawn" not in page
    assert filter_changes == []
    # the reference was read with its values (the unknown unit only dropped)
    from starlabels.evaluation.report_inputs import read_table

    back = read_table(tmp_path / "reference.fits", "reference")
    assert np.array_equal(back["TEFF"].to_numpy(float), ref["TEFF"].to_numpy(float), equal_nan=True)

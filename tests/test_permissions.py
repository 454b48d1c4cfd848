"""Atomic writers must leave files others can read (mkstemp/mkdtemp alone give 0600/0700)."""

import os
import stat

import numpy as np

from starlabels.utils import give_default_permissions


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_give_default_permissions_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        f = tmp_path / "f"
        f.write_text("x")
        os.chmod(f, 0o600)
        give_default_permissions(f)
        assert _mode(f) == 0o640
        d = tmp_path / "d"
        d.mkdir(mode=0o700)
        give_default_permissions(d, directory=True)
        assert _mode(d) == 0o750
    finally:
        os.umask(old)


def test_saved_model_folder_and_fits_are_group_and_world_readable(tmp_path):
    from starlabels.data.normalization import LabelScaler, SpectrumScaler
    from starlabels.io import write_apstar
    from starlabels.models import build_network
    from starlabels.models.folder import TrainedModel

    old = os.umask(0o022)
    try:
        net = build_network("bcnn", n_labels=2, n_pixels=64)
        model = TrainedModel(
            net, label_names=["TEFF", "LOGG"],
            label_scaler=LabelScaler(names=["TEFF", "LOGG"]).fit(np.array([[4000.0, 1.0], [5000.0, 3.0]])),
            spectrum_scaler=SpectrumScaler("none"),
        )
        folder = model.save(tmp_path / "model")
        assert _mode(folder) == 0o755
        assert all(_mode(p) == 0o644 for p in folder.iterdir())
        p = tmp_path / "apStar-x.fits"
        write_apstar(p, np.ones(8575), np.ones(8575), np.zeros(8575, np.int32),
                     {"APOGEE_ID": "x", "SNR": 10.0, "NVISITS": 1})
        assert _mode(p) == 0o644
    finally:
        os.umask(old)

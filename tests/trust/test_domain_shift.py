"""The domain-shift estimator: scores against a hand computation, thresholds, round trips."""

from __future__ import annotations

import numpy as np
import pytest

from starlabels.errors import InputDataError
from starlabels.inference import flags
from starlabels.inference.domain_shift import DomainShift, load_domain_shift


def _low_rank(rng, n, basis, noise=0.01):
    coef = rng.normal(size=(n, basis.shape[0]))
    return 1.0 + coef @ basis + rng.normal(0, noise, size=(n, basis.shape[1]))


@pytest.fixture
def spaces():
    rng = np.random.default_rng(1)
    P, K = 200, 4
    basis = np.linalg.qr(rng.normal(size=(P, K)))[0].T * 0.1  # (K, P), orthogonal rows
    other = np.linalg.qr(rng.normal(size=(P, K)))[0].T * 0.5  # 0.035 per pixel against noise 0.01
    return rng, basis, other


def test_pca_score_matches_a_hand_computation_and_flags_another_subspace(spaces):
    rng, basis, other = spaces
    train, dev = _low_rank(rng, 2000, basis), _low_rank(rng, 1000, basis)
    err = np.full_like(dev, 0.01)
    ds = DomainShift("pca", n_components=4, percentile=99.0).fit(train, dev, dev_error=err)
    # hand computation: exact PCA of the same training rows
    mean = train.mean(axis=0)
    v = np.linalg.svd(train - mean, full_matrices=False)[2][:4]
    resid = lambda x: (x - mean) - ((x - mean) @ v.T) @ v  # noqa: E731
    floor = np.sqrt(np.mean(resid(train) ** 2, axis=0)) + 1e-6
    test = _low_rank(rng, 50, other)
    terr = np.full_like(test, 0.01)
    terr[:, :10] = np.inf  # masked pixels are left out of the mean
    z2 = np.minimum(resid(test) ** 2 / (floor ** 2 + terr ** 2), 100.0)[:, 10:]
    raw = z2.mean(axis=1)
    np.testing.assert_allclose(ds.score(test, terr), raw / ds.threshold_, rtol=1e-6)
    dev_raw = np.minimum(resid(dev) ** 2 / (floor ** 2 + err ** 2), 100).mean(axis=1)
    np.testing.assert_allclose(ds.threshold_, np.percentile(dev_raw, 99), rtol=1e-6)
    # in-domain held-out rows: about 1 % flagged; the other subspace: every row
    held = _low_rank(rng, 2000, basis)
    assert np.mean(ds.score(held, np.full_like(held, 0.01)) > 1) <= 0.03
    assert (ds.score(test, terr) > 1).all()
    assert ds.dev_fraction_flagged_ <= 0.02


def test_knn_on_features_and_nan_rows(spaces):
    rng, basis, other = spaces
    train, dev = _low_rank(rng, 500, basis), _low_rank(rng, 300, basis)
    ds = DomainShift("knn", k=5).fit(train, dev)
    far = _low_rank(rng, 20, other) + 1.0
    far[0] = np.nan
    s = ds.score(far)
    assert np.isnan(s[0]) and (s[1:] > 1).all()
    d = np.linalg.norm(far[1:, None, :] - train[None], axis=2)
    np.testing.assert_allclose(s[1:], np.sort(d, axis=1)[:, :5].mean(axis=1) / ds.threshold_, rtol=1e-6)


def test_round_trip_through_a_folder(spaces, tmp_path):
    rng, basis, other = spaces
    train, dev = _low_rank(rng, 400, basis), _low_rank(rng, 200, basis)
    test = _low_rank(rng, 30, other)
    for method in ("pca", "knn"):
        ds = DomainShift(method, n_components=4).fit(train, dev)
        ds.save(tmp_path)
        back = load_domain_shift(tmp_path)
        assert back.method == method
        np.testing.assert_allclose(back.score(test), ds.score(test), rtol=1e-4)
        again = DomainShift.from_dict(ds.to_dict())
        np.testing.assert_allclose(again.score(test), ds.score(test), rtol=1e-4)


def test_bad_settings_and_unfitted_use_are_refused():
    # scikit-learn conventions: the constructor only stores its settings; fit checks them
    bad = DomainShift("mahalanobis", percentile=99.0)
    assert bad.method == "mahalanobis" and bad.percentile == 99.0 and not hasattr(bad, "threshold_")
    with pytest.raises(InputDataError, match="method"):
        bad.fit(np.zeros((5, 3)), np.zeros((2, 3)))
    with pytest.raises(InputDataError, match="percentile"):
        DomainShift(percentile=0.0).fit(np.zeros((5, 3)), np.zeros((2, 3)))
    with pytest.raises(InputDataError, match="not fitted"):
        DomainShift().score(np.zeros((2, 3)))


def test_flag_bit():
    assert flags.DOMAIN_SHIFT == flags.bit("DOMAIN_SHIFT") == 1 << 9
    assert flags.decode(flags.DOMAIN_SHIFT | flags.bit("RESAMPLED")) == ["RESAMPLED", "DOMAIN_SHIFT"]


@pytest.mark.parametrize("shape", [(120, 80), (80, 120)], ids=["tall", "wide"])
def test_randomized_svd_is_svd_lowrank_on_a_private_generator(shape):
    import torch

    from starlabels.inference.domain_shift import randomized_right_singular_vectors

    rng = np.random.default_rng(3)
    left, right = (np.linalg.qr(rng.normal(size=(n, 6)))[0] for n in shape)
    a = torch.from_numpy(left @ np.diag([50.0, 40, 30, 20, 10, 5]) @ right.T
                         + 0.01 * rng.normal(size=shape))  # rank 6 and a little noise
    with torch.random.fork_rng():
        torch.manual_seed(4)
        _, _, v = torch.svd_lowrank(a, q=12, niter=4)
    before = torch.get_rng_state()
    ours = randomized_right_singular_vectors(a, 12, niter=4, generator=torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), before)  # the global generator was not drawn from
    assert torch.equal(ours, v)  # step for step the same algorithm and draws
    # and they are right singular vectors: ||a v_i|| are the leading singular values
    exact = np.linalg.svd(a.numpy(), compute_uv=False)[:6]
    np.testing.assert_allclose(np.linalg.norm(a.numpy() @ ours.numpy()[:, :6], axis=0), exact, rtol=1e-6)
    assert exact[5] > 4.9  # (the spectrum the test was built with)


def test_pca_fit_neither_uses_nor_changes_the_global_torch_generator(spaces):
    import torch

    rng, basis, _ = spaces
    train, dev = _low_rank(rng, 300, basis), _low_rank(rng, 100, basis)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        before = torch.get_rng_state()
        first = DomainShift("pca", n_components=4, seed=2).fit(train, dev)
        assert torch.equal(torch.get_rng_state(), before)
        torch.manual_seed(99)
        second = DomainShift("pca", n_components=4, seed=2).fit(train, dev)
    assert np.array_equal(first.components_, second.components_)
    assert first.threshold_ == second.threshold_


_SCORE_DIGEST = """
import hashlib, sys
import numpy as np, torch
from starlabels.inference.domain_shift import DomainShift
torch.set_num_threads(1)
rng = np.random.default_rng(5)
basis = np.linalg.qr(rng.normal(size=(3000, 8)))[0].T * 0.1
rows = lambda n: 1.0 + rng.normal(size=(n, 8)) @ basis + rng.normal(0, 0.01, size=(n, 3000))
train, dev, test = rows(600), rows(300), rows(512)
ds = DomainShift("pca", n_components=8).fit(train, dev, dev_error=np.full_like(dev, 0.01))
score = ds.score(test, np.full_like(test, 0.01))
print(hashlib.sha1(score.tobytes() + ds.floor_.tobytes()).hexdigest())
"""


def test_pca_scores_do_not_depend_on_numpys_blas_threads():
    """The score's matrix products run in torch (on torch's thread count, which a catalog run sets),
    so NumPy's BLAS threads — 1 in a Dask worker, every core in a plain process — change no bit
    (with NumPy's products they changed the last bits: 512 × 3000 rows on 1 and 2 threads)."""
    import os
    import subprocess
    import sys

    digests = set()
    for threads in ("1", "2"):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads,
               "MKL_NUM_THREADS": threads}
        out = subprocess.run([sys.executable, "-c", _SCORE_DIGEST], env=env, capture_output=True, text=True,
                             check=True, timeout=120)
        digests.add(out.stdout.strip())
    assert len(digests) == 1, digests

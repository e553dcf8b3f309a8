import numpy as np
import pytest
import scipy.linalg
import torch

from studio import StudioError
from studio.fid.frechet import frechet_distance
from studio.fid.stats import FeatureStats, load_stats, save_stats


def _scipy_fid(mu1, s1, mu2, s2):
    """Independent reference: pytorch-fid's formula with scipy's sqrtm, float64."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_matches_scipy_on_random_gaussians():
    rng = np.random.default_rng(0)
    for d in (4, 32, 64):
        a, b = rng.normal(size=(200, d)), rng.normal(size=(300, d)) * 1.5 + 0.3
        mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_scipy_fid(mu1, s1, mu2, s2), rel=1e-8)


def test_frechet_analytic_cases():
    eye = np.eye(3)
    assert frechet_distance(np.zeros(3), eye, np.zeros(3), eye) == pytest.approx(0.0, abs=1e-10)
    # shifted mean, equal covariances: d^2 = ||shift||^2
    assert frechet_distance(np.zeros(3), eye, np.array([1.0, 2.0, 2.0]), eye) == pytest.approx(9.0)
    # scaled isotropic covariances: Tr(a^2 I + b^2 I - 2ab I) = d (a - b)^2
    assert frechet_distance(np.zeros(3), 4 * eye, np.zeros(3), eye) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(3), eye, np.zeros(2), np.eye(2))


def test_streaming_stats_equal_numpy_cov_and_round_trip(tmp_path):
    x = torch.randn(101, 8, dtype=torch.float64) * 2 + 1
    st = FeatureStats(8)
    for chunk in x.split(17):
        st.update(chunk)
    mu, sigma = st.mu_sigma()
    np.testing.assert_allclose(mu, x.numpy().mean(0), atol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.numpy(), rowvar=False), atol=1e-10)
    path = save_stats(tmp_path / "ref.npz", mu, sigma, st.n, {"source": "test"})
    mu2, sigma2, n, meta = load_stats(path)
    assert np.array_equal(mu, mu2) and np.array_equal(sigma, sigma2) and n == 101 and meta == {"source": "test"}
    # pytorch-fid / clean-fid style files hold only mu and sigma
    np.savez(tmp_path / "plain.npz", mu=mu, sigma=sigma)
    assert load_stats(tmp_path / "plain.npz")[2] == -1


def test_stats_errors(tmp_path):
    st = FeatureStats(4)
    st.update(torch.zeros(1, 4))
    with pytest.raises(StudioError, match="at least 2 images"):
        st.mu_sigma()
    np.savez(tmp_path / "bad.npz", mu=np.zeros(3), sigma=np.zeros((2, 2)))
    with pytest.raises(StudioError, match="do not fit"):
        load_stats(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(StudioError, match="not a statistics file"):
        load_stats(tmp_path / "other.npz")

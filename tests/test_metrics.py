"""KID and improved precision/recall on feature sets: an independent reference (torch-fidelity), a
brute-force implementation written here, constructed cases, and the one-line errors."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from torch_fidelity.metric_kid import kid_features_to_metric

from studio import StudioError
from studio.fid.kid import kid
from studio.fid.precision_recall import equal_sizes, precision_recall


def _features(n, seed, shift=0.0, d=64):
    rng = np.random.default_rng(seed)
    return (np.abs(rng.normal(0.3, 0.4, size=(n, d))) + shift).astype(np.float32)  # pool features are >= 0


@pytest.mark.parametrize("subsets,size", [(3, 200), (20, 50)])
def test_kid_equals_torch_fidelity_on_the_same_subsets(subsets, size):
    a, b = _features(200, 0), _features(240, 1, shift=0.05)
    ours = kid(a, b, subsets=subsets, subset_size=size, seed=7)
    theirs = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=subsets,
                                    kid_subset_size=size, rng_seed=7, verbose=False)
    assert ours["kid_mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)
    assert ours["kid_std"] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-3, abs=1e-7)


def test_kid_is_about_zero_for_two_samples_of_one_distribution_and_grows_with_a_shift():
    a, b = _features(300, 0), _features(300, 5)
    same, near, far = (kid(a, b + s, subsets=10, subset_size=300)["kid_mean"] for s in (0.0, 0.05, 0.2))
    assert abs(same) < 0.05 * near and 0 < near < far


def test_kid_of_a_set_against_itself_is_its_closed_form():
    """With y = x the unbiased estimate is 2 (S / m - T) / (m (m - 1)), S the kernel sum, T its trace."""
    a = _features(80, 0).astype(np.float64)
    gram = (a @ a.T / a.shape[1] + 1) ** 3
    m = len(a)
    assert kid(a, a, subsets=1, subset_size=m)["kid_mean"] == pytest.approx(
        2 * (gram.sum() / m - np.trace(gram)) / (m * (m - 1)), rel=1e-10)


def test_kid_refuses_a_subset_size_above_n():
    with pytest.raises(StudioError, match="above the number of images"):
        kid(_features(10, 0), _features(20, 1), subset_size=15)


def _brute_force(real, fake, k):
    """Kynkaenniemi et al. 2019, eq. 1-2, with SciPy's distances and a sort."""
    def radii(x):
        return np.sort(cdist(x, x), axis=1)[:, k]  # column 0 is the point itself

    def inside(points, centres):
        return (cdist(points, centres) <= radii(centres)[None]).any(axis=1).mean()

    return inside(fake, real), inside(real, fake)


def test_precision_recall_equals_a_brute_force_implementation():
    real, fake = _features(150, 0).astype(np.float64), _features(120, 1, shift=0.08).astype(np.float64)
    got = precision_recall(real, fake, k=3)
    p, r = _brute_force(real, fake, 3)
    assert (got["precision"], got["recall"]) == pytest.approx((p, r), abs=1e-12)
    assert 0 < got["precision"] < 1 and 0 < got["recall"] < 1


def test_precision_recall_constructed_cases():
    a = _features(100, 0)
    same = precision_recall(a, a)
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    far = precision_recall(a, a + 100.0)
    assert far["precision"] == 0.0 and far["recall"] == 0.0
    centre = a[np.argsort(np.linalg.norm(a - a.mean(0), axis=1))[:30]]  # a tight core of the same set
    core = precision_recall(a, centre)
    assert core["precision"] == 1.0 and core["recall"] < 1.0


def test_precision_recall_refuses_k_at_least_n():
    with pytest.raises(StudioError, match="needs more than 3 images"):
        precision_recall(_features(3, 0), _features(10, 1))


def test_equal_sizes_cuts_the_larger_side_to_a_seeded_random_subset():
    a, b = _features(150, 0), _features(60, 1)
    ra, rb = equal_sizes(a, b, seed=0)
    assert rb is b and len(ra) == 60
    rows = {r.tobytes(): i for i, r in enumerate(a)}
    picked = [rows[r.tobytes()] for r in ra]
    assert picked == sorted(picked) and len(set(picked)) == 60  # distinct rows of a, in order
    assert picked != list(range(60))  # a random subset, not the first rows
    assert not np.array_equal(equal_sizes(a, b, seed=1)[0], ra) and np.array_equal(equal_sizes(a, b, 0)[0], ra)
    assert equal_sizes(b, a, seed=0)[1].shape == (60, 64)  # whichever side is larger

"""FID's matrix square root behaves as pytorch-fid's: eps·I retry, imaginary-part check."""

import numpy as np
import pytest
from scipy import linalg

from duo_unlearn.perceptual import frechet_distance, frechet_distance_from_stats


def test_known_value_for_two_gaussians():
    # Commuting covariances (same eigenvectors R): (Sa Sb)^1/2 = R diag(sqrt(la*lb)) R^T, so
    # FID = |mu_a - mu_b|^2 + sum_i (sqrt(la_i) - sqrt(lb_i))^2 = (1 + 4) + (1 - 2)^2 + (2 - 3)^2 = 7.
    angle = 0.3
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    cov_a = rot @ np.diag([1.0, 4.0]) @ rot.T
    cov_b = rot @ np.diag([4.0, 9.0]) @ rot.T
    fid = frechet_distance_from_stats(np.array([0.0, 0.0]), cov_a, np.array([1.0, 2.0]), cov_b)
    assert fid == pytest.approx(7.0, abs=1e-9)
    assert frechet_distance_from_stats(np.zeros(2), cov_a, np.zeros(2), cov_a) == pytest.approx(0.0, abs=1e-9)


def test_singular_covariances_are_retried_with_eps():
    # Fewer samples than dimensions: both covariances have rank 1 in 3-d, the product is singular.
    a = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    b = np.array([[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]])
    fid = frechet_distance(a, b)
    # by hand: means (0.5, ...) and (1, ...) -> 3 * 0.25; covariances 0.5 * 11^T and 2 * 11^T share their
    # one eigenvector with eigenvalues 1.5 and 6 -> (sqrt(1.5) - sqrt(6))^2 = 1.5
    assert np.isfinite(fid) and fid == pytest.approx(0.75 + 1.5, abs=1e-3)


def test_non_finite_square_root_retries_with_eps_on_both(monkeypatch):
    calls = []
    real = linalg.sqrtm

    def flaky(matrix, *args, **kwargs):
        calls.append(matrix.copy())
        return np.full_like(matrix, np.nan) if len(calls) == 1 else real(matrix)

    monkeypatch.setattr(linalg, "sqrtm", flaky)
    cov = np.diag([1.0, 2.0])
    fid = frechet_distance_from_stats(np.zeros(2), cov, np.zeros(2), cov, eps=0.5)
    assert len(calls) == 2
    np.testing.assert_allclose(calls[1], (cov + 0.5 * np.eye(2)) @ (cov + 0.5 * np.eye(2)))
    # with eps on both sides the root is cov + eps·I: FID = 2 tr(cov) - 2 tr(cov + 0.5 I) = -2
    assert fid == pytest.approx(-2.0)


@pytest.mark.parametrize("imaginary, ok", [(1e-6, True), (0.5, False)])
def test_imaginary_part_is_dropped_only_when_negligible(monkeypatch, imaginary, ok):
    monkeypatch.setattr(linalg, "sqrtm", lambda m, *a, **k: m.astype(complex) + 1j * imaginary * np.eye(len(m)))
    cov = np.eye(2)
    if ok:
        assert frechet_distance_from_stats(np.zeros(2), cov, np.zeros(2), cov) == pytest.approx(2 + 2 - 2 * 2)
    else:
        with pytest.raises(ValueError, match="imaginary part of 0.5"):
            frechet_distance_from_stats(np.zeros(2), cov, np.zeros(2), cov)

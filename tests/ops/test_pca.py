"""Input reduction (crane/ops/pca.py): the asked width, the variance kept as the
eigenvalues say, components that reproduce the centred data, and clear errors."""

import numpy as np
import pytest

from crane.ops.pca import principal_components


def features(n=120, width=12, seed=0):
    rng = np.random.default_rng(seed)
    scales = np.linspace(4.0, 0.1, width)
    return (rng.standard_normal((n, width)) * scales + 3.0).astype(np.float32)


def test_width_and_retained_variance_follow_the_eigenvalues():
    x = features()
    reduced = principal_components(x, 4)
    assert reduced.features.shape == (120, 4) and reduced.features.dtype == np.float32
    centred = x.astype(np.float64) - x.mean(axis=0)
    eigenvalues = np.sort(np.linalg.eigvalsh(centred.T @ centred))[::-1]
    assert reduced.retained_variance == pytest.approx(eigenvalues[:4].sum() / eigenvalues.sum(),
                                                      rel=1e-5)
    # the reduced columns are uncorrelated, with the leading eigenvalues as their energy
    energy = reduced.features.astype(np.float64).T @ reduced.features
    assert np.diag(energy) == pytest.approx(eigenvalues[:4], rel=1e-4)
    assert np.abs(energy - np.diag(np.diag(energy))).max() < 1e-3 * eigenvalues[0]


def test_all_but_one_component_keeps_almost_everything_and_is_deterministic():
    x = features()
    first, again = principal_components(x, 11), principal_components(x.copy(), 11)
    assert first.retained_variance > 0.99
    assert np.array_equal(first.features, again.features)


@pytest.mark.parametrize("dim", [0, 12, 50])
def test_a_width_that_reduces_nothing_is_refused(dim):
    with pytest.raises(ValueError, match="dim="):
        principal_components(features(), dim)


def test_constant_features_are_refused():
    with pytest.raises(ValueError, match="constant"):
        principal_components(np.ones((50, 8), dtype=np.float32), 3)

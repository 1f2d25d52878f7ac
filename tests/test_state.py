"""Tests of the named state and the covariance-structure table."""

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES

from skbayesmix._state import (
    COVARIANCE_STRUCTURES,
    Statistics,
    blend_statistics,
    scale_statistics,
    sum_statistics,
)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_structure_shapes_match_sklearn_attributes(covariance_type):
    structure = COVARIANCE_STRUCTURES[covariance_type]
    expected = {
        "full": (4, 3, 3),
        "tied": (3, 3),
        "diag": (4, 3),
        "spherical": (4,),
    }[covariance_type]
    assert structure.covariances_shape(4, 3) == expected
    psi_shape = structure.scale_inverse_shape(4, 3)
    assert psi_shape == ((1,) + expected if structure.shared else expected)
    assert structure.prior_scale_shape(3) == psi_shape[1:]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_structure_covariances_and_scale_inverse_are_inverse_maps(covariance_type):
    rng = np.random.RandomState(0)
    structure = COVARIANCE_STRUCTURES[covariance_type]
    nu = rng.uniform(3.0, 9.0, size=structure.n_factors(4))
    psi = rng.uniform(0.5, 2.0, size=structure.scale_inverse_shape(4, 3))
    covariances = structure.covariances(nu, psi)
    assert covariances.shape == structure.covariances_shape(4, 3)
    # E[Lambda] = nu Psi^-1, so covariances_ = Psi / nu.
    np.testing.assert_allclose(
        np.reshape(covariances, psi.shape)
        * np.reshape(nu, (-1,) + (1,) * (psi.ndim - 1)),
        psi,
    )
    np.testing.assert_allclose(structure.scale_inverse(nu, covariances), psi)


def test_structure_student_degrees_of_freedom():
    nu = np.array([5.0, 7.0])
    table = COVARIANCE_STRUCTURES
    np.testing.assert_allclose(table["full"].student_degrees_of_freedom(nu, 3), nu - 2)
    np.testing.assert_allclose(table["tied"].student_degrees_of_freedom(nu, 3), nu - 2)
    np.testing.assert_allclose(table["diag"].student_degrees_of_freedom(nu, 3), nu)
    np.testing.assert_allclose(
        table["spherical"].student_degrees_of_freedom(nu, 3), 3 * nu
    )


def _statistics(rng):
    return Statistics(
        rng.rand(3), rng.rand(3, 2), rng.rand(3, 2, 2), np.float64(rng.rand())
    )


def test_statistics_sum_blend_and_scale_act_on_every_field():
    rng = np.random.RandomState(0)
    a, b = _statistics(rng), _statistics(rng)
    total = sum_statistics([a, b])
    blended = blend_statistics(a, b, 0.25)
    scaled = scale_statistics(a, 4.0)
    for field in Statistics._fields:
        x, y = getattr(a, field), getattr(b, field)
        np.testing.assert_allclose(getattr(total, field), x + y)
        np.testing.assert_allclose(getattr(blended, field), 0.75 * x + 0.25 * y)
        np.testing.assert_allclose(getattr(scaled, field), 4.0 * x)

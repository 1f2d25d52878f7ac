"""Fitted models survive pickle and skops.io, under the public type names."""

import pickle

import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, tutorial_data
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skbayesmix
from skbayesmix import TransformedDensity, VariationalGaussianMixture
from skbayesmix._transformed import TransformedDensity as PrivateTransformedDensity
from skbayesmix._variational_mixture import (
    VariationalGaussianMixture as PrivateVariationalGaussianMixture,
)


def _fitted_mixture(covariance_type="full"):
    X = tutorial_data(np.random.RandomState(0), n_per_blob=100)
    model = VariationalGaussianMixture(
        n_components=3, covariance_type=covariance_type, random_state=0
    ).fit(X)
    return model, X


def _fitted_density():
    X = tutorial_data(np.random.RandomState(0), n_per_blob=100) * [1.0, 100.0]
    density = TransformedDensity(
        VariationalGaussianMixture(n_components=3, random_state=0),
        make_pipeline(StandardScaler(), PCA(whiten=True)),
    ).fit(X)
    return density, X


def _assert_same_predictions(loaded, model, X):
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_public_classes_name_the_public_module():
    for name in skbayesmix.__all__:
        cls = getattr(skbayesmix, name)
        assert cls.__module__ == "skbayesmix"
    # The private modules hold the same class objects, which old pickles name.
    assert PrivateVariationalGaussianMixture is VariationalGaussianMixture
    assert PrivateTransformedDensity is TransformedDensity


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_pickle_round_trip_names_public_module(covariance_type):
    model, X = _fitted_mixture(covariance_type)
    data = pickle.dumps(model)
    assert b"_variational_mixture" not in data
    _assert_same_predictions(pickle.loads(data), model, X)


def test_pickle_naming_the_private_module_still_loads():
    model, X = _fitted_mixture()
    # A pickle written before the classes named the public module: the same
    # bytes with the private module's name in the class reference.
    public = pickle.dumps(model, protocol=2)
    reference = b"cskbayesmix\nVariationalGaussianMixture\n"
    assert reference in public
    old = public.replace(
        reference, b"cskbayesmix._variational_mixture\nVariationalGaussianMixture\n"
    )
    _assert_same_predictions(pickle.loads(old), model, X)


def test_skops_round_trip_of_mixture_trusts_public_name():
    sio = pytest.importorskip("skops.io")
    from skops.io.exceptions import UntrustedTypesFoundException

    model, X = _fitted_mixture()
    data = sio.dumps(model)
    untrusted = sio.get_untrusted_types(data=data)
    assert untrusted == ["skbayesmix.VariationalGaussianMixture"]
    with pytest.raises(UntrustedTypesFoundException, match="Untrusted types"):
        sio.loads(data)
    loaded = sio.loads(data, trusted=untrusted)
    _assert_same_predictions(loaded, model, X)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(
        loaded.score_samples_interval(X[:20], random_state=0),
        model.score_samples_interval(X[:20], random_state=0),
    )


def test_skops_round_trip_of_transformed_density_through_a_file(tmp_path):
    sio = pytest.importorskip("skops.io")
    density, X = _fitted_density()
    path = tmp_path / "density.skops"
    sio.dump(density, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert untrusted == [
        "skbayesmix.TransformedDensity",
        "skbayesmix.VariationalGaussianMixture",
    ]
    loaded = sio.load(path, trusted=untrusted)
    _assert_same_predictions(loaded, density, X)
    np.testing.assert_array_equal(loaded.sample(5)[0], density.sample(5)[0])
